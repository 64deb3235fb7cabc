"""Raster sources for the engine from QGIS layers.

File-backed GDAL layers are read with the engine's rasterio source (fast, and the same code as the
command line). Anything else QGIS can show (WMS, XYZ, WCS, virtual rasters) is read through QGIS
itself by `QgisRasterSource`, which implements the engine's RasterSource interface.
"""
from __future__ import annotations

import os

import numpy as np
from affine import Affine
from qgis.core import QgsProviderRegistry, QgsRasterDataProvider, QgsRasterLayer, QgsRectangle

from engine.raster.source import Window

# Layers without a native pixel size (WMS, XYZ) are read at this many pixels across the extent
# being searched unless a resolution is chosen: fine enough for objects tens of pixels wide.
DEFAULT_PIXELS_ACROSS = 4096


def layer_file_path(layer: QgsRasterLayer) -> str | None:
    """The local file behind a GDAL layer, or None (remote, database, or not GDAL)."""
    if layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or ""
    return path if path and os.path.isfile(path) else None


class QgisRasterSource:
    """Reads a raster layer through QGIS: its data provider, drawn with the layer's own renderer
    (so the colours and contrast stretch are those the analyst sees, the same for every tile).

    The provider and renderer are cloned on construction, on the main thread: QGIS data providers
    must not be shared between the canvas and a background task.
    """

    def __init__(self, layer: QgsRasterLayer, resolution: float | None = None,
                 extent: QgsRectangle | None = None):
        provider = layer.dataProvider()
        if provider is None or not layer.isValid():
            raise ValueError(f"raster layer {layer.name()!r} cannot be read (invalid data source)")
        self.name = layer.name()
        self.crs_wkt = layer.crs().toWkt()
        self._provider = provider.clone()
        self._renderer = layer.renderer().clone()
        self._renderer.setInput(self._provider)

        native = bool(provider.capabilities() & QgsRasterDataProvider.Size) and provider.xSize() > 0
        full = provider.extent()
        if resolution is None and native:
            # Native grid: the provider's own pixels over its own extent.
            self._extent = QgsRectangle(full)
            self.width, self.height = provider.xSize(), provider.ySize()
        else:
            # Tiled/remote services have no pixel grid of their own: lay one over the searched
            # extent (or the layer's) at the chosen resolution.
            area = QgsRectangle(extent) if extent is not None and not extent.isEmpty() else QgsRectangle(full)
            if resolution is None:
                # Tiled services (XYZ, WMTS) list their zoom levels' resolutions: use the finest.
                native_res = [r for r in provider.nativeResolutions() if r > 0]
                resolution = min(native_res) if native_res else max(area.width(), area.height()) / DEFAULT_PIXELS_ACROSS
            if not resolution > 0:
                raise ValueError(f"resolution must be positive, got {resolution}")
            self.width = max(1, int(round(area.width() / resolution)))
            self.height = max(1, int(round(area.height() / resolution)))
            self._extent = QgsRectangle(area.xMinimum(), area.yMaximum() - self.height * resolution,
                                        area.xMinimum() + self.width * resolution, area.yMaximum())
        self._resx = self._extent.width() / self.width
        self._resy = self._extent.height() / self.height
        self.transform = Affine(self._resx, 0.0, self._extent.xMinimum(), 0.0, -self._resy, self._extent.yMaximum())
        self.identity = (f"qgis:{layer.providerType()}:{layer.source()}:{self.width}x{self.height}"
                         f":{self._extent.toString(6)}")

    def read_rgb(self, window: Window, out_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = int(out_size[0]), int(out_size[1])
        x0 = self._extent.xMinimum() + window.col_off * self._resx
        y1 = self._extent.yMaximum() - window.row_off * self._resy
        rect = QgsRectangle(x0, y1 - window.height * self._resy, x0 + window.width * self._resx, y1)
        block = self._renderer.block(1, rect, cols, rows)
        if block is None or not block.isValid() or block.width() != cols or block.height() != rows:
            raise OSError(f"QGIS could not read {rows}x{cols} pixels of layer {self.name!r}")
        # The renderer's output is ARGB32: one little-endian 32-bit word per pixel, bytes B, G, R, A.
        argb = np.frombuffer(bytes(block.data()), np.uint8).reshape(rows, cols, 4)
        rgb = np.ascontiguousarray(argb[:, :, 2::-1])
        valid = argb[:, :, 3] > 0
        return rgb, valid


def source_for_layer(layer: QgsRasterLayer, resolution: float | None = None,
                     extent: QgsRectangle | None = None):
    """The best engine source for a layer: rasterio for local files (unless a resolution is
    forced), otherwise QGIS's own provider."""
    path = layer_file_path(layer)
    if path and resolution is None:
        try:
            from engine.raster.rasterio_source import RasterioSource
        except ImportError:  # engine without the rasterio reader: QGIS can still read the file
            return QgisRasterSource(layer, resolution, extent)
        # Named as in the layer tree: that is how the user knows the layer.
        return RasterioSource(path, name=layer.name())
    return QgisRasterSource(layer, resolution, extent)
