"""The engine worker (`python -m engine.worker`) as the plugin uses it: a real subprocess, JSON lines
on its pipes, real GeoTIFFs and the tiny model. Every line the worker writes to stdout must be
JSON; the reader below fails a test on any other line."""
from __future__ import annotations

import base64
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import shapely.wkt
from affine import Affine
from PIL import Image

import engine
from engine.raster.rasterio_source import RasterioSource
from engine.raster.source import Window
from engine.search import Extent, SearchOptions, run_search

ROOT = Path(__file__).resolve().parents[2]
EMB_BATCH_SIZE = 32  # the worker's CPU batch size, for the in-process comparison's embedder


class Worker:
    """A worker process with a thread collecting its stdout lines (JSON or a recorded failure)."""

    def __init__(self, log_path: Path, env: dict | None = None):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "engine.worker"], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, env={**os.environ, **(env or {})})
        self.messages: queue.Queue = queue.Queue()
        self.not_json: list[bytes] = []
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = self.next(timeout=60)

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.messages.put(json.loads(line))
            except ValueError:
                self.not_json.append(line)
                self.messages.put({"type": "NOT JSON", "line": line.decode(errors="replace")})
        self.messages.put(None)  # end of output

    def next(self, timeout: float = 120) -> dict | None:
        message = self.messages.get(timeout=timeout)
        assert message is None or message["type"] != "NOT JSON", f"worker wrote a non-JSON line: {message}"
        return message

    def send_line(self, line: str | bytes) -> None:
        self.proc.stdin.write(line if isinstance(line, bytes) else line.encode() + b"\n")
        self.proc.stdin.flush()

    def send(self, op: str, **params) -> int:
        self._next_id += 1
        self.send_line(json.dumps({"id": self._next_id, "op": op, **params}))
        return self._next_id

    def reply(self, request_id: int, timeout: float = 120) -> tuple[list[dict], dict]:
        """(progress messages, the final result or error) of a request."""
        progress = []
        while True:
            message = self.next(timeout)
            assert message is not None, f"worker ended; log:\n{self.log()}"
            assert message["id"] == request_id, message
            if message["type"] != "progress":
                return progress, message
            progress.append(message)

    def cancel(self, target: int) -> None:
        self.send("cancel", target=target)

    def call(self, op: str, timeout: float = 120, **params) -> dict:
        """The result of a request that must succeed."""
        _, reply = self.reply(self.send(op, **params), timeout)
        assert reply["type"] == "result", f"{reply}\nlog:\n{self.log()}"
        return reply["result"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send_line('{"id": 0, "op": "shutdown"}')
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def start_worker(tmp_path):
    """Factory: start_worker(env=None) -> a Worker, shut down (or killed) after the test."""
    workers = []

    def start(env: dict | None = None) -> Worker:
        worker = Worker(tmp_path / f"worker{len(workers)}.log", {"SKETCH_SEARCH_INDEX": str(tmp_path / "default-index"),
                                                                 **(env or {})})
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.close()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """One worker shared by the tests that do not end it (as the plugin keeps one)."""
    folder = tmp_path_factory.mktemp("worker")
    w = Worker(folder / "worker.log", {"SKETCH_SEARCH_INDEX": str(folder / "default-index")})
    yield w
    w.close()


@pytest.fixture(scope="module")
def big_tif(tmp_path_factory, geo):
    """450 m x 450 m at 0.3 m: with 10 m tiles at 80 % overlap, about 49 000 tiles (well over a
    minute with the tiny model here), so a search is still running when it is cancelled or killed."""
    return geo.write_tif(tmp_path_factory.mktemp("big") / "big.tif", geo.pattern(1500, 1500, seed=5))


BIG_OPTIONS = {"tile_sizes_m": [10], "overlap": 0.8, "max_tiles": 1_000_000}


def png_base64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def source_json(path: Path, name: str | None = None) -> dict:
    return {"path": str(path), "name": name or path.name, "bands": None}


@pytest.fixture
def sketch_json(bar_sketch):
    return {"png_base64": png_base64(np.array(bar_sketch))}


def search_params(tiny_checkpoint, sketch, sources, options, extent=None, thumbnail=0) -> dict:
    return {"sketch": sketch, "sources": sources, "extent": extent, "options": options,
            "checkpoint": str(tiny_checkpoint), "device": "cpu", "thumbnail": thumbnail}


# -- start, hello, load, estimate ------------------------------------------------------------------

def test_ready_comes_first_then_hello(worker):
    assert worker.ready["type"] == "ready" and worker.ready["protocol"] == 1
    assert worker.ready["pid"] == worker.proc.pid and worker.ready["engine"] == engine.__version__
    assert worker.ready["python"] == ".".join(map(str, sys.version_info[:3]))
    hello = worker.call("hello")
    assert hello["protocol"] == 1 and hello["runtime"] in ("torch", "onnx")
    assert hello["devices"][0] == "auto" and "cpu" in hello["devices"]
    assert hello["default_model"] is None or Path(hello["default_model"]).is_file()


def test_load_runs_the_self_check(worker, tiny_checkpoint):
    result = worker.call("load", checkpoint=str(tiny_checkpoint), device="cpu")
    assert result["model"] == "test-tiny" and result["vector_dim"] == 64
    assert "cpu" in result["device"].lower()


def test_estimate_equals_the_engine(worker, tmp_path, rgb_tif, emb, tiny_checkpoint):
    from engine.search import estimate

    options = {"tile_sizes_m": [60, 120], "index_dir": str(tmp_path / "i")}
    result = worker.call("estimate", sources=[source_json(rgb_tif)], extent=None, options=options,
                         checkpoint=str(tiny_checkpoint), device="cpu")
    expected = estimate(emb, [RasterioSource(rgb_tif)], None,
                        SearchOptions(tile_sizes_m=(60, 120), index_dir=tmp_path / "i"))
    assert (result["tiles"], result["cached"], result["to_compute"]) == (expected.tiles, 0, expected.tiles)
    assert result["seconds"] > 0 and result["skipped_scales"] == [] and str(expected.tiles) in result["describe"]


# -- search ----------------------------------------------------------------------------------------

def test_search_gives_what_the_engine_gives(worker, tmp_path, geo, rgb_tif, emb, bar_sketch, sketch_json,
                                            tiny_checkpoint):
    """Two rasters in different CRSs; the matches, their windows and thumbnails equal an in-process
    run_search over the same index (which then reads the tiles the worker stored)."""
    other = geo.write_tif(tmp_path / "b.tif", geo.pattern(300, 300, seed=2), crs="EPSG:3857",
                          transform=Affine(0.5, 0, -13_400_000, 0, -0.5, 4_480_000))
    options = {"top_k": 30, "tile_sizes_m": [60], "merge_iou": 0.99, "merge_containment": 1.0,
               "index_dir": str(tmp_path / "i")}
    sources = [source_json(rgb_tif, "ortho"), source_json(other, "mercator")]
    progress, reply = worker.reply(worker.send("search", **search_params(
        tiny_checkpoint, sketch_json, sources, options, thumbnail=32)))
    assert reply["type"] == "result", reply
    result = reply["result"]

    assert progress and progress[0]["done"] == 0 and progress[-1]["done"] == progress[-1]["total"] > 0
    assert result["computed"] == progress[-1]["total"] and result["cached"] == 0
    assert result["model"] == "test-tiny" and "cpu" in result["device"].lower()

    opened = [RasterioSource(rgb_tif, name="ortho"), RasterioSource(other, name="mercator")]
    expected = run_search(emb, bar_sketch, opened, None, SearchOptions(
        top_k=30, tile_sizes_m=(60,), merge_iou=0.99, merge_containment=1.0, index_dir=tmp_path / "i"))
    assert expected.computed == 0  # everything came from the worker's index entries
    matches = result["matches"]
    assert len(matches) == len(expected.matches) and {m["source_index"] for m in matches} == {0, 1}
    assert result["crs_wkt"] == expected.matches[0].crs_wkt
    for got, want in zip(matches, expected.matches):
        assert got["rank"] == want.rank and got["score"] == pytest.approx(want.score, abs=1e-6)
        assert (got["source"], got["source_index"], got["scale"], got["merged"]) == \
            (want.source, want.source_index, want.scale, want.merged)
        assert shapely.wkt.loads(got["wkt"]).equals_exact(want.geometry, 1e-6)
        assert got["window"] == [want.window.col_off, want.window.row_off, want.window.width, want.window.height]
        # the thumbnail: the best tile with a tenth of its size around it on each side
        col, row, width, height = got["window"]
        around = Window(col - width / 10, row - height / 10, width * 1.2, height * 1.2)
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(got["thumbnail_png_base64"]))))
        np.testing.assert_array_equal(pixels, opened[got["source_index"]].read_rgb(around, (32, 32))[0])
    # the window is the tile the polygon shows (same CRS for the first raster)
    first = next(m for m in matches if m["source_index"] == 0)
    col, row, width, height = first["window"]
    t = opened[0].transform
    corners = [(t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f)
               for c, r in [(col, row), (col + width, row), (col + width, row + height), (col, row + height)]]
    assert shapely.Polygon(corners).equals_exact(shapely.wkt.loads(first["wkt"]), 1e-6)


