"""The plugin in the real QGIS desktop application: installed from the zip into a fresh profile,
driven through a whole search under Xvfb with OpenGL on; QGIS must exit cleanly (a crash fails)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .conftest import need, run_killing_group

DRIVER = Path(__file__).resolve().parent / "drive_qgis.py"


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
        "SKETCH_SEARCH_PYTHON": engine_python, "SKETCH_SEARCH_INDEX": str(tmp_path / "index")})
    context = f"exit {proc.returncode}\nreport: {json.dumps(report, indent=1)[-3000:]}\nstderr: {proc.stderr[-3000:]}"
    assert proc.returncode == 0, context  # QGIS itself ended normally: no crash, no abort
    assert report.get("ok"), context
    steps = {s["step"]: s for s in report["steps"]}
    searched = steps["searched"]
    assert searched["error"] is None and len(searched["layers"]) == 1, context
    assert sorted(searched["ranks"]) == list(range(1, len(searched["ranks"]) + 1)) and searched["ranks"], context
    assert searched["thumbnails"] == len(searched["ranks"]), context
    assert {"planes.shp", "planes.shx", "planes.dbf", "planes.prj"} <= set(steps["exported"]["siblings"]), context
    assert report["heavy_modules"] == [], context  # the engine's libraries never entered QGIS's process
    assert steps["engine"]["info"]["protocol"] == 1
