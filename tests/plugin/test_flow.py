"""The dock's search flow (flow.py), options (options.py) and request (request.py) without Qt or QGIS:
state transitions, the request built from the options, and what the dock is told to show."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sketch_search_plugin import flow
from sketch_search_plugin.errors import InputError
from sketch_search_plugin.options import (DEFAULT_EXPANSION, DEFAULT_MAX_TILES, DEFAULT_STAGE2, DEFAULT_TILE_SIZES_M,
                                          DEFAULT_TOP_K, MAX_TOP_K, SearchSettings, format_tile_sizes,
                                          parse_tile_sizes)
from sketch_search_plugin.request import SearchRequest

ROOT = Path(__file__).resolve().parents[2]


class View:
    """Records what the flow tells the dock to show."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if not name.startswith(("show_", "update_", "log")):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, *args))

    def last(self, name):
        return next(c[1:] for c in reversed(self.calls) if c[0] == name)


@dataclass
class Task:
    request: object = None
    on_done: object = None
    on_progress: object = None
    kind: str = "prepare"
    error: str | None = None
    was_cancelled: bool = False
    estimate: object = None
    device: str = ""
    outcome: object = None
    cancelled: bool = False

    def cancel(self):
        self.cancelled = True


class Launcher:
    def __init__(self):
        self.started = []

    def prepare(self, request, on_done):
        return Task(request, on_done)

    def search(self, request, on_done, on_progress):
        return Task(request, on_done, on_progress, kind="search")

    def start(self, task):
        self.started.append(task)


@dataclass
class Estimate:
    tiles: int = 120
    cached: int = 20
    to_compute: int = 100

    def describe(self):
        return f"{self.tiles} tiles, {self.to_compute} to compute"


@dataclass
class Outcome:
    matches: list = field(default_factory=lambda: [{"rank": 1}, {"rank": 2}])
    layer: object = "layer"
    seconds: float = 3.2
    device: str = "CPU"
    computed: int = 100
    cached: int = 20


def request(**options):
    return SearchRequest("png", "plane", [{"path": "/x.tif", "name": "x", "bands": None}], None,
                         {"top_k": 5, **options})


def started(confirm=lambda text: True):
    view, launcher = View(), Launcher()
    search_flow = flow.SearchFlow(view, launcher, confirm)
    task = search_flow.start(request)
    return search_flow, view, launcher, task


def test_a_search_from_idle_to_done():
    search_flow, view, launcher, prep = started()
    assert search_flow.state == flow.PREPARING and search_flow.running and launcher.started == [prep]
    assert view.last("show_progress") == (0, 0, "")  # busy
    assert view.last("show_status") == (flow.PREPARING_TEXT,)
    prep.estimate, prep.device = Estimate(), "CPU (2 threads)"
    search_flow.prepared(prep)
    search = launcher.started[-1]
    assert search.kind == "search" and search_flow.state == flow.SEARCHING and search_flow.search_task is search
    assert view.last("show_device") == ("CPU (2 threads)",)
    assert view.last("show_status") == ("Searching: 120 tiles, 100 to compute",)
    search_flow.progressed(10, 100, "tiles computed")
    assert view.last("show_progress") == (10, 100, flow.TILES)
    search_flow.progressed(1, 4, "rendering the web layer")
    assert view.last("show_progress") == (1, 4, flow.PERCENT)
    search_flow.progressed(0, 0, "merging")  # no count: the bar stays, the words change
    assert view.last("show_progress") == (1, 4, flow.PERCENT) and view.last("show_status") == ("merging",)
    search.outcome = Outcome()
    search_flow.finished(search)
    assert search_flow.state == flow.DONE and not search_flow.running
    assert view.last("show_progress") == (120, 120, flow.TILES)
    assert view.last("show_results") == (search,)
    text = "2 matches in 3 s, 120 tiles (20 from the index) on CPU."
    assert view.last("show_status") == (text,) and view.last("show_message") == (text, flow.SUCCESS)


def test_input_errors_are_warnings_other_errors_critical():
    view = View()
    search_flow = flow.SearchFlow(view, Launcher(), lambda text: True)

    def bad_input():
        raise InputError("The sketch is empty.")

    def broken():
        raise KeyError("x")

    assert search_flow.start(bad_input) is None
    assert view.last("show_message") == ("The sketch is empty.", flow.WARNING)
    assert search_flow.start(broken) is None
    assert view.last("show_message")[1] == flow.CRITICAL and "cannot start" in view.last("show_message")[0]
    assert "KeyError" in view.last("log")[0]
    assert search_flow.state == flow.IDLE and not search_flow.running


def test_one_search_at_a_time():
    search_flow, _, launcher, _ = started()
    assert search_flow.start(request) is None and len(launcher.started) == 1