def test_a_second_search_keeps_the_model(start_worker, tmp_path, rgb_tif, sketch_json, tiny_checkpoint):
    worker = start_worker()
    params = search_params(tiny_checkpoint, sketch_json, [source_json(rgb_tif)],
                           {"top_k": 5, "index_dir": str(tmp_path / "i")})
    t0 = time.perf_counter()
    first = worker.call("search", **params)
    t1 = time.perf_counter()
    second = worker.call("search", **params)
    t2 = time.perf_counter()
    assert first["computed"] > 0 and second["computed"] == 0 and second["matches"] == first["matches"]
    assert worker.proc.poll() is None and worker.call("hello") and worker.ready["pid"] == worker.proc.pid
    assert worker.log().count("loading model") == 1, worker.log()
    # the first paid for importing the engine, loading the model and computing the tiles
    assert t2 - t1 < (t1 - t0) / 3, (t1 - t0, t2 - t1)


def test_progress_is_throttled():
    """Thousands of fast batches give about ten messages a second; the final state is always sent,
    and a throttled last call goes out on flush (the worker flushes before its reply)."""
    from engine.worker.progress import ThrottledProgress

    class Recorder:
        def __init__(self):
            self.sent = []

        def send(self, message):
            self.sent.append(message)
            return True

    channel = Recorder()
    progress = ThrottledProgress(channel, 7)
    t0 = time.monotonic()
    done = 0
    while time.monotonic() - t0 < 0.5:
        done += 1
        progress(done, 10**9, "tiles")
    progress.flush()
    assert done > 1000 and 3 <= len(channel.sent) <= 8
    assert channel.sent[-1] == {"id": 7, "type": "progress", "done": done, "total": 10**9, "message": "tiles"}
    progress(10**9, 10**9, "done")  # the last step goes out at once, however soon after the previous
    assert channel.sent[-1]["done"] == 10**9
    progress.flush()
    assert len([m for m in channel.sent if m["done"] == 10**9]) == 1


