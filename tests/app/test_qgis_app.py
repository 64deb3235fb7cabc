"""The plugin in the real QGIS desktop application: installed from the zip into a fresh profile,
driven through a whole search under Xvfb with OpenGL on; QGIS must exit cleanly (a crash fails)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sketch_search_plugin import installer

from .conftest import need, run_killing_group

DRIVER = Path(__file__).resolve().parent / "drive_qgis.py"
# pip's download cache outside the repository: a second run of the install test downloads nothing.
PIP_CACHE = Path.home() / ".cache" / "sketch-search-tests" / "pip"


def run_qgis(tmp_path: Path, env_extra: dict, timeout: int = 420) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}  # a real X display, not offscreen
    env.update({"SKETCH_SEARCH_APP_REPORT": str(tmp_path / "report.json"), **env_extra})
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24 +extension GLX +render", "qgis",
           "--profiles-path", str(tmp_path / "profiles"), "--nologo", "--noversioncheck", "--code", str(DRIVER)]
    proc = run_killing_group(cmd, env=env, timeout=timeout, cwd=tmp_path)
    report_file = tmp_path / "report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    return proc, report


def test_search_in_the_real_qgis_application(tmp_path, plugin_zip, mosaic, data_dir, engine_python):
    need("qgis", "xvfb-run")
    shots = Path(os.environ.get("SKETCH_SEARCH_SCREENSHOTS", tmp_path))
    (tmp_path / "out").mkdir()
    proc, report = run_qgis(tmp_path, {
        "SKETCH_SEARCH_APP_ZIP": str(plugin_zip), "SKETCH_SEARCH_APP_RASTER": str(mosaic),
        "SKETCH_SEARCH_APP_SKETCH": str(data_dir / "eoc_sketches" / "Aeroplane" / "0.jpg"),
        "SKETCH_SEARCH_APP_OUT": str(tmp_path / "out" / "planes.shp"), "SKETCH_SEARCH_APP_SHOTS": str(shots),
        "SKETCH_SEARCH_APP_TRUTH": str(mosaic.parent / "truth.gpkg"),
        "SKETCH_SEARCH_PYTHON": engine_python, "SKETCH_SEARCH_INDEX": str(tmp_path / "index")})
    context = f"exit {proc.returncode}\nreport: {json.dumps(report, indent=1)[-3000:]}\nstderr: {proc.stderr[-3000:]}"
    assert proc.returncode == 0, context  # QGIS itself ended normally: no crash, no abort
    assert report.get("ok"), context
    steps = {s["step"]: s for s in report["steps"]}
    opened = steps["dock open"]
    assert opened["window"][1] <= opened["screen"][1], context  # the dock never makes QGIS taller than the screen
    searched = steps["searched"]
    assert searched["error"] is None and len(searched["layers"]) == 1, context
    assert sorted(searched["ranks"]) == list(range(1, len(searched["ranks"]) + 1)) and searched["ranks"], context
    assert searched["thumbnails"] == len(searched["ranks"]), context
    assert {"planes.shp", "planes.shx", "planes.dbf", "planes.prj"} <= set(steps["exported"]["siblings"]), context
    refined = steps["refined"]  # top matches marked by the truth, Refine pressed: a second ranked layer
    assert len(refined["marked"]) == min(4, len(searched["ranks"])) and refined["error"] is None, context
    assert len(refined["layers"]) == 1 and refined["layers"][0].endswith(" refined") and refined["ranks"], context
    assert report["heavy_modules"] == [], context  # the engine's libraries never entered QGIS's process
    assert steps["engine"]["info"]["protocol"] == 1


def _run_with_the_installers_engine(tmp_path, plugin_zip, mosaic, data_dir, scenario: str) -> tuple[dict, str]:
    """A whole search in QGIS with the engine the plugin's installer makes in the profile (no
    SKETCH_SEARCH_PYTHON), in `scenario` (SKETCH_SEARCH_APP_INSTALL or _UPDATE). Returns (steps, context)."""
    (tmp_path / "out").mkdir()
    env = {"SKETCH_SEARCH_APP_ZIP": str(plugin_zip), "SKETCH_SEARCH_APP_RASTER": str(mosaic),
           "SKETCH_SEARCH_APP_SKETCH": str(data_dir / "eoc_sketches" / "Aeroplane" / "3.jpg"),
           "SKETCH_SEARCH_APP_OUT": str(tmp_path / "out" / "planes.shp"), scenario: "1",
           "SKETCH_SEARCH_INDEX": str(tmp_path / "index"), "PIP_CACHE_DIR": str(PIP_CACHE)}
    saved = os.environ.pop("SKETCH_SEARCH_PYTHON", None)
    try:
        proc, report = run_qgis(tmp_path, env)
    finally:
        if saved is not None:
            os.environ["SKETCH_SEARCH_PYTHON"] = saved
    context = f"exit {proc.returncode}\nreport: {json.dumps(report, indent=1)[-4000:]}\nstderr: {proc.stderr[-3000:]}"
    assert proc.returncode == 0 and report.get("ok"), context
    assert report["heavy_modules"] == [], context
    steps = {s["step"]: s for s in report["steps"]}
    assert len(steps["searched"]["ranks"]) >= 1, context
    return steps, context


def _outdated_environment(env_dir: Path, packages_from: Path) -> None:
    """An engine environment as an earlier plugin version left it: a real venv (its packages those of
    the installer-made environment `packages_from`, through a .pth file) whose marker names another lock."""
    base = Path(os.path.realpath(packages_from / "bin" / "python"))
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(env_dir)], check=True)
    sites = sorted((packages_from / "lib").glob("python3*/site-packages"))
    own = sorted((env_dir / "lib").glob("python3*/site-packages"))
    assert len(sites) == len(own) == 1, (sites, own)
    (own[0] / "earlier_packages.pth").write_text(str(sites[0]) + "\n")
    (env_dir / installer.MARKER).write_text(json.dumps({"flavour": "onnx", "lock_sha256": "0" * 64,
                                                        "python_version": "3"}))


def test_an_earlier_users_engine_is_updated_then_searches(tmp_path, plugin_zip, mosaic, data_dir, engine_python):
    """A plugin update that brings newer engine packages (the default model's partners): the engine
    from the earlier version still starts, the dock offers Update…, the installer replaces the
    environment in the profile, the banner goes and the search works."""
    need("qgis", "xvfb-run")
    packages_from = Path(engine_python).parent.parent
    if not (packages_from / installer.MARKER).is_file():
        pytest.skip("needs the installer-made engine environment (tests/engine_env.py)")
    env_dir = tmp_path / "profiles" / "profiles" / "default" / "python" / "sketch_search_env"
    _outdated_environment(env_dir, packages_from)
    steps, context = _run_with_the_installers_engine(tmp_path, plugin_zip, mosaic, data_dir,
                                                     "SKETCH_SEARCH_APP_UPDATE")
    outdated = steps["outdated"]
    assert "predates this version of the plugin" in outdated["banner"], context
    assert outdated["button"] == "Update the search engine…" and outdated["info"]["runtime"] == "onnx", context
    closed = steps["install dialog closed"]
    assert "error" not in closed and closed["button"] == "Update" and "Installed" in closed["status"], context
    assert steps["engine"]["banner"] == "" and installer.environment_state(env_dir).status == "ready", context
    assert not list((env_dir / "lib").glob("python3*/site-packages/earlier_packages.pth")), context  # replaced


def test_a_new_user_installs_the_engine_then_searches(tmp_path, plugin_zip, mosaic, data_dir):
    """A fresh profile, no engine: the dock offers Install…, the plugin's installer makes the
    engine's environment from PyPI (with hashes) in the profile, checks it, and the search works."""
    need("qgis", "xvfb-run")
    steps, context = _run_with_the_installers_engine(tmp_path, plugin_zip, mosaic, data_dir,
                                                     "SKETCH_SEARCH_APP_INSTALL")
    assert "not installed" in steps["not installed yet"]["banner"], context
    closed = steps["install dialog closed"]
    assert "error" not in closed and "Installed" in closed["status"], context
    env_dir = tmp_path / "profiles" / "profiles" / "default" / "python" / "sketch_search_env"
    assert steps["engine"]["info"]["runtime"] == "onnx" and env_dir.is_dir(), context  # no GPU here: the small engine
