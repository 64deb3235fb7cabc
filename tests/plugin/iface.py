"""A minimal QGIS interface over real QGIS widgets, for tests and screenshots.

Offscreen there is no QGIS desktop application, hence no QgisInterface. This stands in for it with
the real things the plugin touches: a QMainWindow, a QgsMapCanvas bound to the project's layer tree,
a QgsMessageBar, a toolbar and a plugin menu. It records what the plugin adds, so tests can check
that unloading removes all of it.
"""
from __future__ import annotations

from qgis.core import QgsProject
from qgis.gui import QgsLayerTreeMapCanvasBridge, QgsMapCanvas, QgsMessageBar, QgsMessageBarItem
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtWidgets import QMainWindow, QMenu, QToolBar, QVBoxLayout, QWidget


class MinimalIface:
    def __init__(self, size: QSize = QSize(1000, 700)):
        self.window = QMainWindow()
        self.window.resize(size)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        self.bar = QgsMessageBar()
        self.canvas = QgsMapCanvas()
        self.canvas.setCanvasColor(self.canvas.palette().window().color())
        layout.addWidget(self.bar)
        layout.addWidget(self.canvas, 1)
        self.window.setCentralWidget(central)
        # Parented to the canvas so it dies with it (a bridge outliving its canvas crashes QGIS).
        self.bridge = QgsLayerTreeMapCanvasBridge(QgsProject.instance().layerTreeRoot(), self.canvas, self.canvas)
        self.toolbar = QToolBar("Plugins")
        self.window.addToolBar(self.toolbar)
        self.plugin_menus: dict[str, QMenu] = {}
        self.raster_menu = self.window.menuBar().addMenu("&Raster")
        self.docks = []
        self.active_layer = None
        self.messages: list[tuple[str, str, int]] = []  # (title, text, level) of pushMessage calls
        self.bar.widgetAdded.connect(self._record)

    def _record(self, widget) -> None:
        item = sip.cast(widget, QgsMessageBarItem)  # the signal carries it typed as a QWidget
        self.messages.append((item.title(), item.text(), int(item.level())))

    # ---- the QgisInterface methods the plugin uses ----------------------------------------------
    def mainWindow(self):  # noqa: N802
        return self.window

    def mapCanvas(self):  # noqa: N802
        return self.canvas

    def messageBar(self):  # noqa: N802
        return self.bar

    def activeLayer(self):  # noqa: N802
        return self.active_layer

    def addToolBarIcon(self, action):  # noqa: N802
        self.toolbar.addAction(action)

    def removeToolBarIcon(self, action):  # noqa: N802
        self.toolbar.removeAction(action)

    # The raster menu and toolbar (category=Raster) are recorded like the generic ones.
    def addRasterToolBarIcon(self, action):  # noqa: N802
        self.addToolBarIcon(action)

    def removeRasterToolBarIcon(self, action):  # noqa: N802
        self.removeToolBarIcon(action)

    def rasterMenu(self):  # noqa: N802
        return self.raster_menu

    def addPluginToRasterMenu(self, name, action):  # noqa: N802
        self.addPluginToMenu(name, action)

    def removePluginRasterMenu(self, name, action):  # noqa: N802
        self.removePluginMenu(name, action)

    def addPluginToMenu(self, name, action):  # noqa: N802
        self.plugin_menus.setdefault(name, QMenu(name)).addAction(action)

    def removePluginMenu(self, name, action):  # noqa: N802
        menu = self.plugin_menus.get(name)
        if menu is not None:
            menu.removeAction(action)
            if not menu.actions():
                del self.plugin_menus[name]

    def addDockWidget(self, area, dock):  # noqa: N802
        self.window.addDockWidget(area, dock)
        self.docks.append(dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self.window.removeDockWidget(dock)
        self.docks.remove(dock)
