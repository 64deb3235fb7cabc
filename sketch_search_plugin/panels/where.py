"""Where to search: which raster layers (the visible ones, or those ticked in a list) and the extent
(map canvas, a layer's extent, selected polygons, or a rectangle drawn on the map)."""
from __future__ import annotations

from qgis.core import QgsGeometry, QgsProject
from qgis.gui import QgsCollapsibleGroupBox, QgsMapLayerComboBox, QgsMapToolExtent
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QListWidget, QListWidgetItem, QPushButton

from .. import inputs
from ..compat import RASTER_OR_POLYGON_LAYERS

EXTENT_CANVAS, EXTENT_LAYER, EXTENT_SELECTION, EXTENT_DRAWN = (
    "Map canvas", "Extent of a layer", "Selected polygons", "Rectangle drawn on the map")


class WherePanel(QgsCollapsibleGroupBox):
    statusText = pyqtSignal(str)   # a line for the dock's status (the rectangle drawn)
    layersChanged = pyqtSignal()   # project layers came or went (the dock's result layer may be gone)

    def __init__(self, iface):
        super().__init__("Where to search")
        self.iface = iface
        form = QFormLayout(self)
        self.layers_mode = QComboBox()
        self.layers_mode.addItems(["Visible raster layers", "Chosen raster layers"])
        self.layers_mode.currentIndexChanged.connect(self.update_buttons)
        form.addRow("Layers", self.layers_mode)
        self.layer_list = QListWidget()
        self.layer_list.setMaximumHeight(90)
        form.addRow(self.layer_list)
        self.extent_mode = QComboBox()
        self.extent_mode.addItems([EXTENT_CANVAS, EXTENT_LAYER, EXTENT_SELECTION, EXTENT_DRAWN])
        self.extent_mode.currentIndexChanged.connect(self.update_buttons)
        form.addRow("Extent", self.extent_mode)
        self.extent_layer = QgsMapLayerComboBox()
        self.extent_layer.setFilters(RASTER_OR_POLYGON_LAYERS)
        form.addRow("Layer", self.extent_layer)
        self.draw_button = QPushButton("Draw a rectangle on the map")
        self.draw_button.setCheckable(True)
        self.draw_button.toggled.connect(self._draw_extent)
        form.addRow(self.draw_button)
        self.drawn_extent = None  # (QgsGeometry, crs wkt) of the last rectangle drawn
        self.extent_tool = None
        QgsProject.instance().layersAdded.connect(self.refresh_layers)
        QgsProject.instance().layersRemoved.connect(self.refresh_layers)
        self.refresh_layers()

    def update_buttons(self, *_) -> None:
        self.layer_list.setEnabled(self.layers_mode.currentIndex() == 1)
        self.extent_layer.setEnabled(self.extent_mode.currentText() == EXTENT_LAYER)
        self.draw_button.setEnabled(self.extent_mode.currentText() == EXTENT_DRAWN)

    def refresh_layers(self, *_) -> None:
        """The list of raster layers, keeping the ticks of those still there."""
        checked = set(self._checked_ids())
        self.layer_list.clear()
        for layer in inputs.raster_layers():
            item = QListWidgetItem(layer.name())
            item.setData(Qt.ItemDataRole.UserRole, layer.id())
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if layer.id() in checked else Qt.CheckState.Unchecked)
            self.layer_list.addItem(item)
        self.update_buttons()
        self.layersChanged.emit()

    def _checked_ids(self) -> list[str]:
        items = (self.layer_list.item(i) for i in range(self.layer_list.count()))
        return [item.data(Qt.ItemDataRole.UserRole) for item in items if item.checkState() == Qt.CheckState.Checked]

    # ---- what to search -------------------------------------------------------------------------
    def layers(self) -> list:
        if self.layers_mode.currentIndex() == 0:
            return inputs.visible_raster_layers()
        project = QgsProject.instance()
        return [project.mapLayer(i) for i in self._checked_ids() if project.mapLayer(i)]

    def extent(self) -> tuple:
        """(QgsGeometry, CRS WKT) of the chosen extent; an InputError says what is missing."""
        mode = self.extent_mode.currentText()
        if mode == EXTENT_CANVAS:
            return inputs.canvas_extent(self.iface.mapCanvas())
        if mode == EXTENT_LAYER:
            layer = self.extent_layer.currentLayer()
            if layer is None:
                raise inputs.InputError("Choose the layer whose extent to search.")
            return inputs.layer_extent(layer)
        if mode == EXTENT_DRAWN:
            if self.drawn_extent is None:
                raise inputs.InputError("Draw the rectangle to search on the map first (button under Extent).")
            return self.drawn_extent
        return inputs.selection_extent(self.iface.activeLayer())

    # ---- extent drawn on the map ------------------------------------------------------------------
    def _draw_extent(self, on: bool) -> None:
        """Activates QGIS's rectangle tool on the map; the rectangle drawn becomes the extent."""
        canvas = self.iface.mapCanvas()
        if on:
            if self.extent_tool is None:
                self.extent_tool = QgsMapToolExtent(canvas)
                self.extent_tool.extentChanged.connect(self._extent_drawn)
                self.extent_tool.deactivated.connect(lambda: self.draw_button.setChecked(False))
            canvas.setMapTool(self.extent_tool)
        elif self.extent_tool is not None and canvas.mapTool() is self.extent_tool:
            canvas.unsetMapTool(self.extent_tool)

    def _extent_drawn(self, rect) -> None:
        if rect.isEmpty():
            return
        crs = self.iface.mapCanvas().mapSettings().destinationCrs()
        self.drawn_extent = (QgsGeometry.fromRect(rect), crs.toWkt())
        self.statusText.emit(f"Search extent: {rect.width():.0f} x {rect.height():.0f} map units drawn on the map.")
        self.draw_button.setChecked(False)

    def cleanup(self) -> None:
        """Disconnects from the project and drops the map tool (plugin unload)."""
        for signal in (QgsProject.instance().layersAdded, QgsProject.instance().layersRemoved):
            try:
                signal.disconnect(self.refresh_layers)
            except TypeError:
                pass
        if self.extent_tool is not None:
            self.draw_button.setChecked(False)
            self.extent_tool.deleteLater()
            self.extent_tool = None
