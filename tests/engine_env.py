"""The engine's ONNX environment for tests: made once by the plugin's real installer, then reused.

It lives outside the repository, in ~/.cache/sketch-search-tests/engine-env-onnx-<lock hash>
($SKETCH_SEARCH_TEST_CACHE or $XDG_CACHE_HOME/sketch-search-tests instead), so a changed lock
gets a new environment and an unchanged one costs nothing after the first run (about 20 s and
150 MB of downloads). Tests that run the engine the way QGIS does (worker process, no PyTorch) use:

    from engine_env import onnx_engine_python
    python = onnx_engine_python()   # Path of the environment's python
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from sketch_search_plugin import installer

WAIT_FOR_OTHER_S = 900  # another test process may be making the same environment


def cache_root() -> Path:
    if os.environ.get("SKETCH_SEARCH_TEST_CACHE"):
        return Path(os.environ["SKETCH_SEARCH_TEST_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sketch-search-tests"


def onnx_env_dir() -> Path:
    sha = installer.lock_sha256(installer.lock_path("onnx"))
    return cache_root() / f"engine-env-onnx-{sha[:16]}"


def onnx_engine_python(log=lambda line: None) -> Path:
    """The cached environment's python, made now if needed (no engine check: that is the caller's)."""
    env_dir = onnx_env_dir()
    deadline = time.monotonic() + WAIT_FOR_OTHER_S
    while True:
        state = installer.environment_state(env_dir)
        if state.status == "ready":
            return state.python
        try:
            return installer.install_environment(env_dir, "onnx", log=log, check=None).python
        except installer.InstallBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
