"""What to search: raster layers and the extent, turned into the worker's terms (source and extent
dictionaries of the protocol in ARCHITECTURE.md)."""
from __future__ import annotations

from typing import Sequence

from qgis.core import QgsCoordinateTransform, QgsGeometry, QgsMapLayer, QgsProject, QgsRasterLayer, QgsVectorLayer

from .compat import POLYGON_GEOMETRY, RASTER_LAYER
from .errors import InputError
from .qgis_source import source_for_layer


def raster_layers(project: QgsProject | None = None) -> list[QgsRasterLayer]:
    project = project or QgsProject.instance()
    return [layer for layer in project.mapLayers().values()
            if layer.type() == RASTER_LAYER and layer.isValid()]


def visible_raster_layers(project: QgsProject | None = None) -> list[QgsRasterLayer]:
    """Raster layers ticked visible in the layer tree, in drawing order (top first)."""
    project = project or QgsProject.instance()
    root = project.layerTreeRoot()
    layers = []
    for node in root.findLayers():
        layer = node.layer()
        if node.isVisible() and layer is not None and layer.type() == RASTER_LAYER and layer.isValid():
            layers.append(layer)
    return layers


def canvas_extent(canvas) -> tuple[QgsGeometry, str]:
    """The map canvas's visible extent as a polygon and its CRS (WKT)."""
    crs = canvas.mapSettings().destinationCrs()
    return QgsGeometry.fromRect(canvas.extent()), crs.toWkt()


def layer_extent(layer: QgsMapLayer) -> tuple[QgsGeometry, str]:
    return QgsGeometry.fromRect(layer.extent()), layer.crs().toWkt()


def selection_extent(layer: QgsMapLayer | None) -> tuple[QgsGeometry, str]:
    """The union of the selected polygons of a vector layer."""
    if not isinstance(layer, QgsVectorLayer) or layer.geometryType() != POLYGON_GEOMETRY:
        raise InputError("Select one or more polygons in a polygon layer (and make it the active layer) first.")
    geometries = [f.geometry() for f in layer.selectedFeatures() if f.hasGeometry()]
    if not geometries:
        raise InputError(f"No polygon is selected in layer {layer.name()!r}.")
    return QgsGeometry.unaryUnion(geometries), layer.crs().toWkt()


def engine_extent(geometry: QgsGeometry, crs_wkt: str) -> dict:
    """The protocol's extent: polygon WKT and its CRS."""
    if geometry.isEmpty():
        raise InputError("The search extent is empty.")
    return {"wkt": geometry.asWkt(), "crs": crs_wkt}


def build_sources(layers: Sequence[QgsRasterLayer], extent: tuple[QgsGeometry, str] | None,
                  resolution: float | None = None, project: QgsProject | None = None) -> list:
    """The worker's sources for the layers: dictionaries for what GDAL opens, RenderedLayer for the
    rest (web layers get a pixel grid over the searched extent)."""
    from qgis.core import QgsCoordinateReferenceSystem

    project = project or QgsProject.instance()
    if not layers:
        raise InputError("No raster layer to search: add imagery to the map or choose layers.")
    sources = []
    for layer in layers:
        area = None
        if extent is not None:
            geom = QgsGeometry(extent[0])
            crs = QgsCoordinateReferenceSystem.fromWkt(extent[1])
            if crs.isValid() and crs != layer.crs():
                geom.transform(QgsCoordinateTransform(crs, layer.crs(), project.transformContext()))
            area = geom.boundingBox().intersect(layer.extent())
            if area.isEmpty():
                continue  # the layer lies outside the searched extent
        try:
            sources.append(source_for_layer(layer, resolution, area))
        except Exception as exc:
            raise InputError(f"Layer {layer.name()!r} cannot be read for the search: {exc}") from exc
    if not sources:
        raise InputError("None of the chosen raster layers overlaps the search extent.")
    return sources
