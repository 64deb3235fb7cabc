"""A shared index: the setting SketchSearch/index_dir names the tile index the dock and the
Processing algorithm search. A team's index, built once and then read-only (a network share), is
searched without computing or writing anything, and nothing lands in the user's own index."""
from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsSettings

from tests.read_only import read_only
from sketch_search_plugin.shared_index import SETTING_INDEX_DIR, with_index_dir

from .conftest import plane_strokes
from .test_search import make_dock, run_to_end

pytestmark = pytest.mark.qgis


@pytest.fixture
def shared(tmp_path):
    folder = tmp_path / "team-index"
    QgsSettings().setValue(SETTING_INDEX_DIR, str(folder))
    yield folder
    QgsSettings().remove(SETTING_INDEX_DIR)


def snapshot(folder: Path) -> dict:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}


def test_the_setting_names_the_index_folder(shared, monkeypatch):
    assert with_index_dir({"top_k": 5}) == {"top_k": 5, "index_dir": str(shared)}
    assert with_index_dir({"index_dir": "/elsewhere"})["index_dir"] == "/elsewhere"
    monkeypatch.setenv("TEAM", "/mnt/team")
    QgsSettings().setValue(SETTING_INDEX_DIR, "$TEAM/index")
    assert with_index_dir({})["index_dir"] == "/mnt/team/index"
    QgsSettings().setValue(SETTING_INDEX_DIR, "")
    assert with_index_dir({"top_k": 5}) == {"top_k": 5}  # the engine's own default


def test_dock_and_processing_search_a_shared_read_only_index(iface, geotiff, tiny_checkpoint, tmp_path, shared):
    import processing

    from sketch_search_plugin.processing.provider import SketchSearchProvider
    from sketch_search_plugin.sketch_canvas import SketchCanvas
    from sketch_search_plugin.worker_client import shared_client

    personal = tmp_path / "index"  # SKETCH_SEARCH_INDEX, set for every plugin test
    dock, _ = make_dock(iface, geotiff, tiny_checkpoint)
    dock.options_panel.tile_sizes.setText("64")
    request = dock.build_request()
    assert request.params()["options"]["index_dir"] == str(shared)
    # the team indexes the imagery once (the worker's index request, as the command line would)
    built = shared_client(lambda text: None).request("index", request.params())
    assert built["computed"] > 0 and any(shared.iterdir()) and not personal.exists()

    provider = SketchSearchProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    canvas = SketchCanvas()
    for stroke in plane_strokes():
        canvas.add_stroke(stroke, width=8)
    canvas.save_image(tmp_path / "plane.png")
    before = snapshot(shared)
    try:
        with read_only(shared):
            task = run_to_end(dock)
            assert task.error is None, task.error
            assert task.outcome.computed == 0 and task.outcome.cached == built["computed"]
            assert task.outcome.matches
            result = processing.run("sketchsearch:sketchsearch", {
                "SKETCH": str(tmp_path / "plane.png"), "LAYERS": [str(geotiff)], "TOP_K": 3, "TILE_SIZES": "64",
                "STAGE2": False, "CHECKPOINT": str(tiny_checkpoint), "OUTPUT": str(tmp_path / "m.gpkg")})
            assert Path(result["OUTPUT"].split("|")[0]).is_file()
    finally:
        QgsApplication.processingRegistry().removeProvider(provider)
    assert snapshot(shared) == before  # read, never written
    assert not personal.exists()       # and nothing computed into the user's own index
