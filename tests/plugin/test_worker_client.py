"""The plugin's worker client against a real engine worker: a dead worker is one clear error and the
next request starts a new one; a worker that does not answer a cancel is stopped after 2 s; a missing
or wrong Python is one line. Faults are injected into the real process (SIGKILL, SIGSTOP)."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from sketch_search_plugin import worker_client
from sketch_search_plugin.worker_client import (EngineCancelled, EngineError, EngineUnavailable, WorkerClient,
                                                WorkerDied)

from .conftest import plane_strokes, write_geotiff

pytestmark = pytest.mark.qgis


def sketch_png(tmp_path) -> str:
    from sketch_search_plugin.sketch_canvas import SketchCanvas

    canvas = SketchCanvas()
    for stroke in plane_strokes():
        canvas.add_stroke(stroke, width=8)
    return canvas.to_png_base64()


def search_params(tmp_path, raster, checkpoint, tile_m=24) -> dict:
    return {"sketch": {"png_base64": sketch_png(tmp_path)}, "sources": [{"path": str(raster), "name": "r"}],
            "extent": None, "options": {"tile_sizes_m": [tile_m], "top_k": 5, "max_tiles": 100000},
            "checkpoint": str(checkpoint), "device": "cpu", "thumbnail": 0}


@pytest.fixture
def client():
    lines = []
    c = WorkerClient(sys.executable, log=lines.append)
    c.log_lines = lines
    yield c
    c.close()


def test_a_worker_killed_mid_search_is_one_message_and_the_next_search_works(client, tmp_path, tiny_checkpoint):
    raster = write_geotiff(tmp_path / "big.tif", size=1024)
    first = []

    def kill_on_first_progress(done, total, message):
        if not first:
            first.append(client.proc.pid)
            os.kill(client.proc.pid, signal.SIGKILL)

    with pytest.raises(WorkerDied) as died:
        client.request("search", search_params(tmp_path, raster, tiny_checkpoint), progress=kill_on_first_progress)
    assert "\n" not in died.value.message and "stopped unexpectedly" in died.value.message
    assert "exit code -9" in died.value.details  # the log gets what happened
    result = client.request("search", search_params(tmp_path, raster, tiny_checkpoint, tile_m=96))
    assert client.proc.pid != first[0] and [m["rank"] for m in result["matches"]] == [1, 2, 3, 4, 5]


def test_a_worker_that_ignores_cancel_is_stopped_after_two_seconds(client, tmp_path, tiny_checkpoint):
    raster = write_geotiff(tmp_path / "big.tif", size=1024)
    cancel = threading.Event()

    def freeze_then_cancel(done, total, message):
        if not cancel.is_set():
            os.kill(client.proc.pid, signal.SIGSTOP)  # a hung worker: it can answer nothing
            cancel.set()

    pid = None
    started = None
    with pytest.raises(EngineCancelled):
        def is_cancelled():
            nonlocal started, pid
            if cancel.is_set() and started is None:
                started, pid = time.monotonic(), client.proc.pid
            return cancel.is_set()

        client.request("search", search_params(tmp_path, raster, tiny_checkpoint), progress=freeze_then_cancel,
                       is_cancelled=is_cancelled)
    waited = time.monotonic() - started
    assert worker_client.CANCEL_GRACE_S <= waited < worker_client.CANCEL_GRACE_S + 1.5
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, not left stopped in the background
    assert client.request("hello")["protocol"] == 1  # and the next request gets a new worker


def test_cancel_of_a_running_search_stops_it_within_two_seconds(client, tmp_path, tiny_checkpoint):
    raster = write_geotiff(tmp_path / "big.tif", size=1024)
    asked = []

    def is_cancelled():
        return bool(asked)

    def cancel_on_first_progress(done, total, message):
        if not asked:
            asked.append(time.monotonic())

    with pytest.raises(EngineCancelled):
        client.request("search", search_params(tmp_path, raster, tiny_checkpoint), progress=cancel_on_first_progress,
                       is_cancelled=is_cancelled)
    assert time.monotonic() - asked[0] < worker_client.CANCEL_GRACE_S
    pid = client.proc.pid
    assert client.request("hello")["protocol"] == 1 and client.proc.pid == pid  # the same worker goes on


def test_user_errors_come_back_as_one_line(client, tmp_path, tiny_checkpoint):
    params = search_params(tmp_path, tmp_path / "missing.tif", tiny_checkpoint)
    with pytest.raises(EngineError) as err:
        client.request("search", params)
    assert err.value.kind == "user" and "missing.tif" in err.value.message and "\n" not in err.value.message


def test_no_python_or_a_wrong_one_is_one_line(tmp_path):
    with pytest.raises(EngineUnavailable, match="does not exist"):
        WorkerClient(str(tmp_path / "no-python")).request("hello")
    not_an_engine = tmp_path / "python"
    not_an_engine.write_text("#!/bin/sh\necho 'this is not the engine' >&2\nexit 3\n")
    not_an_engine.chmod(0o755)
    with pytest.raises(EngineUnavailable) as err:
        WorkerClient(str(not_an_engine)).request("hello")
    assert "did not start" in err.value.message and "this is not the engine" in err.value.details


def test_the_worker_environment_has_none_of_qgis_python_or_gdal_settings(monkeypatch):
    monkeypatch.setenv("PYTHONHOME", "/qgis/python")
    monkeypatch.setenv("PROJ_LIB", "/qgis/share/proj")
    monkeypatch.setenv("GDAL_DATA", "/qgis/share/gdal")
    env = worker_client.worker_environment()
    assert not {"PYTHONHOME", "PROJ_LIB", "GDAL_DATA"} & set(env)
    assert env["PYTHONPATH"] == str(worker_client.engine_root())
