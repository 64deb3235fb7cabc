"""Processing provider "Sketch Search"."""
from __future__ import annotations

from qgis.core import QgsProcessingProvider

from ..theme import icon
from .algorithm import SketchSearchAlgorithm


class SketchSearchProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "sketchsearch"

    def name(self) -> str:
        return "Sketch Search"

    def icon(self):
        return icon("plugin")

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS API)
        self.addAlgorithm(SketchSearchAlgorithm())
