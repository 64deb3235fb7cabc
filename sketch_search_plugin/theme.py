"""Icons: our own (compiled Qt resources when built, else the SVG files), and QGIS's theme icons
for the generic actions so the dock looks native."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QFile
from qgis.PyQt.QtGui import QIcon

ICON_DIR = Path(__file__).resolve().parent / "icons"
RESOURCE_PREFIX = ":/plugins/sketch_search_plugin/"
OWN = {"plugin": "icon.svg", "pen": "pen.svg", "eraser": "eraser.svg", "search": "search.svg"}
QGIS_THEME = {"undo": "mActionUndo.svg", "redo": "mActionRedo.svg", "clear": "mActionDeleteSelected.svg",
              "open": "mActionFileOpen.svg", "save": "mActionFileSave.svg", "export": "mActionFileSaveAs.svg"}

try:  # present in the packaged plugin (built by `make package`), absent in a source checkout
    from . import resources_rc  # noqa: F401  (registers the resources with Qt)
except ImportError:
    resources_rc = None


def icon(name: str) -> QIcon:
    if name in QGIS_THEME:
        return QgsApplication.getThemeIcon(QGIS_THEME[name])
    file = OWN[name]
    if QFile.exists(RESOURCE_PREFIX + file):
        return QIcon(RESOURCE_PREFIX + file)
    return QIcon(str(ICON_DIR / file))