# -- cancel, errors, framing -----------------------------------------------------------------------

def test_cancel_stops_a_running_search_and_the_worker_serves_on(worker, tmp_path, big_tif, sketch_json,
                                                                tiny_checkpoint):
    params = search_params(tiny_checkpoint, sketch_json, [source_json(big_tif)],
                           {**BIG_OPTIONS, "index_dir": str(tmp_path / "i")})
    estimate = worker.call("estimate",
                           **{k: params[k] for k in ("sources", "extent", "options", "checkpoint", "device")})
    assert estimate["seconds"] > 5  # uncancelled, the search would run for a while
    request = worker.send("search", **params)
    queued = worker.send("hello")
    worker.cancel(queued)  # still waiting behind the search: it will end cancelled without running
    message = worker.next()
    while message["type"] == "progress" and message["done"] == 0:
        message = worker.next()
    assert message["type"] == "progress", message
    cancelled_at = time.perf_counter()
    worker.cancel(request)
    _, reply = worker.reply(request, timeout=10)
    assert time.perf_counter() - cancelled_at < 2.0
    assert reply["type"] == "error" and reply["kind"] == "cancelled", reply
    assert "\n" not in reply["message"]
    _, reply = worker.reply(queued, timeout=10)
    assert (reply["type"], reply["kind"], reply["message"]) == ("error", "cancelled", "cancelled before it started")
    # the next request is served; a cancel of a finished request changes nothing
    worker.cancel(request)
    assert worker.call("hello")["protocol"] == 1


@pytest.mark.parametrize("case", ["missing raster", "empty sketch", "not an image", "missing sketch file", "bad option",
                                  "bad extent", "bad checkpoint"])
