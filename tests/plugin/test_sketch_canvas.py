"""The sketch canvas: strokes in, black-on-white RGB out; eraser, undo/redo, files, resizing, mouse."""
from __future__ import annotations

import numpy as np
import pytest
from qgis.PyQt.QtCore import QEvent, QPoint, QPointF, Qt
from qgis.PyQt.QtGui import QMouseEvent
from qgis.PyQt.QtWidgets import QApplication
from qgis.PyQt.QtTest import QTest

from sketch_search_plugin.sketch_canvas import SketchCanvas

pytestmark = pytest.mark.qgis


def ink(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(int).sum(axis=2) <= 300  # the engine's ink threshold


def test_strokes_become_black_on_white_at_the_right_place(qgis_app):
    canvas = SketchCanvas()
    assert canvas.is_empty()
    blank = canvas.to_rgb_array(128)
    assert blank.shape == (128, 128, 3) and blank.dtype == np.uint8 and (blank == 255).all()
    canvas.add_stroke([(0.25, 0.5), (0.75, 0.5)], width=8)  # a horizontal bar across the middle
    rgb = canvas.to_rgb_array(128)
    mask = ink(rgb)
    rows, cols = np.nonzero(mask)
    assert 60 <= rows.min() and rows.max() <= 67  # 8 logical units = 2 px at 128 px, centred on row 64
    assert 28 <= cols.min() <= 32 and 95 <= cols.max() <= 99
    assert (rgb[mask] < 80).all()  # real ink, not grey
    assert not canvas.is_empty()


def test_eraser_undo_redo_and_clear(qgis_app):
    canvas = SketchCanvas()
    canvas.add_stroke([(0.1, 0.5), (0.9, 0.5)], width=20)
    drawn = ink(canvas.to_rgb_array(64)).sum()
    canvas.add_stroke([(0.5, 0.3), (0.5, 0.7)], width=40, erase=True)
    erased = ink(canvas.to_rgb_array(64)).sum()
    assert 0 < erased < drawn
    canvas.undo()
    assert ink(canvas.to_rgb_array(64)).sum() == drawn
    canvas.redo()
    assert ink(canvas.to_rgb_array(64)).sum() == erased
    canvas.clear()
    assert canvas.is_empty() and ink(canvas.to_rgb_array(64)).sum() == 0
    canvas.undo()  # clearing is undoable too
    assert ink(canvas.to_rgb_array(64)).sum() == erased
    canvas.add_stroke([(0.2, 0.2)], width=10)  # a new edit drops the redo history
    assert not canvas.can_redo()


def test_output_does_not_depend_on_widget_size(qgis_app):
    canvas = SketchCanvas()
    canvas.resize(200, 300)
    canvas.add_stroke([(0.2, 0.2), (0.8, 0.8)], width=6)
    small = canvas.to_rgb_array()
    canvas.resize(700, 500)
    assert np.array_equal(small, canvas.to_rgb_array())


def test_save_and_load_round_trip(qgis_app, tmp_path):
    canvas = SketchCanvas()
    canvas.add_stroke([(0.2, 0.3), (0.8, 0.3), (0.5, 0.9), (0.2, 0.3)], width=10)
    path = tmp_path / "triangle.png"
    canvas.save_image(path)
    other = SketchCanvas()
    other.load_image(path)
    a, b = ink(canvas.to_rgb_array(256)), ink(other.to_rgb_array(256))
    assert (a == b).mean() > 0.995
    other.undo()
    assert other.is_empty()


def test_loading_light_strokes_on_dark_gives_dark_on_light(qgis_app, tmp_path):
    from PIL import Image

    arr = np.zeros((100, 100, 3), np.uint8)
    arr[45:55, 10:90] = 255  # white bar on black
    Image.fromarray(arr).save(tmp_path / "inv.png")
    canvas = SketchCanvas()
    canvas.load_image(tmp_path / "inv.png")
    rgb = canvas.to_rgb_array(100)
    assert ink(rgb)[50, 50] and not ink(rgb)[10, 10]


def test_mouse_drawing(qgis_app):
    canvas = SketchCanvas()
    canvas.resize(200, 200)
    canvas.show()
    QTest.mousePress(canvas, Qt.LeftButton, Qt.NoModifier, QPoint(20, 100))
    for x in range(30, 190, 10):  # QTest.mouseMove does not carry the pressed button: send real events
        QApplication.sendEvent(canvas, QMouseEvent(QEvent.MouseMove, QPointF(x, 100 + (x % 20) / 10),
                                                   Qt.NoButton, Qt.LeftButton, Qt.NoModifier))
    QTest.mouseRelease(canvas, Qt.LeftButton, Qt.NoModifier, QPoint(180, 100))
    assert len(canvas.strokes) == 1 and len(canvas.strokes[0].points) == 18  # press, 16 moves, release
    mask = ink(canvas.to_rgb_array(200))
    assert mask[100, 40:160].all() and not mask[20, :].any()
    canvas.close()
