"""Search and Cancel, the progress bar and the status line."""
from __future__ import annotations

from qgis.PyQt.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..theme import icon

FIRST_STATUS = "Draw the object you are looking for, then press Search."


class RunPanel(QWidget):
    def __init__(self, search, cancel):
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        self.search_button = QPushButton(icon("search"), "Search")
        self.search_button.clicked.connect(lambda: search())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(lambda: cancel())
        buttons.addWidget(self.search_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.show_progress(0, 1, "")
        layout.addWidget(self.progress)
        self.status = QLabel(FIRST_STATUS)
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

    def show_progress(self, value: int, maximum: int, text_format: str) -> None:
        """maximum 0: busy; (0, 1, ""): an empty bar with no text."""
        self.progress.setFormat(text_format)
        self.progress.setRange(0, maximum)
        self.progress.setValue(value)

    def set_running(self, running: bool) -> None:
        self.search_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
