"""The Sketch Search dock: its panels (panels/) stacked in a scroll area, and the view of the search
flow (flow.py), which decides what happens and what to show."""
from __future__ import annotations

from qgis.core import Qgis, QgsMessageLog
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import QFrame, QMessageBox, QScrollArea, QVBoxLayout, QWidget

from . import flow
from .errors import InputError
from .inputs import build_sources, engine_extent
from .panels.engine import EnginePanel
from .panels.options import OptionsPanel
from .panels.results import ResultsPanel
from .panels.run import RunPanel
from .panels.sketch import SketchPanel
from .panels.where import WherePanel
from .request import SearchRequest
from .search_task import LOG_TAG, PrepareTask, TaskLauncher

LEVELS = {flow.INFO: Qgis.MessageLevel.Info, flow.WARNING: Qgis.MessageLevel.Warning,
          flow.CRITICAL: Qgis.MessageLevel.Critical, flow.SUCCESS: Qgis.MessageLevel.Success}


class SketchSearchDock(QgsDockWidget):
    def __init__(self, iface, parent: QWidget | None = None):
        super().__init__("Sketch Search", parent)
        self.setObjectName("SketchSearchDock")
        self.iface = iface
        self.flow = flow.SearchFlow(self, TaskLauncher(), confirm=self._ask)
        self._build()

    def _build(self) -> None:
        body = QWidget()
        layout = QVBoxLayout(body)
        self.engine_panel = EnginePanel()
        self.engine_panel.started.connect(self._engine_started)
        self.engine_panel.problem.connect(lambda _: self.show_status("Install the search engine (above) to search."))
        self.sketch_panel = SketchPanel(self.message)
        self.where_panel = WherePanel(self.iface)
        self.where_panel.statusText.connect(self.show_status)
        self.where_panel.layersChanged.connect(self.update_buttons)
        self.options_panel = OptionsPanel()
        self.run_panel = RunPanel(self.start_search, self.cancel_search)
        self.results_panel = ResultsPanel(self)
        layout.addWidget(self.engine_panel)
        layout.addWidget(self.sketch_panel, 2)
        for panel in (self.where_panel, self.options_panel, self.run_panel):
            layout.addWidget(panel)
        layout.addWidget(self.results_panel, 3)

        # Scrolls rather than growing: the dock must never make QGIS's window taller than the screen.
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        # ... but never narrower than its widgets: no clipped fields or buttons at the right edge.
        scroll.setMinimumWidth(body.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        self.setWidget(scroll)
        self.update_buttons()

    # ---- the engine ---------------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if self.engine_panel.needs_start():
            QTimer.singleShot(0, self.engine_panel.start)  # after the dock has appeared

    def _engine_started(self, info: dict) -> None:
        self.options_panel.set_engine(info)

    # ---- the search ---------------------------------------------------------------------------------
    def build_request(self, sketch_required: bool = True) -> SearchRequest:
        """The search the dock is set up for; with sketch_required=False an empty sketch is left out
        (search by example adds the example)."""
        sketch = self.sketch_panel.png_base64()
        if sketch is None and sketch_required:
            raise InputError("The sketch is empty: draw the object you are looking for first.")
        settings = self.options_panel.settings()
        extent = self.where_panel.extent()
        sources = build_sources(self.where_panel.layers(), extent, settings.web_resolution)
        crs = self.iface.mapCanvas().mapSettings().destinationCrs()
        return SearchRequest.from_settings(settings, sketch, self.sketch_panel.label, sources, engine_extent(*extent),
                                           crs.toWkt() if crs.isValid() else None)

    def start_search(self, request: SearchRequest | None = None) -> PrepareTask | None:
        """Checks the inputs (at once, in plain words), then prepares the search in the background
        (flow.py). Returns the preparing task, or None when nothing was started. `request`: a prepared
        one (refining, search by example: refine_panel.py), else the dock's own."""
        return self.flow.start(lambda: request or self.build_request())

    def cancel_search(self) -> None:
        self.flow.cancel()

    def _ask(self, text: str) -> bool:
        yes, no = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No
        return QMessageBox.question(self, "Large search", text, yes | no, no) == yes

    # ---- the flow's view ------------------------------------------------------------------------------
    def show_status(self, text: str) -> None:
        self.run_panel.status.setText(text)

    def show_message(self, text: str, level: str) -> None:
        self.message(text, LEVELS[level])

    def show_progress(self, value: int, maximum: int, text_format: str) -> None:
        self.run_panel.show_progress(value, maximum, text_format)

    def show_device(self, text: str) -> None:
        self.options_panel.show_device(text)

    def show_results(self, task) -> None:
        self.results_panel.show_outcome(task)

    def log(self, text: str) -> None:
        QgsMessageLog.logMessage(text, LOG_TAG, Qgis.MessageLevel.Critical)

    def update_buttons(self, *_) -> None:
        running = self.flow.running
        self.run_panel.set_running(running)
        self.results_panel.update_buttons(running)

    def message(self, text: str, level) -> None:
        self.iface.messageBar().pushMessage("Sketch Search", text, level=level, duration=8)

    # ---- closing --------------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.cancel_search()
        super().closeEvent(event)

    def cleanup(self) -> None:
        """Disconnects from the project and stops a running search (plugin unload)."""
        self.where_panel.cleanup()
        self.results_panel.refine_panel.cleanup()
        self.flow.stop()
