"""The ranked matches of the last search (thumbnail, rank, score, source, scale; a click zooms to the
match), the refine panel under them, and Export matches…."""
from __future__ import annotations

from qgis.core import Qgis, QgsCoordinateTransform, QgsGeometry, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QIcon, QPixmap
from qgis.PyQt.QtWidgets import QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from ..refine_panel import RefinePanel
from ..theme import icon


def row_text(rank, score, source, scale) -> str:
    return f"#{rank}   score {score:.3f}\n{source} · {scale:g} m tiles"


class ResultsPanel(QWidget):
    def __init__(self, dock):
        super().__init__()
        self.dock = dock
        self.last_layer_id: str | None = None   # the result layer the list shows
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.list = QListWidget()
        self.list.setIconSize(QSize(64, 64))
        self.list.setMinimumHeight(140)  # about two matches with their thumbnails
        self.list.itemClicked.connect(self._zoom_to_item)
        layout.addWidget(self.list, 1)
        self.refine_panel = RefinePanel(dock, self)  # marks, Refine, More like this, search by example
        layout.addWidget(self.refine_panel)
        self.export_button = QPushButton(icon("export"), "Export matches…")
        self.export_button.clicked.connect(self._export)
        layout.addWidget(self.export_button)

    def layer(self) -> QgsVectorLayer | None:
        """The result layer the list shows, while it is in the project."""
        layer = QgsProject.instance().mapLayer(self.last_layer_id) if self.last_layer_id else None
        return layer if isinstance(layer, QgsVectorLayer) else None

    def show_outcome(self, task) -> None:
        """The matches of a finished search, with their thumbnails."""
        layer, outcome = task.outcome.layer, task.outcome
        self.last_layer_id = layer.id()
        self.list.clear()
        thumbs = outcome.thumbnails + [None] * len(outcome.matches)
        for match, thumb in zip(outcome.matches, thumbs):
            item = QListWidgetItem(row_text(match["rank"], match["score"], match["source"], match["scale"]))
            if thumb is not None:
                item.setIcon(QIcon(QPixmap.fromImage(thumb)))
            item.setData(Qt.ItemDataRole.UserRole, (layer.id(), int(match["rank"])))
            self.list.addItem(item)
        self.refine_panel.decorate()

    def show_layer(self, layer: QgsVectorLayer) -> None:
        """The matches of a result layer from its features (no thumbnails), e.g. of a reopened project."""
        self.last_layer_id = layer.id()
        self.list.clear()
        for f in sorted(layer.getFeatures(), key=lambda f: f["rank"]):
            item = QListWidgetItem(row_text(f["rank"], f["score"], f["source"], f["scale"]))
            item.setData(Qt.ItemDataRole.UserRole, (layer.id(), int(f["rank"])))
            self.list.addItem(item)
        self.refine_panel.decorate()

    def update_buttons(self, running: bool) -> None:
        self.export_button.setEnabled(self.layer() is not None)
        self.refine_panel.update_buttons(running)

    def zoom_to_match(self, layer_id: str, rank: int) -> bool:
        """Zooms the map to a match with its surroundings and flashes it."""
        layer = QgsProject.instance().mapLayer(layer_id)
        if layer is None:
            self.dock.message("That result layer has been removed.", Qgis.MessageLevel.Warning)
            return False
        feature = next(iter(layer.getFeatures(f'"rank" = {int(rank)}')), None)
        if feature is None:
            return False
        canvas = self.dock.iface.mapCanvas()
        geometry = QgsGeometry(feature.geometry())
        dest = canvas.mapSettings().destinationCrs()
        if layer.crs() != dest:
            geometry.transform(QgsCoordinateTransform(layer.crs(), dest, QgsProject.instance()))
        box = geometry.boundingBox()
        box.scale(4.0)  # the match with its surroundings
        canvas.setExtent(box)
        canvas.refresh()
        canvas.flashGeometries([geometry], dest)
        return True

    def _zoom_to_item(self, item: QListWidgetItem) -> None:
        layer_id, rank = item.data(Qt.ItemDataRole.UserRole)
        self.zoom_to_match(layer_id, rank)

    def _export(self) -> None:
        from ..export import export_with_dialog

        layer = self.layer()
        if layer is None:
            return
        try:
            path = export_with_dialog(layer, self)
        except Exception as exc:
            self.dock.message(str(exc), Qgis.MessageLevel.Critical)
            return
        if path:
            self.dock.message(f"Matches written to {path}", Qgis.MessageLevel.Success)
