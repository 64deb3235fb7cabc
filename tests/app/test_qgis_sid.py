"""The plugin in today's long-term release: sid's QGIS 3.44 (Python 3.14, PyQt5) in a cached chroot
(tests/app/sid_chroot.py), with the same packaged zip, driver and checks as the Debian 12 tests.

There the engine cannot run on QGIS's own Python (3.14 is newer than the engine supports), so the
plugin's installer makes the engine's environment from Debian's python3.13: the second Python
version the installer is tested on, and its fall-back to another interpreter. Needs root (chroot);
the first run builds the chroot (about 4 minutes), later runs reuse it.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from . import sid_chroot

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "drive_qgis.py"
XVFB = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24 +extension GLX +render"]
# Inside the chroot (its own /root): pip's downloads and the engine environment outlive a test run.
CHROOT_CACHE = "/root/.cache/sketch-search-tests"
PIP_ENV = {"PIP_CACHE_DIR": f"{CHROOT_CACHE}/pip",
           # the chroot's CA bundle, which also holds the host's local CAs (see sid_chroot)
           "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"}


class Sid:
    """Runs commands in the chroot with the repository, the data and pytest's temporary folders shared."""

    def __init__(self, binds: dict[str, str]):
        self.binds = binds
        self.facts = sid_chroot.stamp(sid_chroot.chroot_dir())

    def run(self, cmd: list[str], env: dict | None = None, timeout: float = 600, cwd: Path | str | None = None):
        return sid_chroot.run_in_chroot(cmd, binds=self.binds, env=env, timeout=timeout,
                                        cwd=str(cwd) if cwd else None)


@pytest.fixture(scope="module")
def sid(tmp_path_factory, data_dir) -> Sid:
    reason = sid_chroot.why_not_possible()
    if reason:
        pytest.skip(reason)
    sid_chroot.ensure_chroot()
    base = tmp_path_factory.getbasetemp()
    return Sid(sid_chroot.shared_folders(ROOT, data_dir, base, read_only={ROOT, data_dir}))


@pytest.fixture(scope="module")
def sid_engine_python(sid) -> str:
    """The engine's ONNX environment in the chroot, made once by the plugin's installer (cached there)."""
    code = ("from tests.engine_env import onnx_engine_python; from sketch_search_plugin import installer;"
            "p = onnx_engine_python(); print(p); print(installer.read_marker(p.parents[1])['python_version'])")
    done = sid.run(["python3", "-c", code], env=PIP_ENV, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    python, version = done.stdout.strip().splitlines()[-2:]
    assert version.startswith("3.13."), done.stdout  # sid's QGIS Python (3.14) is too new: python3.13 was taken
    return python


def test_sid_has_the_current_long_term_release(sid):
    assert sid.facts["qgis"].startswith("3.44."), sid.facts


def test_a_new_user_installs_the_engine_and_searches_in_qgis_344(sid, tmp_path, plugin_zip, mosaic, data_dir):
    """The whole user path of the Debian 12 test, in QGIS 3.44: Install from ZIP, Install… in the dock
    (the installer dialog makes the engine's environment from python3.13), search, export."""
    (tmp_path / "out").mkdir()
    env = {"SKETCH_SEARCH_APP_REPORT": str(tmp_path / "report.json"), "SKETCH_SEARCH_APP_ZIP": str(plugin_zip),
           "SKETCH_SEARCH_APP_RASTER": str(mosaic),
           "SKETCH_SEARCH_APP_SKETCH": str(data_dir / "eoc_sketches" / "Aeroplane" / "0.jpg"),
           "SKETCH_SEARCH_APP_OUT": str(tmp_path / "out" / "planes.shp"), "SKETCH_SEARCH_APP_INSTALL": "1",
           "SKETCH_SEARCH_INDEX": str(tmp_path / "index"), **PIP_ENV}
    cmd = [*XVFB, "qgis", "--profiles-path", str(tmp_path / "profiles"), "--nologo", "--noversioncheck",
           "--code", str(DRIVER)]
    proc = sid.run(cmd, env=env, timeout=540, cwd=tmp_path)
    report_file = tmp_path / "report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    context = f"exit {proc.returncode}\nreport: {json.dumps(report, indent=1)[-4000:]}\nstderr: {proc.stderr[-3000:]}"
    assert proc.returncode == 0 and report.get("ok"), context  # QGIS ended normally, every step done
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["qgis up"]["version"].startswith("3.44."), context
    assert "not installed" in steps["not installed yet"]["banner"], context
    assert "error" not in steps["install dialog closed"] and "Installed" in steps["install dialog closed"]["status"]
    info = steps["engine"]["info"]
    assert info["runtime"] == "onnx" and info["python"].startswith("3.13."), context
    ranks = steps["searched"]["ranks"]
    assert ranks and sorted(ranks) == list(range(1, len(ranks) + 1)), context
    assert steps["searched"]["thumbnails"] == len(ranks), context
    assert {"planes.shp", "planes.shx", "planes.dbf", "planes.prj"} <= set(steps["exported"]["siblings"]), context
    assert report["heavy_modules"] == [], context  # the engine's libraries never entered QGIS's process


def test_qgis_process_344_runs_the_algorithm(sid, sid_engine_python, tmp_path, plugin_zip, mosaic, data_dir):
    home = tmp_path / "home"
    profile = home / ".local/share/QGIS/QGIS3/profiles/default"
    (profile / "python/plugins").mkdir(parents=True)
    zipfile.ZipFile(plugin_zip).extractall(profile / "python/plugins")
    (profile / "QGIS").mkdir()
    (profile / "QGIS/QGIS3.ini").write_text("[PythonPlugins]\nsketch_search_plugin=true\n")
    env = {"HOME": str(home), "QT_QPA_PLATFORM": "offscreen", "SKETCH_SEARCH_PYTHON": sid_engine_python,
           "SKETCH_SEARCH_INDEX": str(tmp_path / "index"),
           # QGIS's deprecated API warns when called: none of it may come from the plugin (gone in QGIS 4)
           "PYTHONWARNINGS": "always::DeprecationWarning"}
    out = tmp_path / "planes.geojson"
    done = sid.run(["qgis_process.bin", "run", "sketchsearch:sketchsearch",
                    f"--SKETCH={data_dir / 'eoc_sketches' / 'Aeroplane' / '0.jpg'}", f"--LAYERS={mosaic}",
                    "--TOP_K=5", f"--OUTPUT={out}"], env=env, timeout=400, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "5 matches" in done.stdout
    ours = [line for line in (done.stdout + done.stderr).splitlines()
            if "DeprecationWarning" in line and "sketch_search_plugin" in line]
    assert ours == [], "\n".join(ours)
    features = json.loads(out.read_text())["features"]
    assert sorted(f["properties"]["rank"] for f in features) == [1, 2, 3, 4, 5]


def test_no_qt5_only_forms_by_qgis_344(sid):
    """The project's own check (tests/qt6_forms.py), asking QGIS 3.44's classes what each name is."""
    done = sid.run(["python3", "-m", "tests.qt6_forms"], env={"QT_QPA_PLATFORM": "offscreen"}, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
