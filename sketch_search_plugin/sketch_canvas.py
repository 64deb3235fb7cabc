"""The sketch canvas: draw with the mouse (or programmatically), get black strokes on white.

Strokes are kept as vectors in a square logical space of LOGICAL x LOGICAL units, not as pixels, so
the canvas can be resized with the dock without losing detail, and the array handed to the engine
does not depend on the widget's size on screen.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from qgis.PyQt.QtCore import QBuffer, QIODevice, QPointF, QRectF, QSize, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QImage, QImageReader, QPainter, QPainterPath, QPen
from qgis.PyQt.QtWidgets import QSizePolicy, QWidget

LOGICAL = 512.0  # side of the logical drawing square
MAX_LOADED_SIDE = 2048  # loaded sketch images are scaled down to this on reading
DEFAULT_PEN = 6.0  # in logical units (about 1.2 % of the side: like a felt pen on paper)


@dataclass(frozen=True)
class Stroke:
    points: tuple[tuple[float, float], ...]  # logical coordinates, 0..LOGICAL
    width: float
    erase: bool = False


@dataclass(frozen=True)
class _State:
    """One undoable state: a loaded background image (or None) and the strokes on top."""
    background: QImage | None
    strokes: tuple[Stroke, ...]


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """Any QImage -> uint8 array (rows, cols, 3), copied (QImage rows are padded to 4 bytes)."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    ptr = image.constBits()
    ptr.setsize(stride * h)
    return np.frombuffer(ptr, np.uint8).reshape(h, stride)[:, :w * 3].reshape(h, w, 3).copy()


