"""Icons: our own SVG files, read by path (Qt6 has no compiled resource modules, so the same code
serves QGIS 3 and 4), and QGIS's theme icons for the generic actions so the dock looks native."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtGui import QIcon

ICON_DIR = Path(__file__).resolve().parent / "icons"
OWN = {"plugin": "icon.svg", "pen": "pen.svg", "eraser": "eraser.svg", "search": "search.svg"}
QGIS_THEME = {"undo": "mActionUndo.svg", "redo": "mActionRedo.svg", "clear": "mActionDeleteSelected.svg",
              "open": "mActionFileOpen.svg", "save": "mActionFileSave.svg", "export": "mActionFileSaveAs.svg"}


def icon(name: str) -> QIcon:
    if name in QGIS_THEME:
        return QgsApplication.getThemeIcon(QGIS_THEME[name])
    return QIcon(str(ICON_DIR / OWN[name]))
