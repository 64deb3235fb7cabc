"""Plugin tests run in a real QGIS (Debian's 3.22), offscreen: one QgsApplication for the session,
Processing initialised, a fresh project per test, and real GeoTIFFs written with rasterio."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

qgis_core = pytest.importorskip("qgis.core", reason="QGIS Python bindings (python3-qgis) not installed")
from qgis.core import QgsApplication, QgsProject  # noqa: E402
from qgis.PyQt.QtCore import QCoreApplication, QEvent  # noqa: E402

QGIS_PLUGINS = "/usr/share/qgis/python/plugins"  # Debian's Processing plugin lives here
_app = None


@pytest.fixture(scope="session")
def qgis_app(tmp_path_factory):
    """The session's QgsApplication (GUI enabled, offscreen) with Processing ready."""
    global _app
    if _app is None:
        _app = QgsApplication([], True)
        _app.initQgis()
        if QGIS_PLUGINS not in sys.path:
            sys.path.append(QGIS_PLUGINS)
        from processing.core.Processing import Processing

        Processing.initialize()
    return _app


@pytest.fixture(autouse=True)
def _isolated(qgis_app, tmp_path, monkeypatch):
    """A clean project per test; the engine worker runs this test's Python (which has the engine's
    packages) and keeps its tile index in the test's own folder, never in ~/.cache; a worker started
    by a test ends with it (its environment, and so its index folder, was that test's)."""
    from sketch_search_plugin.worker_client import shutdown_shared

    monkeypatch.setenv("SKETCH_SEARCH_INDEX", str(tmp_path / "index"))
    monkeypatch.setenv("SKETCH_SEARCH_PYTHON", sys.executable)
    QgsProject.instance().clear()
    yield
    shutdown_shared()
    QgsProject.instance().clear()


@pytest.fixture
def iface(qgis_app):
    from .iface import MinimalIface

    iface = MinimalIface()
    yield iface
    # Stop the canvas before its layers and widgets go: a render job left running would touch them.
    iface.canvas.stopRendering()
    iface.canvas.waitWhileRendering()
    iface.canvas.setLayers([])
    iface.window.close()
    iface.window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    QCoreApplication.processEvents()


def wait_for(predicate, timeout: float = 60.0) -> bool:
    """Runs the Qt event loop (task manager signals, queued slots) until predicate() or timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        if predicate():
            return True
        time.sleep(0.01)
    QCoreApplication.processEvents()
    return predicate()


def write_geotiff(path: Path, size: int = 256, res: float = 1.0, crs: str = "EPSG:32633",
                  origin=(500000.0, 5000000.0), seed: int = 0, dtype: str = "uint8") -> Path:
    """A 3-band GeoTIFF: textured ground with a bright cross-shaped 'aeroplane' near the centre."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    ground = rng.normal(90, 20, (3, size, size)).clip(0, 255)
    c = size // 2
    ground[:, c - 2:c + 2, c - 30:c + 30] = 240  # wings
    ground[:, c - 25:c + 25, c - 3:c + 3] = 240  # fuselage
    data = ground.astype(dtype)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype=dtype, crs=crs,
                       transform=from_origin(origin[0], origin[1] + size * res, res, res)) as ds:
        ds.write(data)
    return path


@pytest.fixture
def geotiff(tmp_path) -> Path:
    return write_geotiff(tmp_path / "scene.tif")


def plane_strokes():
    """The strokes of a sketched aeroplane, in 0..1 canvas coordinates."""
    return [[(0.5, 0.1), (0.5, 0.9)], [(0.1, 0.45), (0.9, 0.45)], [(0.35, 0.85), (0.65, 0.85)]]


# Debian's QGIS 3.22 bindings can crash while the interpreter tears down Qt/QGIS objects after the
# last test (seen once in a fresh-clone CI run: every test passed, then SIGSEGV at exit, turning a
# green run red). Once a QgsApplication exists, end the process ourselves as the very last step,
# after pytest has written its report, with pytest's own exit status.
_exit_status = None


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _app is not None and _exit_status is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
