"""The dialog that installs the engine's environment: choice of engine, pip's live output, Cancel.

The install itself (installer.install_environment) runs in a QgsTask, so QGIS stays responsive and
the task also shows in QGIS's task bar; its output reaches this dialog through queued signals.
While it runs, Install and Close are disabled and Cancel stops pip and removes the half-made
environment.
"""
from __future__ import annotations

import html
import traceback
from pathlib import Path
from typing import Callable

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsSettings, QgsTask
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit,
                                 QPlainTextEdit, QProgressBar, QPushButton, QVBoxLayout)

from . import installer

LOG_TAG = "Sketch Search"
# (setting value, label); the sizes are the downloads measured for each lock (README, "Install").
ENGINE_CHOICES = (
    ("auto", "Automatic: PyTorch with an NVIDIA GPU, else ONNX Runtime"),
    ("onnx", "ONNX Runtime: CPU search, about 150 MB to download"),
    ("torch", "PyTorch: NVIDIA GPUs, re-ranking, training (Linux: about 3.2 GB)"),
)


class InstallTask(QgsTask):
    """Runs one install in QGIS's task manager; signals carry its output to the dialog."""
    line = pyqtSignal(str)
    step = pyqtSignal(str)
    progress = pyqtSignal("qint64", "qint64", str)  # bytes can exceed a 32-bit int
    done = pyqtSignal()

    def __init__(self, env_dir: Path, requested_flavour: str, index_url: str, base_python: str,
                 install: Callable = installer.install_environment,
                 check: Callable | None = installer.default_engine_check):
        super().__init__("Installing the Sketch Search engine", QgsTask.Flag.CanCancel)
        self.env_dir, self.requested_flavour = env_dir, requested_flavour
        self.index_url, self.base_python = index_url, base_python
        self.install, self.check = install, check
        self.result: installer.InstallResult | None = None
        self.error = ""         # one line, when it failed
        self.cancelled = False

    def run(self) -> bool:
        try:
            flavour = installer.choose_flavour(self.requested_flavour)
            self.line.emit(f"Engine: {flavour} (setting: {self.requested_flavour})")
            self.result = self.install(
                self.env_dir, flavour, base_python=self.base_python or None, index_url=self.index_url,
                log=self.line.emit, step=self.step.emit,
                progress=lambda done, total, name: self.progress.emit(done, total, name),
                is_cancelled=self.isCanceled, check=self.check)
            return True
        except installer.InstallCancelled:
            self.cancelled = True
        except (installer.InstallBusy, installer.InstallFailed, ValueError) as exc:
            self.error = str(exc)
        except Exception as exc:  # a bug: the dialog must still come back to life
            self.error = f"unexpected error: {exc}"
            self.line.emit(traceback.format_exc())
        return False

    def finished(self, ok: bool) -> None:  # main thread
        self.done.emit()


