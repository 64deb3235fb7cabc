"""Names that moved between QGIS releases, resolved once: QGIS 3.22 (Debian 12) up to QGIS 4 (Qt6).

QGIS 3.36 moved Processing's enums into `Qgis` (Qgis.ProcessingSourceType.Raster, ...); the old
names are deprecated there and gone in QGIS 4. Everything else the plugin uses is spelt in the
scoped form (Qt.CursorShape.CrossCursor) that both PyQt5 and PyQt6 accept.
"""
from __future__ import annotations

from qgis.core import Qgis, QgsProcessing, QgsProcessingParameterNumber

if hasattr(Qgis, "ProcessingSourceType"):  # QGIS >= 3.36
    PROCESSING_RASTER = Qgis.ProcessingSourceType.Raster
    PROCESSING_VECTOR_POLYGON = Qgis.ProcessingSourceType.VectorPolygon
    NUMBER_INTEGER = Qgis.ProcessingNumberParameterType.Integer
else:
    PROCESSING_RASTER = QgsProcessing.SourceType.TypeRaster
    PROCESSING_VECTOR_POLYGON = QgsProcessing.SourceType.TypeVectorPolygon
    NUMBER_INTEGER = QgsProcessingParameterNumber.Type.Integer