def test_cancel_and_failure_leave_an_empty_bar_and_say_why():
    search_flow, view, launcher, prep = started()
    search_flow.cancel()
    assert prep.cancelled and view.last("show_status") == ("Cancelling…",)
    prep.was_cancelled = True
    search_flow.prepared(prep)
    assert search_flow.state == flow.CANCELLED and not search_flow.running
    assert view.last("show_progress") == (0, 1, "")
    assert view.last("show_message") == (flow.CANCELLED_TEXT, flow.INFO)

    prep = search_flow.start(request)
    prep.estimate = Estimate()
    search_flow.prepared(prep)
    search = launcher.started[-1]
    search.error = "The raster x.tif cannot be read."
    search_flow.finished(search)
    assert search_flow.state == flow.FAILED
    assert view.last("show_message") == ("The raster x.tif cannot be read.", flow.CRITICAL)
    assert view.last("show_status") == ("The raster x.tif cannot be read.",)


def test_large_searches_are_asked_about_and_may_exceed_max_tiles():
    questions = []
    search_flow, view, launcher, prep = started(confirm=lambda text: questions.append(text) or False)
    prep.estimate = Estimate(tiles=5000, cached=0, to_compute=5000)
    search_flow.prepared(prep)
    assert len(questions) == 1 and "5000 tiles" in questions[0]
    assert search_flow.state == flow.CANCELLED and view.last("show_status") == (flow.NOT_STARTED_TEXT,)
    assert len(launcher.started) == 1  # no search

    search_flow.confirm = lambda text: True
    prep = search_flow.start(lambda: request(max_tiles=1000))
    prep.estimate = Estimate(tiles=1500, cached=0, to_compute=1500)
    search_flow.prepared(prep)
    assert launcher.started[-1].request.options["max_tiles"] == 1500  # the user said yes
    assert not flow.needs_confirmation(Estimate(to_compute=50), {}) and not flow.needs_confirmation(None, {})


def test_stop_cancels_silently():
    search_flow, _, _, prep = started()
    search_flow.stop()
    assert prep.cancelled and prep.on_done is None and not search_flow.running


def test_tile_sizes_are_parsed_in_one_place():
    assert parse_tile_sizes("60, 120;240") == [60.0, 120.0, 240.0]
    assert format_tile_sizes(DEFAULT_TILE_SIZES_M) == "60, 120, 240"
    with pytest.raises(InputError, match="must be numbers"):
        parse_tile_sizes("sixty")
    for text in ("", "0", "-5, 10"):
        with pytest.raises(InputError, match="positive"):
            parse_tile_sizes(text)


def test_the_request_is_built_from_the_options():
    settings = SearchSettings(top_k=7, tile_sizes_m=(64.0,), stage2=True, device="cpu", checkpoint="/m.safetensors")
    built = SearchRequest.from_settings(settings, "png", "plane", [{"path": "/x.tif"}], {"wkt": "P", "crs": "C"},
                                        "EPSG:3857")
    assert built.options == {"top_k": 7, "tile_sizes_m": [64.0], "stage2": True, "expansion": True,
                             "output_crs": "EPSG:3857"}
    assert (built.checkpoint, built.device, built.sketch_label) == ("/m.safetensors", "cpu", "plane")
    default = SearchRequest.from_settings(SearchSettings(), None, "s", [], None, None)
    assert default.options["top_k"] == DEFAULT_TOP_K and default.checkpoint is None and default.device == "auto"
    with pytest.raises(RuntimeError, match="rendered"):
        SearchRequest("png", "s", [object()], None, {}).params()


def test_the_processing_algorithm_and_the_dock_share_the_defaults(qgis_app):
    from sketch_search_plugin.processing.algorithm import SketchSearchAlgorithm

    algorithm = SketchSearchAlgorithm()
    algorithm.initAlgorithm()
    top_k = algorithm.parameterDefinition("TOP_K")
    assert top_k.defaultValue() == DEFAULT_TOP_K and top_k.maximum() == MAX_TOP_K
    assert algorithm.parameterDefinition("TILE_SIZES").defaultValue() == format_tile_sizes(DEFAULT_TILE_SIZES_M)
    assert algorithm.parameterDefinition("EXPANSION").defaultValue() is DEFAULT_EXPANSION
    assert algorithm.parameterDefinition("STAGE2").defaultValue() is DEFAULT_STAGE2


def test_the_plugin_defaults_are_the_engines():
    """options.py writes the engine's defaults out (the plugin never imports the engine): they must agree."""
    from engine.search import SearchOptions

    engine = SearchOptions()
    assert (DEFAULT_TOP_K, DEFAULT_TILE_SIZES_M, DEFAULT_STAGE2, DEFAULT_EXPANSION, DEFAULT_MAX_TILES) == (
        engine.top_k, engine.tile_sizes_m, engine.stage2, engine.expansion, engine.max_tiles)


def test_the_flow_imports_neither_qt_nor_qgis():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('qgis', 'PyQt5', 'PyQt6'):\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import sketch_search_plugin.flow, sketch_search_plugin.options, sketch_search_plugin.request\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
