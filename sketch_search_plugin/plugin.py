"""Plugin entry: the Raster-menu action and toolbar button toggling the dock, the Processing
provider, and a clean unload (which also stops the engine worker)."""
from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAction

from .theme import icon

LOG_TAG = "Sketch Search"


class SketchSearchPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.action: QAction | None = None
        self.dock = None
        self.provider = None

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        self.action = QAction(icon("plugin"), "Sketch Search", self.iface.mainWindow())
        self.action.setObjectName("SketchSearchAction")
        self.action.setCheckable(True)
        self.action.setToolTip("Sketch Search: draw an object and find it in the imagery")
        self.action.toggled.connect(self.show_dock)
        # Straight into the Raster menu (not Raster → Sketch Search → Sketch Search), and its toolbar.
        self.iface.rasterMenu().addAction(self.action)
        self.iface.addRasterToolBarIcon(self.action)
        self.init_processing()

    def initProcessing(self) -> None:  # noqa: N802 (called by QGIS for hasProcessingProvider=yes)
        self.init_processing()

    def init_processing(self) -> None:
        if self.provider is None:
            from .processing.provider import SketchSearchProvider

            self.provider = SketchSearchProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def show_dock(self, visible: bool = True) -> None:
        if visible and self.dock is None:
            from .dock import SketchSearchDock

            self.dock = SketchSearchDock(self.iface, self.iface.mainWindow())
            self.dock.visibilityChanged.connect(self._dock_visibility)
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        if self.dock is not None:
            self.dock.setVisible(visible)

    def _dock_visibility(self, visible: bool) -> None:
        if self.action is not None and self.action.isChecked() != visible:
            self.action.setChecked(visible)

    def unload(self) -> None:
        from .worker_client import shutdown_shared

        if self.dock is not None:
            self.dock.cleanup()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.rasterMenu().removeAction(self.action)
            self.iface.removeRasterToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        shutdown_shared()