def test_user_errors_are_one_line(worker, tmp_path, rgb_tif, sketch_json, tiny_checkpoint, case):
    params = search_params(tiny_checkpoint, sketch_json, [source_json(rgb_tif)], {"index_dir": str(tmp_path / "i")})
    expected = {"missing raster": "raster not found", "empty sketch": "", "not an image": "not a readable image",
                "missing sketch file": "sketch file not found", "bad option": "topk", "bad extent": "extent",
                "bad checkpoint": "nothing.safetensors"}[case]
    if case == "missing raster":
        params["sources"] = [source_json(tmp_path / "nowhere.tif")]
    elif case == "empty sketch":
        params["sketch"] = {"png_base64": png_base64(np.full((64, 64, 3), 255, np.uint8))}
    elif case == "not an image":
        params["sketch"] = {"png_base64": base64.b64encode(b"GIF? no").decode()}
    elif case == "missing sketch file":
        params["sketch"] = {"path": str(tmp_path / "plane.png")}
    elif case == "bad option":
        params["options"]["topk"] = 3
    elif case == "bad extent":
        params["extent"] = {"wkt": "POLYGON ((0 0, 1 1", "crs": "EPSG:32611"}
    else:
        params["checkpoint"] = str(tmp_path / "nothing.safetensors")
    _, reply = worker.reply(worker.send("search", **params))
    assert reply["type"] == "error" and reply["kind"] == "user", reply
    assert "\n" not in reply["message"] and expected in reply["message"]


def test_error_kinds():
    from engine.index.build import Cancelled
    from engine.model.checkpoints import CheckpointError
    from engine.search import SearchCancelled, TooManyTiles
    from engine.worker.errors import UserError, describe

    def fail(exc):
        try:
            raise exc
        except Exception as caught:
            return describe(caught)

    assert fail(SearchCancelled("cancelled after 3 of 9 tiles")) == ("cancelled", "cancelled after 3 of 9 tiles", "")
    assert fail(Cancelled("stop"))[0] == "cancelled"
    assert fail(TooManyTiles("too many\nsecond line")) == ("user", "too many", "")
    assert fail(CheckpointError("/m.safetensors", "no such file")) == ("user", "/m.safetensors: no such file", "")
    assert fail(UserError("option x: bad")) == ("user", "option x: bad", "")
    kind, message, details = fail(MemoryError())
    assert kind == "user" and "smaller extent" in message and "MemoryError" in details
    kind, message, details = fail(KeyError("tiles"))
    assert (kind, message) == ("internal", "KeyError: 'tiles'") and "Traceback" in details


def test_malformed_lines_get_an_error_and_the_worker_serves_on(worker):
    worker.send_line("this is not json")
    worker.send_line(b"\xff\xfe{}\n")
    worker.send_line("[1, 2]")
    worker.send_line('{"op": "hello"}')
    worker.send_line('{"id": 7001}')
    worker.send_line('{"id": 7002, "op": "fly"}')
    replies = [worker.next(timeout=30) for _ in range(6)]
    assert all(r["type"] == "error" and r["kind"] == "internal" and "\n" not in r["message"] for r in replies)
    assert sorted(r["id"] for r in replies if r["id"] is not None) == [7001, 7002]
    assert sum(r["id"] is None for r in replies) == 4
    assert worker.call("hello")["protocol"] == 1 and worker.proc.poll() is None


def test_stdout_carries_only_json_when_c_code_prints(start_worker, tmp_path, rgb_tif, sketch_json, tiny_checkpoint):
    """MKL_VERBOSE=1 makes Intel's MKL (inside torch) printf a line to stdout for every matrix
    product: real C-level chatter, which must land in the log and never on the protocol pipe."""
    worker = start_worker({"MKL_VERBOSE": "1"})
    assert worker.ready["type"] == "ready"
    assert worker.call("load", checkpoint=str(tiny_checkpoint), device="cpu")["vector_dim"] == 64
    options = {"top_k": 3, "tile_sizes_m": [120], "index_dir": str(tmp_path / "i")}
    result = worker.call("search", **search_params(tiny_checkpoint, sketch_json, [source_json(rgb_tif)], options))
    assert result["matches"] and not worker.not_json
    if "MKL_VERBOSE" not in worker.log():
        pytest.skip("this torch build does not print MKL_VERBOSE lines: nothing wrote to stdout")


def test_shutdown_and_end_of_input_exit_with_status_0(start_worker):
    worker = start_worker()
    worker.send_line('{"op": "shutdown"}')  # no id needed: it gets no reply of its own
    assert worker.proc.wait(timeout=20) == 0 and worker.next(timeout=5) is None
    worker = start_worker()
    request = worker.send("search", sources="not a list")  # answered without loading a model
    worker.proc.stdin.close()  # end of input: the queued request is still answered, then it exits
    assert worker.reply(request)[1]["kind"] == "user"
    assert worker.proc.wait(timeout=20) == 0


