"""Under the dock's result list: mark matches right or wrong, Refine, More like this, and search by
example with a rectangle drawn on the map. The query and the marks live on the result layer
(refine.py), so a layer of a reopened project can be refined too: make it the active layer."""
from __future__ import annotations

import os

from qgis.core import Qgis, QgsGeometry, QgsVectorLayer
from qgis.gui import QgsMapToolExtent
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAbstractItemView, QGridLayout, QListWidgetItem, QPushButton, QWidget

from . import inputs
from .refine import (RIGHT, WRONG, example_request, marks_of, query_of, refine_places, request_from_query,
                     selected_ranks, set_marks)

BASE_TEXT = Qt.ItemDataRole.UserRole + 1   # a row's text without its mark
MARK_PREFIX = {RIGHT: "✓ right   ", WRONG: "✗ wrong   ", None: ""}


class RefinePanel(QWidget):
    def __init__(self, dock, results):
        super().__init__()
        self.dock = dock
        self.results = results   # the dock's ResultsPanel, whose list this panel marks
        self.example_tool = None
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.right_button = self._button("Right", "Mark the selected matches (rows, or features on the map) as right",
                                         lambda: self.mark(RIGHT))
        self.wrong_button = self._button("Wrong", "Mark the selected matches (rows, or features on the map) as wrong",
                                         lambda: self.mark(WRONG))
        self.clear_button = self._button("Unmark", "Remove the marks of the selected matches", lambda: self.mark(None))
        self.refine_button = self._button("Refine", "Search again, toward the matches marked right and away from "
                                                    "those marked wrong: a new ranked layer", self.refine)
        self.more_button = self._button("More like this", "Search by example: matches like the selected one",
                                        self.more_like_this)
        self.example_button = self._button("By example…", "Draw a rectangle around an example on the map: "
                                                          "search for more like it (no sketch needed)",
                                           self._draw_example)
        self.example_button.setCheckable(True)
        for i, b in enumerate((self.right_button, self.wrong_button, self.clear_button)):
            grid.addWidget(b, 0, i)
        for i, b in enumerate((self.refine_button, self.more_button, self.example_button)):
            grid.addWidget(b, 1, i)
        results.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        results.list.itemChanged.connect(self._check_changed)

    def _button(self, text: str, tip: str, slot) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    # ---- which layer -------------------------------------------------------------------------------
    def layer(self) -> QgsVectorLayer | None:
        """The result layer the dock's list shows."""
        return self.results.layer()

    def target_layer(self) -> QgsVectorLayer | None:
        """The active layer when it is a result layer (e.g. of a reopened project), else the list's."""
        active = self.dock.iface.activeLayer()
        if query_of(active) is not None:
            if self.layer() is None or active.id() != self.layer().id():
                self.results.show_layer(active)
                self.dock.update_buttons()
            return active
        return self.layer()

    # ---- marks -----------------------------------------------------------------------------------
    def decorate(self) -> None:
        """A check per row (ticked = right) and the mark in front of its text."""
        layer = self.layer()
        marks = marks_of(layer) if layer is not None else {}
        results = self.results.list
        results.blockSignals(True)
        try:
            for i in range(results.count()):
                item = results.item(i)
                if item.data(BASE_TEXT) is None:
                    item.setData(BASE_TEXT, item.text())
                mark = marks.get(item.data(Qt.ItemDataRole.UserRole)[1], {}).get("mark")
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if mark == RIGHT else Qt.CheckState.Unchecked)
                item.setText(MARK_PREFIX[mark] + item.data(BASE_TEXT))
        finally:
            results.blockSignals(False)

    def _check_changed(self, item: QListWidgetItem) -> None:
        layer = self.layer()
        if layer is None or item.data(Qt.ItemDataRole.UserRole) is None:
            return
        rank = item.data(Qt.ItemDataRole.UserRole)[1]
        current = marks_of(layer).get(rank, {}).get("mark")
        if item.checkState() == Qt.CheckState.Checked:
            set_marks(layer, [rank], RIGHT)
        elif current == RIGHT:
            set_marks(layer, [rank], None)
        self.decorate()
        self.dock.update_buttons()

    def mark(self, mark: str | None) -> int:
        """Marks the selected rows, or else the features selected on the map; returns how many."""
        results = self.results.list
        layer = self.layer()
        ranks = [item.data(Qt.ItemDataRole.UserRole)[1] for item in results.selectedItems()]
        if not ranks:
            layer = self.target_layer()
            ranks = selected_ranks(layer) if layer is not None else []
        if layer is None or not ranks:
            self.dock.message("Select matches first: rows of the list, or features of a result layer on the map.",
                               Qgis.MessageLevel.Warning)
            return 0
        set_marks(layer, ranks, mark)
        self.decorate()
        self.dock.update_buttons()
        return len(ranks)

    # ---- searches ----------------------------------------------------------------------------------
    def refine(self):
        """The result layer's query again, with its marks: a new ranked layer."""
        layer = self.target_layer()
        query = query_of(layer)
        if query is None:
            self.dock.message("Search first: Refine works on the matches of a search.", Qgis.MessageLevel.Warning)
            return None
        like, unlike = refine_places(layer)
        if not like and not unlike:
            self.dock.message("Mark some matches right or wrong first (tick rows, or select matches and press "
                               "Right or Wrong).", Qgis.MessageLevel.Warning)
            return None
        label = query.get("sketch_label") or "sketch"
        request = request_from_query(query, like, unlike, sketch=bool(query.get("sketch_png")),
                                     label=label if label.endswith("refined") else f"{label} refined")
        return self._start(request)

    def more_like_this(self):
        """Search by example from the selected (or current) row's match, over what its search covered."""
        layer, query = self.layer(), query_of(self.layer())
        item = (self.results.list.selectedItems() or [self.results.list.currentItem()])[0]
        if layer is None or query is None or item is None:
            self.dock.message("Select a match in the list first.", Qgis.MessageLevel.Warning)
            return None
        rank = item.data(Qt.ItemDataRole.UserRole)[1]
        feature = next(iter(layer.getFeatures(f'"rank" = {int(rank)}')), None)
        wkt = feature.geometry().asWkt() if feature is not None else marks_of(layer).get(rank, {}).get("wkt")
        if not wkt:
            self.dock.message(f"Match #{rank} has no polygon any more.", Qgis.MessageLevel.Warning)
            return None
        base = request_from_query(query, [], [], sketch=False)
        return self._start(example_request(base, wkt, query.get("crs_wkt") or layer.crs().toWkt(),
                                           label=f"like #{rank}"))

    def _draw_example(self, on: bool) -> None:
        canvas = self.dock.iface.mapCanvas()
        if on:
            if self.example_tool is None:
                self.example_tool = QgsMapToolExtent(canvas)
                self.example_tool.extentChanged.connect(self.search_by_example)
                self.example_tool.deactivated.connect(lambda: self.example_button.setChecked(False))
            canvas.setMapTool(self.example_tool)
        elif self.example_tool is not None and canvas.mapTool() is self.example_tool:
            canvas.unsetMapTool(self.example_tool)

    def search_by_example(self, rect):
        """A rectangle drawn on the map (map canvas CRS) is the example; where to search and the options
        are the dock's, and the sketch is not used."""
        self.example_button.setChecked(False)
        if rect.isEmpty():
            return None
        crs = self.dock.iface.mapCanvas().mapSettings().destinationCrs().toWkt()
        try:
            request = self.dock.build_request(sketch_required=False)
        except inputs.InputError as exc:
            self.dock.message(str(exc), Qgis.MessageLevel.Warning)
            return None
        return self.dock.start_search(example_request(request, QgsGeometry.fromRect(rect).asWkt(), crs))

    def _start(self, request):
        gone = [s["path"] for s in request.sources if isinstance(s, dict) and _is_missing_file(s.get("path"))]
        if gone:
            self.dock.message(f"The imagery of that search is no longer there ({gone[0]}): search again.",
                               Qgis.MessageLevel.Warning)
            return None
        return self.dock.start_search(request)

    # ---- state -----------------------------------------------------------------------------------
    def update_buttons(self, running: bool) -> None:
        has_rows = self.results.list.count() > 0
        for b in (self.right_button, self.wrong_button, self.clear_button, self.more_button):
            b.setEnabled(has_rows and not running)
        self.refine_button.setEnabled(not running and (has_rows or query_of(self.dock.iface.activeLayer()) is not None))
        self.example_button.setEnabled(not running)

    def cleanup(self) -> None:
        if self.example_tool is not None:
            self.example_button.setChecked(False)
            self.example_tool.deleteLater()
            self.example_tool = None


def _is_missing_file(path) -> bool:
    """A local file path that no longer exists (GDAL /vsi paths and connection strings are not checked)."""
    return isinstance(path, str) and os.path.isabs(path) and not path.startswith("/vsi") and not os.path.exists(path)