def read_image(path: str | Path, max_side: int = MAX_LOADED_SIDE) -> QImage:
    """An image file as a QImage, scaled down on reading when larger than max_side (a sketch scanned
    at 1200 dpi is 14000 px across; the model sees a few hundred)."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and max(size.width(), size.height()) > max_side:
        k = max_side / max(size.width(), size.height())
        reader.setScaledSize(QSize(max(1, round(size.width() * k)), max(1, round(size.height() * k))))
    image = reader.read()
    if image.isNull():
        raise OSError(f"cannot read the image {path}: {reader.errorString()}")
    return image


def sketch_on_white(path: str | Path) -> np.ndarray:
    """A sketch image in any common form -> dark strokes on white, uint8 (rows, cols, 3), as the
    engine reads sketches (engine/preprocess.py): with real transparency the alpha channel is the
    ink; a mostly dark picture is light strokes on dark and is inverted."""
    image = read_image(path).convertToFormat(QImage.Format.Format_RGBA8888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    ptr = image.constBits()
    ptr.setsize(stride * h)
    rgba = np.frombuffer(ptr, np.uint8).reshape(h, stride)[:, :w * 4].reshape(h, w, 4).copy()
    alpha = rgba[:, :, 3]
    if alpha.min() < 255:
        return np.repeat((255 - alpha)[:, :, None], 3, axis=2)
    rgb = rgba[:, :, :3]
    if np.median(rgb.astype(np.float32).mean(axis=2)) < 128:
        rgb = 255 - rgb
    return np.ascontiguousarray(rgb)


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    # .copy() detaches the QImage from the numpy buffer, which may be freed afterwards.
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class SketchCanvas(QWidget):
    """A square drawing area. Left button draws (or erases); the pen width is in logical units."""

    changed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 160)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.pen_width = DEFAULT_PEN
        self.eraser = False
        self._state = _State(None, ())
        self._undo: list[_State] = []
        self._redo: list[_State] = []
        self._current: list[tuple[float, float]] | None = None  # the stroke being drawn

    # ---- state and history -------------------------------------------------------------
    def _push(self, state: _State) -> None:
        self._undo.append(self._state)
        self._redo.clear()
        self._state = state
        self.update()
        self.changed.emit()

    @property
    def strokes(self) -> tuple[Stroke, ...]:
        return self._state.strokes

    def is_empty(self) -> bool:
        return self._state.background is None and not any(not s.erase for s in self._state.strokes)

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> None:
        if self._undo:
            self._redo.append(self._state)
            self._state = self._undo.pop()
            self.update()
            self.changed.emit()

    def redo(self) -> None:
        if self._redo:
            self._undo.append(self._state)
            self._state = self._redo.pop()
            self.update()
            self.changed.emit()

    def clear(self) -> None:
        """Clears the drawing; undoable like any other edit."""
        if self._state.background is not None or self._state.strokes:
            self._push(_State(None, ()))

    # ---- programmatic drawing (also what the mouse handlers call) ------------------------
    def add_stroke(self, points: Sequence[tuple[float, float]], width: float | None = None,
                   erase: bool | None = None, normalized: bool = True) -> None:
        """Adds one stroke. Points are (x, y) in 0..1 of the canvas (normalized) or logical units;
        y grows downwards as in the image."""
        scale = LOGICAL if normalized else 1.0
        pts = tuple((float(x) * scale, float(y) * scale) for x, y in points)
        if not pts:
            return
        stroke = Stroke(pts, float(width if width is not None else self.pen_width),
                        self.eraser if erase is None else bool(erase))
        self._push(_State(self._state.background, self._state.strokes + (stroke,)))

    # ---- image files ------------------------------------------------------------------------
    def load_image(self, path: str | Path) -> None:
        """Loads a sketch image (any form the engine accepts: dark on light, light on dark,
        strokes on transparency) as the new background, replacing the drawing (undoable)."""
        self._push(_State(rgb_to_qimage(sketch_on_white(path)), ()))

    def save_image(self, path: str | Path, size: int = int(LOGICAL)) -> None:
        image = self.render_image(size)
        if not image.save(str(path)):
            raise OSError(f"could not write the sketch to {path} (unknown image format or no permission)")

    # ---- rendering ----------------------------------------------------------------------------
    def _paint(self, painter: QPainter, side: float, strokes: Iterable[Stroke]) -> None:
        """Paints background and strokes into a side x side square at the painter's origin."""
        painter.fillRect(QRectF(0, 0, side, side), Qt.GlobalColor.white)
        bg = self._state.background
        if bg is not None:
            # Fit the loaded image into the square, keeping its aspect (like the engine's padding).
            k = side / max(bg.width(), bg.height())
            w, h = bg.width() * k, bg.height() * k
            painter.drawImage(QRectF((side - w) / 2, (side - h) / 2, w, h), bg)
        k = side / LOGICAL
        for stroke in strokes:
            colour = Qt.GlobalColor.white if stroke.erase else Qt.GlobalColor.black
            pen = QPen(QColor(colour), max(stroke.width * k, 1.0), Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                       Qt.PenJoinStyle.RoundJoin)
            painter.setPen(pen)
            if len(stroke.points) == 1:
                x, y = stroke.points[0]
                painter.drawPoint(QPointF(x * k, y * k))
                continue
            path = QPainterPath(QPointF(stroke.points[0][0] * k, stroke.points[0][1] * k))
            for x, y in stroke.points[1:]:
                path.lineTo(QPointF(x * k, y * k))
            painter.drawPath(path)

    def _all_strokes(self) -> tuple[Stroke, ...]:
        if self._current:
            return self._state.strokes + (Stroke(tuple(self._current), self.pen_width, self.eraser),)
        return self._state.strokes

    def render_image(self, size: int = int(LOGICAL)) -> QImage:
        image = QImage(size, size, QImage.Format.Format_RGB888)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        self._paint(painter, float(size), self._state.strokes)
        painter.end()
        return image

    def to_rgb_array(self, size: int = int(LOGICAL)) -> np.ndarray:
        """The sketch as the engine wants it: uint8 (size, size, 3), black strokes on white."""
        return qimage_to_rgb(self.render_image(size))

    def to_png_base64(self, size: int = int(LOGICAL)) -> str:
        """The sketch as the worker protocol carries it: a PNG, base64-encoded."""
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        if not self.render_image(size).save(buffer, "PNG"):
            raise OSError("could not encode the sketch as PNG")
        return base64.b64encode(bytes(buffer.data())).decode("ascii")

    # ---- widget ---------------------------------------------------------------------------------
    def _square(self) -> tuple[float, float, float]:
        side = float(min(self.width(), self.height()))
        return (self.width() - side) / 2, (self.height() - side) / 2, side

    def _to_logical(self, pos) -> tuple[float, float]:
        ox, oy, side = self._square()
        x = (pos.x() - ox) / side * LOGICAL
        y = (pos.y() - oy) / side * LOGICAL
        return min(max(x, 0.0), LOGICAL), min(max(y, 0.0), LOGICAL)

    def sizeHint(self) -> QSize:
        return QSize(300, 300)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return width

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window())
        ox, oy, side = self._square()
        painter.translate(ox, oy)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        self._paint(painter, side, self._all_strokes())
        painter.setPen(QPen(QColor(160, 160, 160), 1))
        painter.drawRect(QRectF(0, 0, side - 1, side - 1))
        painter.end()

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._current = [self._to_logical(event.pos())]
            self.update()

    def mouseMoveEvent(self, event) -> None:
        if self._current is not None:
            self._current.append(self._to_logical(event.pos()))
            self.update()

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._current is not None:
            self._current.append(self._to_logical(event.pos()))
            points, self._current = self._current, None
            self.add_stroke(points, normalized=False)
