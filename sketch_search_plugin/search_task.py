"""The search as QgsTasks: QGIS stays responsive while the engine worker computes.

run() (a background thread) touches no GUI and no project layer: it renders web layers to GeoTIFFs
(RenderedLayer), then sends requests to the engine worker (worker_client) and keeps plain results.
finished() (main thread) builds and adds the result layer, so a cancelled or failed search never
leaves a half layer behind.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Callable

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProject, QgsTask, QgsVectorLayer
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtGui import QImage

from .qgis_source import RenderedLayer
from .request import SearchRequest
from .worker_client import EngineCancelled, EngineError, shared_client

LOG_TAG = "Sketch Search"
THUMB = 96  # thumbnail side in pixels


def log(text: str, level=Qgis.MessageLevel.Info) -> None:
    QgsMessageLog.logMessage(text, LOG_TAG, level)


@dataclass
class Estimate:
    tiles: int
    cached: int
    to_compute: int
    text: str

    def describe(self) -> str:
        return self.text


@dataclass
class SearchOutcome:
    matches: list = field(default_factory=list)      # protocol match dicts, best first
    thumbnails: list = field(default_factory=list)   # QImage or None per match
    crs_wkt: str = ""
    layer: QgsVectorLayer | None = None
    device: str = ""
    seconds: float = 0.0
    computed: int = 0
    cached: int = 0


class _EngineTask(QgsTask):
    """A task that talks to the worker: one-line errors for the user, details in the log tab."""

    def __init__(self, title: str, on_done: Callable | None):
        super().__init__(title, QgsTask.Flag.CanCancel)
        self.on_done = on_done
        self.error: str | None = None
        self.details: str | None = None
        self.was_cancelled = False

    def guarded(self, work: Callable[[], None]) -> bool:
        try:
            work()
            return not self.isCanceled()
        except (EngineCancelled, InterruptedError):
            self.was_cancelled = True
        except EngineError as exc:
            self.error, self.details = exc.message, exc.details
        except Exception as exc:  # everything else is reported to the user, never raised into QGIS
            import traceback

            self.error = f"The search failed ({type(exc).__name__}: {exc}). Details are in the log tab '{LOG_TAG}'."
            self.details = traceback.format_exc()
        return False

    def finished(self, result: bool) -> None:
        if not result and not self.error:
            self.was_cancelled = True
        if self.details:
            log(self.details, Qgis.MessageLevel.Critical)
        if self.on_done is not None:
            self.on_done(self)


def render_sources(sources: list, is_cancelled: Callable[[], bool], progress=None) -> list[dict]:
    """Web layers rendered to GeoTIFFs (cached); the rest as they are."""
    out = []
    for source in sources:
        if isinstance(source, RenderedLayer):
            path = source.render(is_cancelled=is_cancelled, progress=progress)
            source = {"path": str(path), "name": source.name, "bands": None}
        out.append(source)
    return out


class EngineInfoTask(_EngineTask):
    """Starts the worker and asks what it can do (runtime, devices): the dock's device list."""

    def __init__(self, on_done: Callable | None = None):
        super().__init__("Sketch Search: starting the search engine", on_done)
        self.info: dict = {}

    def run(self) -> bool:
        return self.guarded(lambda: self.info.update(shared_client(log).request("hello")))


class PrepareTask(_EngineTask):
    """Before a search, in the background too: renders web layers, loads the model (the first time:
    seconds) and estimates the tile count and time, so the dock can ask before a large search."""

    def __init__(self, request: SearchRequest, on_done: Callable | None = None):
        super().__init__("Sketch search: preparing", on_done)
        self.request = request
        self.estimate: Estimate | None = None
        self.device = ""

    def _progress(self, done: int, total: int, message: str) -> None:
        if total > 0:
            self.setProgress(100.0 * done / total)

    def run(self) -> bool:
        def work():
            self.request.sources = render_sources(self.request.sources, self.isCanceled, self._progress)
            client = shared_client(log)
            loaded = client.request("load", {"checkpoint": self.request.checkpoint,
                                             "device": self.request.device or "auto"}, is_cancelled=self.isCanceled)
            self.device = loaded.get("device", "")
            est = client.request("estimate", self.request.params(), is_cancelled=self.isCanceled)
            self.estimate = Estimate(int(est["tiles"]), int(est["cached"]), int(est["to_compute"]), est["describe"])

        return self.guarded(work)


class SearchTask(_EngineTask):
    # (done, total, message): emitted from the task's thread, delivered queued on the main thread.
    tilesProgress = pyqtSignal(int, int, str)

    def __init__(self, request: SearchRequest, on_done: Callable | None = None):
        super().__init__(f"Sketch search: {request.sketch_label}", on_done)
        self.request = request
        self.outcome = SearchOutcome()

    def _progress(self, done: int, total: int, message: str) -> None:
        if total > 0:
            self.setProgress(100.0 * done / total)
        self.tilesProgress.emit(int(done), int(total), str(message))

    def run(self) -> bool:
        def work():
            self.request.sources = render_sources(self.request.sources, self.isCanceled, self._progress)
            sketch = {"png_base64": self.request.sketch_png} if self.request.sketch_png else None
            params = {**self.request.params(), "sketch": sketch, "thumbnail": THUMB}
            result = shared_client(log).request("search", params, progress=self._progress,
                                                is_cancelled=self.isCanceled)
            out = self.outcome
            out.matches = list(result.get("matches", []))
            out.thumbnails = [decode_thumbnail(m.get("thumbnail_png_base64")) for m in out.matches]
            out.crs_wkt = result.get("crs_wkt") or self.request.options.get("output_crs") or ""
            out.device, out.seconds = result.get("device", ""), float(result.get("seconds", 0.0))
            out.computed, out.cached = int(result.get("computed", 0)), int(result.get("cached", 0))

        return self.guarded(work)

    def finished(self, result: bool) -> None:
        if result and not self.isCanceled():
            try:
                from .refine import remember_query
                from .result_layer import build_result_layer, layer_name

                self.outcome.layer = build_result_layer(self.outcome.matches, self.outcome.crs_wkt,
                                                        layer_name(self.request.sketch_label))
                remember_query(self.outcome.layer, self.request, self.outcome.matches, self.outcome.crs_wkt)
                QgsProject.instance().addMapLayer(self.outcome.layer)
            except Exception as exc:
                import traceback

                result = False
                self.error = f"The matches were found but could not be shown: {exc}"
                self.details = traceback.format_exc()
        super().finished(result)


def decode_thumbnail(data: str | None) -> QImage | None:
    if not data:
        return None
    image = QImage.fromData(base64.b64decode(data), "PNG")
    return None if image.isNull() else image


class TaskLauncher:
    """How the dock's search flow (flow.py) runs its steps: as tasks of QGIS's task manager."""

    def prepare(self, request: SearchRequest, on_done: Callable) -> PrepareTask:
        return PrepareTask(request, on_done=on_done)

    def search(self, request: SearchRequest, on_done: Callable, on_progress: Callable) -> SearchTask:
        task = SearchTask(request, on_done=on_done)
        task.tilesProgress.connect(on_progress)
        return task

    def start(self, task: QgsTask) -> None:
        QgsApplication.taskManager().addTask(task)
