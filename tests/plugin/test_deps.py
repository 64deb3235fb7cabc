"""The dependency check names what does not import, and the offered install is pinned, goes into the
plugin's own folder (never QGIS's packages) and keeps numpy below 2."""
from __future__ import annotations

import sys

import pytest

from sketch_search_plugin import deps

pytestmark = pytest.mark.qgis


def test_missing_module_is_reported_in_plain_words(qgis_app, monkeypatch):
    monkeypatch.setattr(deps, "MODULES", deps.MODULES + (("no_such_module_xyz", "no-such-dist", "testing"),))
    problems = deps.check()
    assert [p.module for p in problems] == ["no_such_module_xyz"]
    assert "does not import" in problems[0].reason and "testing" in problems[0].reason
    quick = deps.check(quick=True)
    assert [p.module for p in quick] == ["no_such_module_xyz"] and "not installed" in quick[0].reason


def test_missing_dependency_keeps_the_dock_closed_and_offers_install(iface, monkeypatch):
    import sketch_search_plugin

    monkeypatch.setattr(deps, "MODULES", deps.MODULES + (("no_such_module_xyz", "no-such-dist", "testing"),))
    plugin = sketch_search_plugin.classFactory(iface)
    plugin.initGui()
    plugin.action.trigger()
    assert plugin.dock is None and not plugin.action.isChecked()
    assert "Missing Python packages: no-such-dist" in iface.messages[-1][1]
    button = [w for w in iface.bar.currentItem().findChildren(deps_button_type()) if w.text() == "Install…"]
    assert len(button) == 1
    plugin.unload()


def deps_button_type():
    from qgis.PyQt.QtWidgets import QPushButton

    return QPushButton


def test_install_command_is_pinned_targeted_and_keeps_numpy_1(qgis_app, tmp_path, monkeypatch):
    from qgis.core import QgsApplication

    problems = [deps.Problem("torch", "torch", "x"), deps.Problem("rasterio", "rasterio", "y")]
    cmd = deps.install_command(problems)
    assert cmd[1:4] == ["-m", "pip", "install"]
    target = cmd[cmd.index("--target") + 1]
    assert target == str(deps.deps_dir())
    assert target.startswith(QgsApplication.qgisSettingsDirPath())  # the profile, not QGIS's site-packages
    reqs = cmd[cmd.index("--target") + 2:]
    assert "torch==2.14.1" in reqs and "rasterio==1.4.4" in reqs  # the repository's pins
    assert any(r.startswith("numpy==1.") or r == "numpy<2" for r in reqs)


def test_activate_appends_the_folder_after_qgis_packages(qgis_app, tmp_path, monkeypatch):
    folder = tmp_path / "deps"
    folder.mkdir()
    monkeypatch.setattr(deps, "deps_dir", lambda: folder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    deps.activate()
    assert sys.path[-1] == str(folder)  # QGIS's own numpy/GDAL keep priority
    deps.activate()
    assert sys.path.count(str(folder)) == 1


def test_pip_runs_for_this_python(qgis_app):
    assert deps.pip_problem() is None  # this QGIS's Python has pip: the install offer can go ahead
