"""The Sketch Search dock: sketch canvas and its tools, what to search, options, search/cancel,
progress, and the ranked list of matches."""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Callable

from qgis.core import (Qgis, QgsApplication, QgsCoordinateTransform, QgsGeometry, QgsMessageLog, QgsProject,
                       QgsVectorLayer)
from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget, QgsFileWidget, QgsMapLayerComboBox, QgsMapToolExtent
from qgis.PyQt.QtCore import QSize, Qt, QTimer
from qgis.PyQt.QtGui import QIcon, QPixmap
from qgis.PyQt.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                                 QFrame, QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QMessageBox,
                                 QProgressBar, QPushButton, QScrollArea, QSizePolicy, QSpinBox, QToolButton,
                                 QVBoxLayout, QWidget)

from . import inputs
from .compat import RASTER_OR_POLYGON_LAYERS
from .refine_panel import RefinePanel
from .search_task import LOG_TAG, EngineInfoTask, PrepareTask, SearchRequest, SearchTask
from .sketch_canvas import SketchCanvas
from .theme import icon

# The engine's defaults (engine.search.SearchOptions); the plugin does not import the engine.
DEFAULT_TILE_SIZES = "60, 120, 240"
DEFAULT_TOP_K = 20
MAX_TOP_K = 1000

# Ask before a search that computes more tiles than this (about a minute on a laptop CPU).
CONFIRM_TILES = 3000
EXTENT_CANVAS, EXTENT_LAYER, EXTENT_SELECTION, EXTENT_DRAWN = (
    "Map canvas", "Extent of a layer", "Selected polygons", "Rectangle drawn on the map")