class InstallDialog(QDialog):
    """Installs (or replaces) the engine's environment in the QGIS profile folder."""
    installed = pyqtSignal(str)  # the new environment's Python

    def __init__(self, parent=None, env_dir: Path | None = None,
                 install: Callable = installer.install_environment,
                 check: Callable | None = installer.default_engine_check):
        super().__init__(parent)
        self.setWindowTitle("Sketch Search: install the search engine")
        self.env_dir = env_dir or installer.default_env_dir()
        self._install, self._check = install, check
        self.task: InstallTask | None = None

        self.intro = QLabel()
        self.intro.setWordWrap(True)
        self.engine = QComboBox()
        for value, label in ENGINE_CHOICES:
            self.engine.addItem(label, value)
        self.index_url = QLineEdit()
        self.index_url.setPlaceholderText("pip's own (PyPI, or your pip configuration)")
        self.index_url.setToolTip("pip --index-url: an organisation's mirror of PyPI. Several URLs separated "
                                  "by spaces: the first is the index, the others extra indexes.")
        form = QFormLayout()
        form.addRow("Engine", self.engine)
        form.addRow("Package index", self.index_url)

        self.status = QLabel()
        self.status.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setRange(0, 1)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(20000)
        self.log_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)  # pip's lines stay lines
        self.log_view.setMinimumHeight(160)

        self.buttons = QDialogButtonBox()
        self.install_button = QPushButton("Install")
        self.cancel_button = QPushButton("Cancel")
        self.close_button = QPushButton("Close")
        self.buttons.addButton(self.install_button, QDialogButtonBox.ButtonRole.ActionRole)
        # ActionRole for all: the box's accepted/rejected signals stay unused, each button has one slot.
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.close_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.install_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)

        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(self.bar)
        layout.addWidget(self.log_view, 1)
        layout.addWidget(self.buttons)
        self.resize(760, 560)
        self._load_settings()
        self._show_state()
        self._set_running(False)

    # ------------------------------------------------------------ state
    def running(self) -> bool:
        return self.task is not None

    def _load_settings(self) -> None:
        flavour = installer.setting(installer.SETTING_FLAVOUR, "auto")
        index = self.engine.findData(flavour)
        self.engine.setCurrentIndex(index if index >= 0 else 0)
        self.index_url.setText(installer.setting(installer.SETTING_INDEX_URL))

    def _save_settings(self) -> None:
        settings = QgsSettings()
        settings.setValue(installer.SETTING_FLAVOUR, self.engine.currentData())
        settings.setValue(installer.SETTING_INDEX_URL, self.index_url.text().strip())

    def _show_state(self) -> None:
        state = installer.environment_state(self.env_dir)
        now = {"missing": "It is not installed yet.",
               "incomplete": "An earlier install did not finish: install it again.",
               "outdated": f"Installed ({state.flavour}); this version of the plugin brings newer packages: "
                           "update it.",
               "ready": f"Installed ({state.flavour}) and ready."}[state.status]
        self.intro.setText("The search engine runs outside QGIS, in a Python environment of its own:"
                           f"<br><code>{html.escape(str(self.env_dir))}</code><br>{now}")
        self.install_button.setText({"ready": "Reinstall", "outdated": "Update"}.get(state.status, "Install"))
        self.status.setText("")

    def _set_running(self, running: bool) -> None:
        for widget in (self.install_button, self.close_button, self.engine, self.index_url):
            widget.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.bar.setRange(0, 0)  # busy until a download reports its size
        else:
            self.bar.setRange(0, 1)
            self.bar.setValue(0)

    # ------------------------------------------------------------ actions
    def start(self) -> None:
        if self.running():
            return
        if installer.install_running():
            self._set_status("Another install of the engine is running in this QGIS: wait for it to finish.",
                             error=True)
            return
        self._save_settings()
        self.log_view.clear()
        task = InstallTask(self.env_dir, self.engine.currentData(), self.index_url.text().strip(),
                           installer.setting(installer.SETTING_BASE_PYTHON), self._install, self._check)
        task.line.connect(self.log_view.appendPlainText)
        task.step.connect(lambda text: self._set_status(text + "…"))
        task.progress.connect(self._on_progress)
        task.done.connect(self._on_done)
        self.task = task
        self._set_running(True)
        self._set_status(installer.STEP_PYTHON + "…")
        QgsApplication.taskManager().addTask(task)

    def cancel(self) -> None:
        if self.task is not None:
            self._set_status("Cancelling: stopping pip and removing the half-made environment…")
            self.cancel_button.setEnabled(False)
            self.task.cancel()

    def _on_progress(self, done: int, total: int, name: str) -> None:
        if total <= 0:
            self.bar.setRange(0, 0)
            return
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(1000 * done / total))
        self._set_status(f"{installer.STEP_DOWNLOAD}: {name} ({done / 1e6:.0f} of {total / 1e6:.0f} MB)")

    def _on_done(self) -> None:
        task, self.task = self.task, None
        self._set_running(False)
        self._show_state()
        if task.result is not None:
            result = task.result
            message = (f"Installed ({result.flavour}) in {result.seconds:.0f} s. Engine: {result.engine}")
            self._set_status(message)
            QgsMessageLog.logMessage(f"Engine environment installed: {result.env_dir}. {message}", LOG_TAG,
                                     Qgis.MessageLevel.Success)
            self.installed.emit(str(result.python))
        elif task.cancelled:
            self._set_status("Cancelled. Nothing was changed.")
        else:
            self._set_status(task.error or "The install failed: see the log above.", error=True)
            QgsMessageLog.logMessage(f"Engine install failed: {task.error} (full output: "
                                     f"{installer.install_log_path(self.env_dir)})", LOG_TAG, Qgis.MessageLevel.Warning)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #b00020;" if error else "")
        self.status.setText(text)

    # ------------------------------------------------------------ closing
    def reject(self) -> None:  # Esc
        if not self.running():
            super().reject()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if self.running():
            self._set_status("The install is still running: Cancel it first.", error=True)
            event.ignore()
        else:
            super().closeEvent(event)
