"""Names that moved between QGIS releases, resolved once: QGIS 3.22 (Debian 12) up to QGIS 4 (Qt6).

QGIS 3.30-3.38 moved many enums into `Qgis` (Qgis.LayerType.Raster, Qgis.ProcessingSourceType.Raster,
...); the old names are deprecated there and gone in QGIS 4. Each name below is the new one where
this QGIS has it, else the 3.22 one. Everything else the plugin uses is spelt in the scoped form
(Qt.CursorShape.CrossCursor) that both PyQt5 and PyQt6 accept; tests/qt6_forms.py checks that.
"""
from __future__ import annotations

from qgis.core import (Qgis, QgsMapLayerProxyModel, QgsProcessing, QgsProcessingParameterNumber,
                       QgsRasterInterface, QgsWkbTypes)

if hasattr(Qgis, "ProcessingSourceType"):  # QGIS >= 3.36
    PROCESSING_RASTER = Qgis.ProcessingSourceType.Raster
    PROCESSING_VECTOR_POLYGON = Qgis.ProcessingSourceType.VectorPolygon
    NUMBER_INTEGER = Qgis.ProcessingNumberParameterType.Integer
else:
    PROCESSING_RASTER = QgsProcessing.SourceType.TypeRaster
    PROCESSING_VECTOR_POLYGON = QgsProcessing.SourceType.TypeVectorPolygon
    NUMBER_INTEGER = QgsProcessingParameterNumber.Type.Integer

if hasattr(Qgis, "LayerType"):  # QGIS >= 3.30
    RASTER_LAYER = Qgis.LayerType.Raster
    POLYGON_GEOMETRY = Qgis.GeometryType.Polygon
    WKB_POLYGON = Qgis.WkbType.Polygon
else:
    from qgis.core import QgsMapLayerType

    RASTER_LAYER = QgsMapLayerType.RasterLayer
    POLYGON_GEOMETRY = QgsWkbTypes.GeometryType.PolygonGeometry
    WKB_POLYGON = QgsWkbTypes.Type.Polygon

if hasattr(Qgis, "LayerFilter"):  # QGIS >= 3.34
    RASTER_OR_POLYGON_LAYERS = Qgis.LayerFilter.RasterLayer | Qgis.LayerFilter.PolygonLayer
else:
    RASTER_OR_POLYGON_LAYERS = QgsMapLayerProxyModel.Filter.RasterLayer | QgsMapLayerProxyModel.Filter.PolygonLayer

if hasattr(Qgis, "RasterInterfaceCapability"):  # QGIS >= 3.38
    RASTER_HAS_SIZE = Qgis.RasterInterfaceCapability.Size
else:
    RASTER_HAS_SIZE = QgsRasterInterface.Capability.Size

if Qgis.QGIS_VERSION_INT >= 33800:  # QgsField takes a QMetaType.Type; PyQt6 has no QVariant types at all
    from qgis.PyQt.QtCore import QMetaType

    FIELD_INT, FIELD_DOUBLE, FIELD_STRING = QMetaType.Type.Int, QMetaType.Type.Double, QMetaType.Type.QString
else:
    from qgis.PyQt.QtCore import QVariant

    FIELD_INT, FIELD_DOUBLE, FIELD_STRING = QVariant.Int, QVariant.Double, QVariant.String
