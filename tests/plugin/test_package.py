"""`make package` builds a zip that installs into a fresh QGIS profile and loads there; its worker
runs the engine inside the zip (not the repository's)."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.qgis
ROOT = Path(__file__).resolve().parents[2]

LOADER = r'''
import os, sys, importlib.util
from pathlib import Path
from qgis.core import QgsApplication
profile = sys.argv[1]
app = QgsApplication([], True, profile)
app.initQgis()
plugins = Path(QgsApplication.qgisSettingsDirPath()) / "python" / "plugins"
assert plugins.is_dir(), plugins
sys.path.insert(0, str(plugins))
import qgis.utils
qgis.utils.plugin_paths = [str(plugins)]
qgis.utils.updateAvailablePlugins()
assert "sketch_search_plugin" in qgis.utils.available_plugins, qgis.utils.available_plugins
spec = importlib.util.spec_from_file_location("iface", sys.argv[2])
iface_module = importlib.util.module_from_spec(spec); spec.loader.exec_module(iface_module)
iface = iface_module.MinimalIface()
qgis.utils.iface = iface
assert qgis.utils.loadPlugin("sketch_search_plugin")
assert qgis.utils.startPlugin("sketch_search_plugin")
from sketch_search_plugin import worker_client
print("ENGINE", worker_client.engine_root())  # what the worker runs: the zip's engine
print("HELLO", worker_client.WorkerClient(sys.executable).request("hello")["protocol"])
print("HEAVY", sorted(m for m in ("torch", "shapely", "rasterio", "fiona", "engine") if m in sys.modules))
print("NAME", qgis.utils.pluginMetadata("sketch_search_plugin", "name"))
from sketch_search_plugin import theme
print("ICON", not theme.icon("plugin").isNull())
print("ACTIONS", [a.text() for a in iface.toolbar.actions()])
print("PROVIDER", QgsApplication.processingRegistry().providerById("sketchsearch") is not None)
plugin = qgis.utils.plugins["sketch_search_plugin"]
plugin.show_dock(True)
print("DOCK", len(iface.docks))
assert qgis.utils.unloadPlugin("sketch_search_plugin")
print("AFTER", [a.text() for a in iface.toolbar.actions()], len(iface.docks),
      QgsApplication.processingRegistry().providerById("sketchsearch") is not None)
app.exitQgis()
'''


def test_zip_installs_into_a_fresh_profile_and_loads(qgis_app, tmp_path):
    dist = tmp_path / "dist"
    env = {**os.environ, "DIST": str(dist), "BUILD": str(tmp_path / "build")}
    built = subprocess.run(["bash", "scripts/package.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "OK:" in built.stdout
    zip_path = dist / "sketch_search_plugin.zip"
    profile = tmp_path / "profile"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as z:  # what the plugin manager's "Install from ZIP" does
        z.extractall(plugins)
    (tmp_path / "load.py").write_text(LOADER)
    run = subprocess.run([sys.executable, str(tmp_path / "load.py"), str(profile), str(ROOT / "tests/plugin/iface.py")],
                         cwd=tmp_path, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    out = dict(line.split(" ", 1) for line in run.stdout.splitlines() if " " in line)
    assert out["ENGINE"] == str(plugins / "sketch_search_plugin" / "vendor")
    assert out["HELLO"] == "1"  # a worker started from the zip's engine answers
    assert out["HEAVY"] == "[]"  # and nothing of the engine entered this QGIS process
    assert out["NAME"] == "Sketch Search"
    assert out["ICON"] == "True"  # read from the SVG file in the zip (Qt6 has no compiled resources)
    assert out["ACTIONS"] == "['Sketch Search']"
    assert out["PROVIDER"] == "True"
    assert out["DOCK"] == "1"
    assert out["AFTER"] == "[] 0 False"


def test_package_check_rejects_a_compiled_binary(qgis_app, tmp_path):
    """The zip check is real: a stray compiled module makes the build fail."""
    stray = ROOT / "sketch_search_plugin" / "stray_test_binary.so"
    stray.write_bytes(b"\x7fELF" + bytes(60))
    try:
        env = {**os.environ, "DIST": str(tmp_path / "dist"), "BUILD": str(tmp_path / "build")}
        built = subprocess.run(["bash", "scripts/package.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        stray.unlink()
    assert built.returncode != 0
    assert "stray_test_binary.so" in built.stderr


def test_package_check_rejects_a_declared_resource_that_is_missing(qgis_app, tmp_path):
    """resources.qrc declares the plugin's own files: one listed but absent fails the build."""
    qrc = ROOT / "resources.qrc"
    original = qrc.read_text()
    missing = '  <file alias="x.svg">sketch_search_plugin/icons/missing.svg</file>\n'
    qrc.write_text(original.replace("</qresource>", missing + "</qresource>"))
    try:
        env = {**os.environ, "DIST": str(tmp_path / "dist"), "BUILD": str(tmp_path / "build")}
        built = subprocess.run(["bash", "scripts/package.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        qrc.write_text(original)
    assert built.returncode != 0
    assert "icons/missing.svg" in built.stderr