def test_sigkill_mid_search_leaves_the_index_usable(start_worker, tmp_path, big_tif, sketch_json, tiny_checkpoint):
    options = {**BIG_OPTIONS, "index_dir": str(tmp_path / "i")}
    worker = start_worker()
    worker.send("search", **search_params(tiny_checkpoint, sketch_json, [source_json(big_tif)], options))
    started = None
    while True:  # past the index's first commit (every 2 s)
        message = worker.next()
        assert message["type"] == "progress", f"{message}\nlog:\n{worker.log()}"
        if message["done"] > 0:
            started = started or time.perf_counter()
            if time.perf_counter() - started > 3.5:
                break
    worker.proc.send_signal(signal.SIGKILL)
    assert worker.proc.wait(timeout=10) == -signal.SIGKILL

    # The top strip: the killed search had computed part of it (tiles run row by row).
    extent = {"wkt": "POLYGON ((500000 3999990, 500060 3999990, 500060 4000000, 500000 4000000, 500000 3999990))",
              "crs": "EPSG:32611"}
    again = start_worker()
    params = search_params(tiny_checkpoint, sketch_json, [source_json(big_tif)], options, extent=extent)
    progress, reply = again.reply(again.send("search", **params))
    assert reply["type"] == "result", reply
    result = reply["result"]
    # what the killed worker committed is used; the rest of the strip is computed now
    assert result["cached"] > 0 and result["computed"] + result["skipped"] == progress[-1]["total"], result
    assert [m["rank"] for m in result["matches"]] == list(range(1, len(result["matches"]) + 1)) != [], result


def test_extent_and_options_reach_the_engine(worker, tmp_path, rgb_tif, emb, bar_sketch, tiny_checkpoint):
    """An extent in another CRS, non-default options and a sketch file give the in-process result."""
    from engine.tiling import reproject

    wkt = reproject(np.array([shapely.box(500000, 4000000 - 100, 500100, 4000000)]), "EPSG:32611", "EPSG:4326")[0].wkt
    options = {"top_k": 4, "tile_sizes_m": [60], "overlap": 0.25, "stage2": True, "candidates": 40,
               "output_crs": "EPSG:4326", "use_index": False}
    sketch_file = tmp_path / "bar.png"
    Image.fromarray(np.array(bar_sketch)).save(sketch_file)
    result = worker.call("search", **search_params(tiny_checkpoint, {"path": str(sketch_file)}, [source_json(rgb_tif)],
                                                   options, extent={"wkt": wkt, "crs": "EPSG:4326"}))
    expected = run_search(emb, bar_sketch, [RasterioSource(rgb_tif)], Extent(shapely.wkt.loads(wkt), "EPSG:4326"),
                          SearchOptions(top_k=4, tile_sizes_m=(60.0,), overlap=0.25, stage2=True, candidates=40,
                                        output_crs="EPSG:4326", use_index=False))
    assert [m["rank"] for m in result["matches"]] == [m.rank for m in expected.matches]
    assert [m["score"] for m in result["matches"]] == pytest.approx([m.score for m in expected.matches], abs=1e-5)
    assert result["computed"] == expected.computed and not list(tmp_path.glob("i"))


def test_query_expansion_follows_the_card_and_the_option(worker, tmp_path, rgb_tif, bar_sketch, sketch_json,
                                                         tiny_checkpoint):
    """A model whose card expands: the worker's search equals the engine's, with and without the option."""
    from engine.embedder import Embedder

    card = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    expanding = tmp_path / "expanding.safetensors"
    expanding.write_bytes(tiny_checkpoint.read_bytes())
    expanding.with_suffix(".json").write_text(json.dumps({**card, "weights_file": expanding.name,
                                                          "query_expansion": 3}))
    emb = Embedder.from_checkpoint(expanding, "cpu")
    scores = {}
    for expansion in (True, False):
        options = {"top_k": 5, "tile_sizes_m": [60], "use_index": False, "expansion": expansion}
        result = worker.call("search", **search_params(expanding, sketch_json, [source_json(rgb_tif)], options))
        engine_options = SearchOptions(top_k=5, tile_sizes_m=(60.0,), use_index=False, expansion=expansion)
        expected = run_search(emb, bar_sketch, [RasterioSource(rgb_tif)], options=engine_options)
        scores[expansion] = [m["score"] for m in result["matches"]]
        assert scores[expansion] == pytest.approx([m.score for m in expected.matches], abs=1e-5)
    assert scores[True] != scores[False]
