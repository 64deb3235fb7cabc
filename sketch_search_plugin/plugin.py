"""Plugin entry: toolbar button and menu item toggling the dock, the Processing provider, the
dependency check, and a clean unload."""
from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import QAction, QMessageBox, QPushButton

from . import deps
from .theme import icon

MENU = "&Sketch Search"
LOG_TAG = "Sketch Search"


class SketchSearchPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.action: QAction | None = None
        self.dock = None
        self.provider = None
        self.install_task = None
        self.startup_check: QTimer | None = None

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        self.action = QAction(icon("plugin"), "Sketch Search", self.iface.mainWindow())
        self.action.setCheckable(True)
        self.action.setToolTip("Sketch Search: draw an object and find it in the imagery")
        self.action.toggled.connect(self.show_dock)
        # metadata.txt: category=Raster, so the entry goes to the Raster menu and toolbar.
        self.iface.addRasterToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)
        self.init_processing()
        # After QGIS has finished loading plugins; only a look-up, PyTorch loads when first needed.
        # Our own timer, stopped on unload: a check firing after an unload would touch a dead iface.
        self.startup_check = QTimer()
        self.startup_check.setSingleShot(True)
        self.startup_check.timeout.connect(lambda: self.check_dependencies(quick=True))
        self.startup_check.start(0)

    def initProcessing(self) -> None:  # noqa: N802 (called by QGIS for hasProcessingProvider=yes)
        self.init_processing()

    def init_processing(self) -> None:
        if self.provider is None:
            from .processing.provider import SketchSearchProvider

            self.provider = SketchSearchProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def show_dock(self, visible: bool = True) -> None:
        if visible and self.dock is None and self.check_dependencies():
            self.action.setChecked(False)  # the message bar says what is missing and offers to install
            return
        if visible and self.dock is None:
            from .dock import SketchSearchDock

            self.dock = SketchSearchDock(self.iface, self.iface.mainWindow())
            self.dock.visibilityChanged.connect(self._dock_visibility)
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        if self.dock is not None:
            self.dock.setVisible(visible)

    def _dock_visibility(self, visible: bool) -> None:
        if self.action is not None and self.action.isChecked() != visible:
            self.action.setChecked(visible)

    def unload(self) -> None:
        if self.startup_check is not None:
            self.startup_check.stop()
            self.startup_check = None
        if self.dock is not None:
            self.dock.cleanup()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeRasterToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    # ---- dependencies ---------------------------------------------------------------------------
    def check_dependencies(self, quick: bool = False) -> list:
        """Says in the message bar what is missing, with an Install button. Returns the problems."""
        problems = deps.check(quick)
        if not problems:
            return problems
        for p in problems:
            QgsMessageLog.logMessage(p.reason, LOG_TAG, Qgis.Warning)
        bar = self.iface.messageBar()
        names = ", ".join(sorted({p.requirement for p in problems}))
        widget = bar.createMessage("Sketch Search", f"Missing Python packages: {names}.")
        button = QPushButton("Install…")
        button.clicked.connect(lambda: self.offer_install(problems))
        widget.layout().addWidget(button)
        bar.pushWidget(widget, Qgis.Warning)
        return problems

    def offer_install(self, problems) -> None:
        no_pip = deps.pip_problem()
        if no_pip:
            QMessageBox.warning(self.iface.mainWindow(), "Sketch Search", no_pip)
            return
        cmd = " ".join(deps.install_command(problems))
        answer = QMessageBox.question(
            self.iface.mainWindow(), "Install Sketch Search dependencies",
            f"Sketch Search needs Python packages that QGIS's Python does not have.\n\n"
            f"They will be installed into a folder of the plugin's own:\n{deps.deps_dir()}\n"
            f"QGIS's own packages are not changed. This downloads several hundred MB (PyTorch).\n\n"
            f"Command:\n{cmd}\n\nInstall now?", QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if answer != QMessageBox.Yes:
            return
        self.install_task = QgsTask.fromFunction("Installing Sketch Search dependencies",
                                                 lambda task: deps.install(problems, log=self._log),
                                                 on_finished=self._installed)
        QgsApplication.taskManager().addTask(self.install_task)

    def _log(self, text: str) -> None:
        QgsMessageLog.logMessage(text, LOG_TAG, Qgis.Info)

    def _installed(self, exception, result=None) -> None:
        self.install_task = None
        bar = self.iface.messageBar()
        if exception is not None:
            bar.pushMessage("Sketch Search", f"Installing the dependencies failed: {exception}", level=Qgis.Critical)
            return
        remaining = deps.check()
        if remaining:
            bar.pushMessage("Sketch Search", "Installed, but some packages still do not import; restart QGIS. "
                            + "; ".join(p.reason for p in remaining), level=Qgis.Warning)
        else:
            bar.pushMessage("Sketch Search", "Dependencies installed; Sketch Search is ready.", level=Qgis.Success)