class SketchSearchDock(QgsDockWidget):
    def __init__(self, iface, parent: QWidget | None = None):
        super().__init__("Sketch Search", parent)
        self.setObjectName("SketchSearchDock")
        self.iface = iface
        self.task: PrepareTask | SearchTask | None = None  # the running step, if any
        self.search_task: SearchTask | None = None  # the last search launched
        self.estimate = None  # search_task.Estimate of the last search launched
        self.info_task: EngineInfoTask | None = None
        self.engine_info: dict = {}  # the worker's `hello` answer once it has started
        self.last_layer_id: str | None = None
        self.sketch_label = "sketch"
        # Asked before large searches; tests replace it with a function returning True/False.
        self.confirm: Callable[[str], bool] = self._ask
        self._build()
        QgsProject.instance().layersAdded.connect(self._refresh_layers)
        QgsProject.instance().layersRemoved.connect(self._refresh_layers)
        self._refresh_layers()

    # ---- construction ---------------------------------------------------------------------------
    def _tool(self, name: str, tip: str, slot, checkable: bool = False) -> QToolButton:
        button = QToolButton()
        button.setIcon(icon(name))
        button.setToolTip(tip)
        button.setAutoRaise(True)
        button.setCheckable(checkable)
        button.clicked.connect(slot)
        return button

    def _build(self) -> None:
        body = QWidget()
        layout = QVBoxLayout(body)

        # Shown while the engine is not installed (or does not start): what to do, and the button.
        self.engine_banner = QFrame()
        self.engine_banner.setFrameShape(QFrame.Shape.StyledPanel)
        banner = QVBoxLayout(self.engine_banner)
        self.engine_label = QLabel()
        self.engine_label.setWordWrap(True)
        self.install_button = QPushButton("Install the search engine…")
        self.install_button.clicked.connect(self._install)
        banner.addWidget(self.engine_label)
        banner.addWidget(self.install_button)
        self.engine_banner.setVisible(False)
        layout.addWidget(self.engine_banner)

        tools = QHBoxLayout()
        self.pen_button = self._tool("pen", "Pen: draw strokes", lambda: self._set_eraser(False), True)
        self.eraser_button = self._tool("eraser", "Eraser: rub strokes out", lambda: self._set_eraser(True), True)
        group = QButtonGroup(self)
        group.setExclusive(True)
        group.addButton(self.pen_button)
        group.addButton(self.eraser_button)
        self.pen_button.setChecked(True)
        self.width_spin = QSpinBox()
        self.width_spin.setRange(1, 40)
        self.width_spin.setToolTip("Pen width, in 1/512 of the canvas side (the same whatever the dock size)")
        self.width_spin.setSuffix(" pt")
        self.undo_button = self._tool("undo", "Undo", lambda: self.canvas.undo())
        self.redo_button = self._tool("redo", "Redo", lambda: self.canvas.redo())
        self.clear_button = self._tool("clear", "Clear the sketch", lambda: self.canvas.clear())
        self.load_button = self._tool("open", "Load a sketch from an image file", self._load_sketch)
        self.save_button = self._tool("save", "Save the sketch as an image", self._save_sketch)
        for w in (self.pen_button, self.eraser_button, self.width_spin, self.undo_button, self.redo_button,
                  self.clear_button, self.load_button, self.save_button):
            tools.addWidget(w)
        tools.addStretch(1)
        layout.addLayout(tools)

        self.canvas = SketchCanvas()
        self.width_spin.setValue(int(self.canvas.pen_width))
        self.width_spin.valueChanged.connect(lambda v: setattr(self.canvas, "pen_width", float(v)))
        self.canvas.changed.connect(self._update_buttons)
        layout.addWidget(self.canvas, 2)

        where = QgsCollapsibleGroupBox("Where to search")
        form = QFormLayout(where)
        self.layers_mode = QComboBox()
        self.layers_mode.addItems(["Visible raster layers", "Chosen raster layers"])
        self.layers_mode.currentIndexChanged.connect(self._update_buttons)
        form.addRow("Layers", self.layers_mode)
        self.layer_list = QListWidget()
        self.layer_list.setMaximumHeight(90)
        form.addRow(self.layer_list)
        self.extent_mode = QComboBox()
        self.extent_mode.addItems([EXTENT_CANVAS, EXTENT_LAYER, EXTENT_SELECTION, EXTENT_DRAWN])
        self.extent_mode.currentIndexChanged.connect(self._update_buttons)
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
        layout.addWidget(where)

        options = self.options_box = QgsCollapsibleGroupBox("Options")
        options.setCollapsed(True)
        oform = QFormLayout(options)
        self.tile_sizes = QLineEdit(DEFAULT_TILE_SIZES)
        self.tile_sizes.setToolTip("Tile edge in metres on the ground, one per scale: about twice the object's size")
        oform.addRow("Tile sizes (m)", self.tile_sizes)
        self.top_k = QSpinBox()
        self.top_k.setRange(1, MAX_TOP_K)
        self.top_k.setValue(DEFAULT_TOP_K)
        oform.addRow("Results", self.top_k)
        self.stage2 = QCheckBox("Re-rank the best with cross-attention")
        self.stage2.setChecked(False)  # as engine.search.DEFAULT_STAGE2: it lowered precision when measured
        oform.addRow(self.stage2)
        self.resolution = QDoubleSpinBox()
        self.resolution.setRange(0.0, 1e6)
        self.resolution.setDecimals(2)
        self.resolution.setSpecialValueText("native / automatic")
        self.resolution.setToolTip("Pixel size in map units for web layers (WMS, XYZ); 0 = automatic")
        oform.addRow("Web layer resolution", self.resolution)
        self.device = QComboBox()
        self.device.addItem("auto")
        self.device.currentIndexChanged.connect(self._show_device)
        oform.addRow("Device", self.device)
        self.device_label = QLabel("(shown once the search engine has started)")
        self.device_label.setWordWrap(True)
        self.device_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        oform.addRow(self.device_label)
        self.checkpoint = QgsFileWidget()
        self.checkpoint.setFilter("Model checkpoints (*.safetensors *.pth *.pt)")
        self.checkpoint.lineEdit().setPlaceholderText("the shipped default model")
        oform.addRow("Model", self.checkpoint)
        layout.addWidget(options)

        run = QHBoxLayout()
        self.search_button = QPushButton(icon("search"), "Search")
        self.search_button.clicked.connect(self.start_search)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_search)
        run.addWidget(self.search_button, 2)
        run.addWidget(self.cancel_button, 1)
        layout.addLayout(run)
        self.progress = QProgressBar()
        self._reset_progress()
        layout.addWidget(self.progress)
        self.status = QLabel("Draw the object you are looking for, then press Search.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

        self.results = QListWidget()
        self.results.setIconSize(QSize(64, 64))
        self.results.setMinimumHeight(140)  # about two matches with their thumbnails
        self.results.itemClicked.connect(self._zoom_to_item)
        layout.addWidget(self.results, 3)
        self.refine_panel = RefinePanel(self)  # marks, Refine, More like this, search by example
        layout.addWidget(self.refine_panel)
        self.export_button = QPushButton(icon("export"), "Export matches…")
        self.export_button.clicked.connect(self._export)
        layout.addWidget(self.export_button)

        # Scrolls rather than growing: the dock must never make QGIS's window taller than the screen.
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        # ... but never narrower than its widgets: no clipped fields or buttons at the right edge.
        scroll.setMinimumWidth(body.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        self.setWidget(scroll)
        self._update_buttons()

    # ---- small state updates --------------------------------------------------------------------
    def _set_eraser(self, on: bool) -> None:
        self.canvas.eraser = on

    def _update_buttons(self, *_) -> None:
        running = self.task is not None
        self.undo_button.setEnabled(self.canvas.can_undo())
        self.redo_button.setEnabled(self.canvas.can_redo())
        self.layer_list.setEnabled(self.layers_mode.currentIndex() == 1)
        self.extent_layer.setEnabled(self.extent_mode.currentText() == EXTENT_LAYER)
        self.draw_button.setEnabled(self.extent_mode.currentText() == EXTENT_DRAWN)
        self.search_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.export_button.setEnabled(self._result_layer() is not None)
        self.refine_panel.update_buttons(running)

    def _refresh_layers(self, *_) -> None:
        checked = {self.layer_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.layer_list.count())
                   if self.layer_list.item(i).checkState() == Qt.CheckState.Checked}
        self.layer_list.clear()
        for layer in inputs.raster_layers():
            item = QListWidgetItem(layer.name())
            item.setData(Qt.ItemDataRole.UserRole, layer.id())
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if layer.id() in checked else Qt.CheckState.Unchecked)
            self.layer_list.addItem(item)
        self._update_buttons()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self.engine_info and self.info_task is None:
            QTimer.singleShot(0, self.start_engine)  # after the dock has appeared

    def start_engine(self) -> EngineInfoTask | None:
        """Starts the worker in the background and fills the device list from its answer."""
        from .worker_client import configured_python

        python, why = configured_python()
        if python is None:
            self._show_engine_problem("The search engine is not installed yet. It runs outside QGIS, in a Python "
                                      "environment of its own (for CPUs about 100 MB to download; the installer "
                                      "shows what it does).")
            return None
        self.engine_label.setText("Starting the search engine…")
        self.info_task = EngineInfoTask(on_done=self._engine_started)
        QgsApplication.taskManager().addTask(self.info_task)
        return self.info_task

    def _engine_started(self, task: EngineInfoTask) -> None:
        self.info_task = None
        if task.error:
            self._show_engine_problem(f"The search engine does not start: {task.error}")
            return
        self.engine_info = task.info
        self.engine_banner.setVisible(False)
        current = self.device.currentText()
        self.device.blockSignals(True)
        self.device.clear()
        self.device.addItems(task.info.get("devices") or ["auto"])
        if current in task.info.get("devices", []):
            self.device.setCurrentText(current)
        self.device.blockSignals(False)
        self._show_device()

    def _show_engine_problem(self, text: str) -> None:
        self.engine_label.setText(text)
        self.engine_banner.setVisible(True)
        self.status.setText("Install the search engine (above) to search.")

    def _install(self) -> None:
        from .install_dialog import InstallDialog

        dialog = InstallDialog(self)
        dialog.exec()
        self.engine_info = {}
        self.start_engine()

    def _show_device(self, *_) -> None:
        info = self.engine_info
        if info:
            runtime = "ONNX Runtime" if info.get("runtime") == "onnx" else "PyTorch"
            self.device_label.setText(f"{self.device.currentText()}: engine on {runtime}, Python {info.get('python')}")

    # ---- extent drawn on the map ---------------------------------------------------------------
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
        self.status.setText(f"Search extent: {rect.width():.0f} x {rect.height():.0f} map units drawn on the map.")
        self.draw_button.setChecked(False)

    # ---- sketch files -----------------------------------------------------------------------------
    def _load_sketch(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Load a sketch", "", "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)")
        if name:
            try:
                self.canvas.load_image(name)
                self.sketch_label = Path(name).stem
            except Exception as exc:
                self._message(f"Cannot load the sketch: {exc}", Qgis.MessageLevel.Warning)

    def _save_sketch(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Save the sketch", f"{self.sketch_label}.png", "PNG image (*.png)")
        if name:
            try:
                self.canvas.save_image(name if name.lower().endswith(".png") else name + ".png")
            except Exception as exc:
                self._message(str(exc), Qgis.MessageLevel.Warning)

    # ---- search --------------------------------------------------------------------------------------
    def chosen_layers(self) -> list:
        if self.layers_mode.currentIndex() == 0:
            return inputs.visible_raster_layers()
        ids = [self.layer_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.layer_list.count())
               if self.layer_list.item(i).checkState() == Qt.CheckState.Checked]
        return [QgsProject.instance().mapLayer(i) for i in ids if QgsProject.instance().mapLayer(i)]

    def chosen_extent(self):
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

    def options(self) -> dict:
        """The search options in the worker protocol (engine.search.SearchOptions fields by name)."""
        try:
            sizes = [float(s) for s in self.tile_sizes.text().replace(";", ",").split(",") if s.strip()]
        except ValueError:
            raise inputs.InputError("Tile sizes must be numbers in metres separated by commas, e.g. 60, 120.") from None
        if not sizes or not all(0 < s < 1e6 for s in sizes):
            raise inputs.InputError("Give at least one positive tile size in metres.")
        crs = self.iface.mapCanvas().mapSettings().destinationCrs()
        return {"top_k": self.top_k.value(), "tile_sizes_m": sizes, "stage2": self.stage2.isChecked(),
                "output_crs": crs.toWkt() if crs.isValid() else None}

    def build_request(self, sketch_required: bool = True) -> SearchRequest:
        """The search the dock is set up for; with sketch_required=False an empty sketch is left out
        (search by example adds the example)."""
        if self.canvas.is_empty() and sketch_required:
            raise inputs.InputError("The sketch is empty: draw the object you are looking for first.")
        extent = self.chosen_extent()
        sources = inputs.build_sources(self.chosen_layers(), extent, self.resolution.value() or None)
        sketch = None if self.canvas.is_empty() else self.canvas.to_png_base64()
        return SearchRequest(sketch_png=sketch, sketch_label=self.sketch_label, sources=sources,
                             extent=inputs.engine_extent(*extent), options=self.options(),
                             checkpoint=self.checkpoint.filePath() or None, device=self.device.currentText())

    def _ask(self, text: str) -> bool:
        yes, no = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No
        return QMessageBox.question(self, "Large search", text, yes | no, no) == yes

    def start_search(self, request: SearchRequest | None = None) -> PrepareTask | None:
        """Checks the inputs (at once, in plain words), then renders web layers, loads the model and
        estimates the search in the background; _prepared() asks before a large search and launches
        it. Returns the preparing task, or None when nothing was started. `request`: a prepared one
        (refining, search by example: refine_panel.py), else the dock's own."""
        if self.task is not None:
            return None
        try:
            request = request or self.build_request()
        except inputs.InputError as exc:
            self._message(str(exc), Qgis.MessageLevel.Warning)
            return None
        except Exception as exc:
            self._message(f"The search cannot start: {exc}", Qgis.MessageLevel.Critical)
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.MessageLevel.Critical)
            return None
        self.search_task = None
        self.task = PrepareTask(request, on_done=self._prepared)
        self.progress.setFormat("")
        self.progress.setRange(0, 0)  # busy until the engine reports a tile count
        self.status.setText("Starting the search engine, loading the model and estimating the search…")
        self._update_buttons()
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def _prepared(self, prep: PrepareTask) -> None:
        self.task = None
        if prep.device:
            self.device_label.setText(prep.device)
        request, est = prep.request, prep.estimate
        if prep.error or prep.was_cancelled:
            self._finish_failed(prep.error)
            return
        max_tiles = int(request.options.get("max_tiles", 20000))
        if est is not None and (est.to_compute > CONFIRM_TILES or est.to_compute > max_tiles):
            if not self.confirm(f"This search covers {est.describe()}.\nStart it?"):
                self._finish_failed(None, "Search not started.")
                return
            if est.to_compute > max_tiles:
                request.options = {**request.options, "max_tiles": est.to_compute}
        self.estimate = est
        self.search_task = self.task = SearchTask(request, on_done=self._on_done)
        self.task.tilesProgress.connect(self._on_progress)
        self.status.setText(f"Searching: {est.describe()}" if est is not None else "Searching…")
        self._update_buttons()
        QgsApplication.taskManager().addTask(self.task)

    def _reset_progress(self) -> None:
        """An empty bar with no text: no '0 / 100 tiles' before any search or after a cancel."""
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")

    def _finish_failed(self, error: str | None, text: str = "Search cancelled; nothing was added to the map.") -> None:
        self._reset_progress()
        self.status.setText(error or text)
        self._message(error or text, Qgis.MessageLevel.Critical if error else Qgis.MessageLevel.Info)
        self._update_buttons()

    def cancel_search(self) -> None:
        if self.task is not None:
            self.status.setText("Cancelling…")
            self.task.cancel()

    def _on_progress(self, done: int, total: int, message: str) -> None:
        if total > 0:  # (0, 0) comes with messages about steps that compute no tiles
            self.progress.setFormat("%v / %m tiles" if "tile" in message or not message else "%p %")
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        if message:
            self.status.setText(message)

    def _on_done(self, task: SearchTask) -> None:
        self.task = None
        if task.error or task.was_cancelled or task.outcome.layer is None:
            self._finish_failed(task.error)
            return
        tiles = max(self.estimate.tiles if self.estimate else task.outcome.computed + task.outcome.cached, 1)
        self.progress.setFormat("%v / %m tiles")
        self.progress.setRange(0, tiles)
        self.progress.setValue(tiles)  # the finished search's tile count stays shown
        self.last_layer_id = task.outcome.layer.id()
        self._show_results(task)
        counts = f", {tiles} tiles ({task.outcome.cached} from the index)" if self.estimate else ""
        text = f"{len(task.outcome.matches)} matches in {task.outcome.seconds:.0f} s{counts} on {task.outcome.device}."
        self.status.setText(text)
        self._message(text, Qgis.MessageLevel.Success)
        self._update_buttons()

    # ---- results -----------------------------------------------------------------------------------
    def _show_results(self, task: SearchTask) -> None:
        self.results.clear()
        layer = task.outcome.layer
        thumbs = task.outcome.thumbnails + [None] * len(task.outcome.matches)
        for match, thumb in zip(task.outcome.matches, thumbs):
            item = QListWidgetItem(f"#{match['rank']}   score {match['score']:.3f}\n"
                                   f"{match['source']} · {match['scale']:g} m tiles")
            if thumb is not None:
                item.setIcon(QIcon(QPixmap.fromImage(thumb)))
            item.setData(Qt.ItemDataRole.UserRole, (layer.id(), int(match["rank"])))
            self.results.addItem(item)
        self.refine_panel.decorate()

    def _result_layer(self) -> QgsVectorLayer | None:
        layer = QgsProject.instance().mapLayer(self.last_layer_id) if self.last_layer_id else None
        return layer if isinstance(layer, QgsVectorLayer) else None

    def zoom_to_match(self, layer_id: str, rank: int) -> bool:
        layer = QgsProject.instance().mapLayer(layer_id)
        if layer is None:
            self._message("That result layer has been removed.", Qgis.MessageLevel.Warning)
            return False
        feature = next(iter(layer.getFeatures(f'"rank" = {int(rank)}')), None)
        if feature is None:
            return False
        canvas = self.iface.mapCanvas()
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
        from .export import export_with_dialog

        layer = self._result_layer()
        if layer is None:
            return
        try:
            path = export_with_dialog(layer, self)
        except Exception as exc:
            self._message(str(exc), Qgis.MessageLevel.Critical)
            return
        if path:
            self._message(f"Matches written to {path}", Qgis.MessageLevel.Success)

    def _message(self, text: str, level) -> None:
        self.iface.messageBar().pushMessage("Sketch Search", text, level=level, duration=8)

    def closeEvent(self, event) -> None:
        self.cancel_search()
        super().closeEvent(event)

    def cleanup(self) -> None:
        """Disconnects from the project and stops a running search (plugin unload)."""
        for signal in (QgsProject.instance().layersAdded, QgsProject.instance().layersRemoved):
            try:
                signal.disconnect(self._refresh_layers)
            except TypeError:
                pass
        if self.extent_tool is not None:
            self.draw_button.setChecked(False)
            self.extent_tool.deleteLater()
            self.extent_tool = None
        self.refine_panel.cleanup()
        if self.task is not None:
            self.task.on_done = None
            self.task.cancel()
            self.task = None
