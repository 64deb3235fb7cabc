"""The search as a QgsTask: the engine runs in a background thread, QGIS stays responsive.

run() (worker thread) touches no GUI and no project layer: it gets ready-made engine sources and
returns plain Python results. finished() (main thread) builds and adds the result layer, so a
cancelled or failed search never leaves a half layer behind.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from qgis.core import (Qgis, QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsGeometry,
                       QgsMessageLog, QgsProject, QgsTask, QgsVectorLayer)
from qgis.PyQt.QtCore import pyqtSignal

LOG_TAG = "Sketch Search"
THUMB = 96  # thumbnail side in pixels

_embedders: dict = {}  # (checkpoint, mtime, device) -> Embedder


class NoModelError(ValueError):
    """No checkpoint chosen and no default model installed."""


def resolve_checkpoint(checkpoint: str | None) -> Path:
    """The checkpoint to use: the chosen file, else the shipped default model; plain errors if absent."""
    from engine.embedder import default_checkpoint

    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise NoModelError(f"The model checkpoint {path} does not exist: choose another file under Options → Model.")
        return path
    path = default_checkpoint()
    if not path.is_file():
        raise NoModelError("No default model is installed with the plugin. Choose a model checkpoint file "
                           "(.safetensors, or an official .pth) under Options → Model.")
    return path


def get_embedder(checkpoint: str | None, device: str | None):
    """The engine's encoder for a checkpoint (None = shipped default) on a device ('auto', 'cpu'...).
    Cached per file version and device: loading a model once per session is enough."""
    from engine.embedder import Embedder

    path = resolve_checkpoint(checkpoint)
    key = (str(path.resolve()), path.stat().st_mtime_ns, device or "auto")
    if key not in _embedders:
        _embedders.clear()  # one model in memory at a time
        _embedders[key] = Embedder.from_checkpoint(path, None if device in (None, "auto") else device)
    return _embedders[key]


def plain_message(exc: BaseException) -> str:
    """One line for the message bar; the traceback goes to the log."""
    from engine.model.checkpoints import CheckpointError
    from engine.preprocess import EmptySketchError
    from engine.search import SearchError

    if isinstance(exc, EmptySketchError):
        return "The sketch is empty: draw the object you are looking for first."
    if isinstance(exc, CheckpointError):
        return f"The model checkpoint cannot be used: {exc}"
    if isinstance(exc, (SearchError, ValueError, FileNotFoundError)):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "The search ran out of memory: search a smaller extent or fewer scales."
    return f"The search failed ({type(exc).__name__}: {exc}). Details are in the log, tab '{LOG_TAG}'."


@dataclass
class SearchRequest:
    sketch: np.ndarray           # RGB uint8, black strokes on white
    sketch_label: str            # names the result layer
    sources: Sequence            # engine RasterSources, built on the main thread
    extent: object | None        # engine.search.Extent or None
    options: object              # engine.search.SearchOptions
    checkpoint: str | None = None
    device: str | None = None


@dataclass
class SearchOutcome:
    matches: list = field(default_factory=list)
    thumbnails: list = field(default_factory=list)  # uint8 (THUMB, THUMB, 3) or None per match
    layer: QgsVectorLayer | None = None
    device: str = ""
    seconds: float = 0.0


def match_window(match, source, transform_context):
    """The pixel window of `source` covering a match polygon (plus a margin), or None."""
    from engine.raster.source import Window

    geom = QgsGeometry.fromWkt(match.geometry.wkt)
    src_crs = QgsCoordinateReferenceSystem.fromWkt(source.crs_wkt)
    out_crs = QgsCoordinateReferenceSystem.fromWkt(match.crs_wkt)
    if src_crs.isValid() and out_crs.isValid() and src_crs != out_crs:
        geom.transform(QgsCoordinateTransform(out_crs, src_crs, transform_context))
    box = geom.boundingBox()
    inverse = ~source.transform
    corners = [inverse @ (x, y) for x in (box.xMinimum(), box.xMaximum()) for y in (box.yMinimum(), box.yMaximum())]
    cols, rows = [c for c, _ in corners], [r for _, r in corners]
    side = max(max(cols) - min(cols), max(rows) - min(rows)) * 1.1  # square, a little context around
    if not side > 0:
        return None
    cx, cy = (max(cols) + min(cols)) / 2, (max(rows) + min(rows)) / 2
    return Window(cx - side / 2, cy - side / 2, side, side)


class SearchTask(QgsTask):
    # (done, total, message): emitted from the worker thread, delivered queued on the main thread.
    tilesProgress = pyqtSignal(int, int, str)

    def __init__(self, request: SearchRequest, on_done: Callable[["SearchTask"], None] | None = None):
        super().__init__(f"Sketch search: {request.sketch_label}", QgsTask.CanCancel)
        self.request = request
        self.on_done = on_done
        self.outcome = SearchOutcome()
        self.error: str | None = None
        self.details: str | None = None
        self.was_cancelled = False
        self._context = QgsProject.instance().transformContext()

    # ---- worker thread ------------------------------------------------------------------------
    def _progress(self, done: int, total: int, message: str) -> None:
        if total > 0:
            self.setProgress(100.0 * done / total)
        self.tilesProgress.emit(int(done), int(total), str(message))

    def run(self) -> bool:
        import time

        from engine.search import SearchCancelled, search

        start = time.perf_counter()
        try:
            embedder = get_embedder(self.request.checkpoint, self.request.device)
            self.outcome.device = embedder.device_description
            if self.isCanceled():
                raise SearchCancelled("cancelled before the search started")
            matches = search(embedder, self.request.sketch, list(self.request.sources), extent=self.request.extent,
                             options=self.request.options, progress=self._progress, is_cancelled=self.isCanceled)
            self.outcome.matches = list(matches)
            self.outcome.thumbnails = self._thumbnails(self.outcome.matches)
            self.outcome.seconds = time.perf_counter() - start
            return not self.isCanceled()
        except SearchCancelled:
            self.was_cancelled = True
            return False
        except Exception as exc:  # everything else is reported to the user, never raised into QGIS
            self.error = plain_message(exc)
            self.details = traceback.format_exc()
            return False

    def _thumbnails(self, matches) -> list:
        by_name = {}
        for source in self.request.sources:
            by_name.setdefault(source.name, source)
        thumbs = []
        for match in matches:
            if self.isCanceled():
                break
            source = by_name.get(match.source)
            try:
                window = match_window(match, source, self._context) if source is not None else None
                thumbs.append(source.read_rgb(window, (THUMB, THUMB))[0] if window else None)
            except Exception as exc:  # a missing thumbnail must not lose the search
                QgsMessageLog.logMessage(f"no thumbnail for match {match.rank}: {exc}", LOG_TAG, Qgis.Warning)
                thumbs.append(None)
        return thumbs

    # ---- main thread ----------------------------------------------------------------------------
    def finished(self, result: bool) -> None:
        if result and not self.isCanceled():
            try:
                from .result_layer import build_result_layer, layer_name

                crs = self.outcome.matches[0].crs_wkt if self.outcome.matches else self.request.options.output_crs
                self.outcome.layer = build_result_layer(self.outcome.matches, crs,
                                                        layer_name(self.request.sketch_label))
                QgsProject.instance().addMapLayer(self.outcome.layer)
            except Exception as exc:
                self.error = f"The matches were found but could not be shown: {exc}"
                self.details = traceback.format_exc()
        elif not self.error:
            self.was_cancelled = True
        if self.details:
            QgsMessageLog.logMessage(self.details, LOG_TAG, Qgis.Critical)
        if self.on_done is not None:
            self.on_done(self)


class PrepareTask(QgsTask):
    """Before a search, in the background too: loads the model (the first time: PyTorch and the
    weights, seconds) and estimates the tile count and time, so the dock can ask before a large one."""

    def __init__(self, request: SearchRequest, on_done: Callable[["PrepareTask"], None] | None = None):
        super().__init__("Sketch search: preparing", QgsTask.CanCancel)
        self.request = request
        self.on_done = on_done
        self.estimate = None  # engine.search.Estimate, or None when the engine gives none
        self.device = ""
        self.error: str | None = None
        self.details: str | None = None
        self.was_cancelled = False

    def run(self) -> bool:
        try:
            from engine.search import estimate

            embedder = get_embedder(self.request.checkpoint, self.request.device)
            self.device = embedder.device_description
            if self.isCanceled():
                return False
            try:
                self.estimate = estimate(embedder, list(self.request.sources), self.request.extent,
                                         self.request.options)
            except NotImplementedError:
                self.estimate = None  # the search's own max_tiles guard still applies
            return not self.isCanceled()
        except Exception as exc:
            self.error = plain_message(exc)
            self.details = traceback.format_exc()
            return False

    def finished(self, result: bool) -> None:
        if not result and not self.error:
            self.was_cancelled = True
        if self.details:
            QgsMessageLog.logMessage(self.details, LOG_TAG, Qgis.Critical)
        if self.on_done is not None:
            self.on_done(self)
