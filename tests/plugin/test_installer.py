"""The engine installer inside QGIS: the profile folder, the interpreter it picks from QGIS's Python,
the settings, the dialog (steps, live output, buttons, Cancel, one install at a time) and a real
install of the ONNX flavour from the package index into a temporary folder (about 20-30 s)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsSettings

from sketch_search_plugin import base_python, installer
from sketch_search_plugin.install_dialog import InstallDialog

from .conftest import wait_for

pytestmark = pytest.mark.qgis
SETTINGS = (installer.SETTING_PYTHON, installer.SETTING_FLAVOUR, installer.SETTING_INDEX_URL,
            installer.SETTING_BASE_PYTHON)


@pytest.fixture
def settings():
    """The installer's settings, restored after the test (they live in the user's QGIS profile)."""
    store = QgsSettings()
    saved = {key: store.value(key) for key in SETTINGS if store.contains(key)}
    for key in SETTINGS:
        store.remove(key)
    yield store
    for key in SETTINGS:
        store.remove(key)
    for key, value in saved.items():
        store.setValue(key, value)


def test_environment_lives_in_the_qgis_profile():
    profile = Path(QgsApplication.qgisSettingsDirPath())
    assert installer.default_env_dir() == profile / "python" / "sketch_search_env"


def test_from_qgis_python_it_picks_the_system_interpreter_not_the_first_on_path():
    """Here QGIS's bindings belong to Debian's /usr/bin/python3.11, while the first python3 on PATH
    is a pyenv one that cannot import qgis: the installer must take QGIS's."""
    found = base_python.find_base_python()
    own = Path(sys.base_exec_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert os.path.realpath(found.path) == os.path.realpath(own)
    assert tuple(found.version[:2]) == tuple(sys.version_info[:2])
    on_path = shutil.which("python3")
    if on_path and os.path.realpath(on_path) != os.path.realpath(own):
        assert os.path.realpath(found.path) != os.path.realpath(on_path)
    can_import_qgis = subprocess.run([found.path, "-c", "import qgis.core"], capture_output=True).returncode
    assert can_import_qgis == 0  # the interpreter QGIS itself runs on


def test_engine_python_from_the_plugin_setting(settings, tmp_path, monkeypatch):
    monkeypatch.delenv(installer.ENV_VARIABLE, raising=False)
    assert installer.engine_python(env_dir=tmp_path / "none") is None
    settings.setValue(installer.SETTING_PYTHON, "/opt/own/bin/python")
    found = installer.engine_python(env_dir=tmp_path / "none")
    assert (found.path, found.source) == ("/opt/own/bin/python", "the setting SketchSearch/python")
    monkeypatch.setenv(installer.ENV_VARIABLE, "/env/python")
    assert installer.engine_python(env_dir=tmp_path / "none").path == "/env/python"


# ------------------------------------------------------------------ the dialog, with a stand-in install

class FakeInstall:
    """Behaves like installer.install_environment (lock, output, steps, Cancel) without pip."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = []

    def __call__(self, env_dir, flavour, *, base_python, index_url, log, step, progress, is_cancelled, check):
        self.calls.append((flavour, index_url))
        with installer.InstallLock(env_dir):
            step(installer.STEP_DOWNLOAD)
            log("Collecting numpy==2.2.6")
            progress(5_000_000_000, 10_000_000_000, "big.whl")  # beyond 32 bits
            while not self.release.wait(0.05):
                if is_cancelled():
                    log("stopped")
                    raise installer.InstallCancelled("Install cancelled.")
            return installer.InstallResult(env_dir, installer.env_python(env_dir), flavour,
                                           base_python_stub(), 1.0, "test-model on cpu")


def base_python_stub():
    return base_python.Interpreter(sys.executable, tuple(sys.version_info[:3]))


def open_dialog(tmp_path, install, check=None):
    dialog = InstallDialog(env_dir=tmp_path / "profile" / "python" / "sketch_search_env", install=install,
                           check=check)
    dialog.show()
    return dialog


def test_dialog_runs_one_install_with_live_output_then_reports(settings, tmp_path):
    fake = FakeInstall()
    dialog = open_dialog(tmp_path, fake)
    other = open_dialog(tmp_path, FakeInstall())
    installed = []
    dialog.installed.connect(installed.append)
    try:
        assert dialog.install_button.text() == "Install" and not dialog.cancel_button.isEnabled()
        dialog.engine.setCurrentIndex(dialog.engine.findData("onnx"))
        dialog.index_url.setText("https://mirror.example/simple")
        dialog.install_button.click()
        assert wait_for(lambda: "Collecting numpy==2.2.6" in dialog.log_view.toPlainText(), 20)
        assert wait_for(lambda: "5000 of 10000 MB" in dialog.status.text(), 5)
        assert dialog.bar.value() == 500
        assert not dialog.install_button.isEnabled() and not dialog.close_button.isEnabled()
        assert not dialog.engine.isEnabled() and dialog.cancel_button.isEnabled()
        dialog.close()
        assert dialog.isVisible() and "Cancel it first" in dialog.status.text()

        other.install_button.click()  # a second install while the first runs: refused, clearly
        assert "Another install of the engine is running" in other.status.text()
        assert other.task is None

        fake.release.set()
        assert wait_for(lambda: dialog.task is None, 20)
        assert fake.calls == [("onnx", "https://mirror.example/simple")]
        assert settings.value(installer.SETTING_FLAVOUR) == "onnx"
        assert settings.value(installer.SETTING_INDEX_URL) == "https://mirror.example/simple"
        assert "Installed (onnx)" in dialog.status.text() and "test-model on cpu" in dialog.status.text()
        assert installed == [str(installer.env_python(dialog.env_dir))]
        assert dialog.install_button.isEnabled() and dialog.close_button.isEnabled()
        assert not dialog.cancel_button.isEnabled()
    finally:
        fake.release.set()
        wait_for(lambda: dialog.task is None, 20)
        dialog.close()
        other.close()


def test_dialog_cancel_stops_the_install(settings, tmp_path):
    fake = FakeInstall()
    dialog = open_dialog(tmp_path, fake)
    try:
        dialog.install_button.click()
        assert wait_for(lambda: "Collecting" in dialog.log_view.toPlainText(), 20)
        dialog.cancel_button.click()
        assert wait_for(lambda: dialog.task is None, 20)
        assert "stopped" in dialog.log_view.toPlainText()
        assert dialog.status.text().startswith("Cancelled")
        assert dialog.install_button.isEnabled() and not installer.install_running()
    finally:
        fake.release.set()
        wait_for(lambda: dialog.task is None, 20)
        dialog.close()


# ------------------------------------------------------------------ the real thing

def test_real_onnx_install_through_the_dialog(settings, tmp_path):
    """The dialog, the task and the real installer: venv from QGIS's Python, pip, the lock with its
    hashes, from the package index, and the engine check (the worker starts with the new Python and
    loads the shipped model). The result runs our packages, not Debian's, and has no torch."""
    dialog = open_dialog(tmp_path, installer.install_environment, installer.default_engine_check)
    env_dir = dialog.env_dir
    steps = []
    try:
        dialog.engine.setCurrentIndex(dialog.engine.findData("onnx"))
        dialog.install_button.click()
        dialog.task.step.connect(steps.append)
        assert wait_for(lambda: dialog.task is None, 600), "the install did not finish in 10 minutes"
        log_text = dialog.log_view.toPlainText()
        assert "Installed (onnx)" in dialog.status.text(), dialog.status.text() + "\n" + log_text[-3000:]
    finally:
        if dialog.task is not None:
            dialog.cancel()
            wait_for(lambda: dialog.task is None, 60)
        dialog.close()
    assert any(s.startswith(installer.STEP_DOWNLOAD) for s in steps)
    assert steps[-2:] == [installer.STEP_IMPORTS, installer.STEP_ENGINE]
    assert "ONNX Runtime" in dialog.status.text()  # the engine check's line: the model ran without torch
    assert "Successfully installed" in log_text and "numpy-2.2.6" in log_text
    state = installer.environment_state(env_dir)
    assert (state.status, state.flavour) == ("ready", "onnx")
    assert not list(env_dir.parent.glob("sketch_search_env.*-*")) and not env_dir.with_suffix(".partial").exists()
    assert "Successfully installed" in installer.install_log_path(env_dir).read_text()

    probe = ("import importlib.util, json, numpy, onnxruntime, PIL, rasterio, shapely, fiona, sys; "
             "print(json.dumps({'numpy': numpy.__version__, 'numpy_file': numpy.__file__, "
             "'torch': importlib.util.find_spec('torch') is not None, "
             "'qgis': importlib.util.find_spec('qgis') is not None, "
             "'sympy': importlib.util.find_spec('sympy') is not None, "
             "'providers': onnxruntime.get_available_providers()}))")
    out = subprocess.run([str(state.python), "-c", probe], capture_output=True, text=True,
                         env=base_python.clean_environment(), timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["numpy"] == "2.2.6" and str(env_dir) in report["numpy_file"]  # not Debian's numpy 1.24
    assert not report["torch"] and not report["qgis"] and not report["sympy"]
    assert "CPUExecutionProvider" in report["providers"]
    marker = json.loads((env_dir / installer.MARKER).read_text())
    assert marker["lock_sha256"] == installer.lock_sha256(installer.lock_path("onnx"))


# ------------------------------------------------------------------ an environment older than the plugin

class _Answered:
    """What EngineInfoTask hands the panel when the worker has answered `hello`."""
    error = None
    info = {"runtime": "onnx", "devices": ["auto", "cpu"]}


def _env_with_lock(env_dir: Path, lock_sha256: str) -> Path:
    python = installer.env_python(env_dir)
    python.parent.mkdir(parents=True, exist_ok=True)
    python.symlink_to(sys.executable)
    (env_dir / installer.MARKER).write_text(json.dumps({"flavour": "onnx", "lock_sha256": lock_sha256,
                                                        "python_version": "3.11.2"}))
    return env_dir


def test_an_outdated_engine_environment_is_offered_an_update(settings, tmp_path, monkeypatch):
    """A plugin update that brings new engine packages (the default model's partners, say): the engine
    still starts, and the banner says why and offers Update until it is done."""
    from sketch_search_plugin.panels.engine import INSTALL, UPDATE, EnginePanel

    monkeypatch.delenv(installer.ENV_VARIABLE, raising=False)
    env_dir = _env_with_lock(tmp_path / "sketch_search_env", "0" * 64)
    monkeypatch.setattr(installer, "default_env_dir", lambda: env_dir)
    panel = EnginePanel()
    seen = []
    panel.started.connect(seen.append)
    panel._started(_Answered())
    assert seen == [_Answered.info]  # it runs meanwhile
    assert not panel.isHidden() and panel.install_button.text() == UPDATE
    assert "predates this version of the plugin" in panel.label.text()
    # once updated (the marker names today's lock), the banner goes
    (env_dir / installer.MARKER).write_text(json.dumps({
        "flavour": "onnx", "lock_sha256": installer.lock_sha256(installer.lock_path("onnx")),
        "python_version": "3.11.2"}))
    panel._started(_Answered())
    assert panel.isHidden()
    # an engine chosen by the user (the setting) is theirs to keep up to date: no banner
    (env_dir / installer.MARKER).write_text(json.dumps({"flavour": "onnx", "lock_sha256": "0" * 64}))
    settings.setValue(installer.SETTING_PYTHON, "/opt/own/bin/python")
    panel._started(_Answered())
    assert panel.isHidden()
    panel._show_problem("The search engine is not installed yet.")
    assert panel.install_button.text() == INSTALL
