"""The sketch: drawing tools (pen, eraser, width, undo, redo, clear, load, save) over the canvas."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from qgis.core import Qgis
from qgis.PyQt.QtWidgets import QButtonGroup, QFileDialog, QHBoxLayout, QSpinBox, QToolButton, QVBoxLayout, QWidget

from ..sketch_canvas import SketchCanvas
from ..theme import icon


def tool_button(name: str, tip: str, slot, checkable: bool = False) -> QToolButton:
    button = QToolButton()
    button.setIcon(icon(name))
    button.setToolTip(tip)
    button.setAutoRaise(True)
    button.setCheckable(checkable)
    button.clicked.connect(slot)
    return button


class SketchPanel(QWidget):
    def __init__(self, message: Callable[[str, object], None]):
        super().__init__()
        self.message = message   # (text, Qgis.MessageLevel) to the message bar
        self.label = "sketch"    # names the result layer: the loaded file's name
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        tools = QHBoxLayout()
        self.pen_button = tool_button("pen", "Pen: draw strokes", lambda: self._set_eraser(False), True)
        self.eraser_button = tool_button("eraser", "Eraser: rub strokes out", lambda: self._set_eraser(True), True)
        group = QButtonGroup(self)
        group.setExclusive(True)
        group.addButton(self.pen_button)
        group.addButton(self.eraser_button)
        self.pen_button.setChecked(True)
        self.width_spin = QSpinBox()
        self.width_spin.setRange(1, 40)
        self.width_spin.setToolTip("Pen width, in 1/512 of the canvas side (the same whatever the dock size)")
        self.width_spin.setSuffix(" pt")
        self.undo_button = tool_button("undo", "Undo", lambda: self.canvas.undo())
        self.redo_button = tool_button("redo", "Redo", lambda: self.canvas.redo())
        self.clear_button = tool_button("clear", "Clear the sketch", lambda: self.canvas.clear())
        self.load_button = tool_button("open", "Load a sketch from an image file", self._load)
        self.save_button = tool_button("save", "Save the sketch as an image", self._save)
        for w in (self.pen_button, self.eraser_button, self.width_spin, self.undo_button, self.redo_button,
                  self.clear_button, self.load_button, self.save_button):
            tools.addWidget(w)
        tools.addStretch(1)
        layout.addLayout(tools)

        self.canvas = SketchCanvas()
        self.width_spin.setValue(int(self.canvas.pen_width))
        self.width_spin.valueChanged.connect(lambda v: setattr(self.canvas, "pen_width", float(v)))
        self.canvas.changed.connect(self.update_buttons)
        layout.addWidget(self.canvas, 1)
        self.update_buttons()

    def _set_eraser(self, on: bool) -> None:
        self.canvas.eraser = on

    def update_buttons(self, *_) -> None:
        self.undo_button.setEnabled(self.canvas.can_undo())
        self.redo_button.setEnabled(self.canvas.can_redo())

    def png_base64(self) -> str | None:
        """The sketch for the worker, or None when nothing is drawn."""
        return None if self.canvas.is_empty() else self.canvas.to_png_base64()

    def _load(self) -> None:
        images = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)"
        name, _ = QFileDialog.getOpenFileName(self, "Load a sketch", "", images)
        if name:
            try:
                self.canvas.load_image(name)
                self.label = Path(name).stem
            except Exception as exc:
                self.message(f"Cannot load the sketch: {exc}", Qgis.MessageLevel.Warning)

    def _save(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Save the sketch", f"{self.label}.png", "PNG image (*.png)")
        if name:
            try:
                self.canvas.save_image(name if name.lower().endswith(".png") else name + ".png")
            except Exception as exc:
                self.message(str(exc), Qgis.MessageLevel.Warning)
