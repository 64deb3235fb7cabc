"""Tests of what the user runs: the QGIS desktop application under Xvfb (OpenGL on) with the plugin
installed from the packaged zip, and `qgis_process`. They need Debian's `qgis` and `xvfb-run`
(scripts/setup.sh installs them) and the sample data; each run takes a minute or two."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .process_group import run_killing_group  # noqa: F401 (the app tests import it from here)

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.app)


@pytest.fixture(scope="session")
def plugin_zip(tmp_path_factory) -> Path:
    """The zip `make package` builds, built afresh for this session (the product as shipped)."""
    out = tmp_path_factory.mktemp("package")
    env = {**os.environ, "DIST": str(out / "dist"), "BUILD": str(out / "build")}
    built = subprocess.run(["bash", "scripts/package.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    return out / "dist" / "sketch_search_plugin.zip"


@pytest.fixture(scope="session")
def mosaic(tmp_path_factory, data_dir) -> Path:
    """A small georeferenced mosaic of real UC Merced images (2 per class, 0.3 m/px, UTM)."""
    out = tmp_path_factory.mktemp("mosaic")
    path = out / "ucm_small.tif"
    cli = [sys.executable, "-m", "engine.cli", "mosaic", "build", "--images", str(data_dir / "ucm10"),
           "--out", str(path), "--truth", str(out / "truth.gpkg"), "--per-class", "2"]
    done = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture(scope="session")
def engine_python() -> str:
    """The Python the worker runs in these tests: the environment made by the plugin's own installer
    (built once and cached outside the repository), else this test run's Python."""
    try:
        from tests.engine_env import onnx_engine_python
    except ImportError:
        return sys.executable
    return str(onnx_engine_python())


def need(*commands: str) -> None:
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/setup.sh installs them)")

