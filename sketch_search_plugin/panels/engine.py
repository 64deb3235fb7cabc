"""The banner shown while the search engine is not installed or does not start, with Install…; it
starts the engine worker in the background and says what it can do (devices) once it answers."""
from __future__ import annotations

import os

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QFrame, QLabel, QPushButton, QVBoxLayout

from ..search_task import EngineInfoTask

NOT_INSTALLED = ("The search engine is not installed yet. It runs outside QGIS, in a Python environment of its "
                 "own (for CPUs about 150 MB to download; the installer shows what it does).")
OUTDATED = ("The search engine's environment predates this version of the plugin, which brings newer packages "
            "(its default model may need them): update it. Your settings are kept.")
INSTALL, UPDATE = "Install the search engine…", "Update the search engine…"


def outdated_environment() -> str | None:
    """What to tell the user when the engine runs from the installer's environment and this version of
    the plugin brings newer packages (a new default model may need them); None otherwise."""
    from .. import installer

    chosen = installer.engine_python()
    try:
        state = installer.environment_state()
    except RuntimeError:  # outside QGIS: no profile
        return None
    if chosen is None or state.status != "outdated" or os.path.realpath(chosen.path) != os.path.realpath(state.python):
        return None
    return OUTDATED


class EnginePanel(QFrame):
    started = pyqtSignal(dict)   # the worker's `hello` answer
    problem = pyqtSignal(str)    # why there is no engine

    def __init__(self):
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.info: dict = {}     # the worker's `hello` answer once it has started
        self.info_task: EngineInfoTask | None = None
        layout = QVBoxLayout(self)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.install_button = QPushButton(INSTALL)
        self.install_button.clicked.connect(self._install)
        layout.addWidget(self.label)
        layout.addWidget(self.install_button)
        self.setVisible(False)

    def needs_start(self) -> bool:
        return not self.info and self.info_task is None

    def start(self) -> EngineInfoTask | None:
        """Starts the worker in the background; `started` or `problem` tells how it went."""
        from ..worker_client import configured_python

        python, _ = configured_python()
        if python is None:
            self._show_problem(NOT_INSTALLED)
            return None
        self.label.setText("Starting the search engine…")
        self.info_task = EngineInfoTask(on_done=self._started)
        QgsApplication.taskManager().addTask(self.info_task)
        return self.info_task

    def _started(self, task: EngineInfoTask) -> None:
        self.info_task = None
        if task.error:
            self._show_problem(f"The search engine does not start: {task.error}")
            return
        self.info = task.info
        outdated = outdated_environment()
        if outdated:  # it runs, but offer the update: the banner stays until it is done
            self.label.setText(outdated)
            self.install_button.setText(UPDATE)
        self.setVisible(bool(outdated))
        self.started.emit(task.info)

    def _show_problem(self, text: str) -> None:
        self.label.setText(text)
        self.install_button.setText(INSTALL)
        self.setVisible(True)
        self.problem.emit(text)

    def _install(self) -> None:
        from ..install_dialog import InstallDialog

        dialog = InstallDialog(self)
        dialog.exec()
        self.info = {}
        self.start()
