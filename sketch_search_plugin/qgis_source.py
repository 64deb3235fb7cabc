"""Raster layers as something the engine worker can open.

The worker reads rasters with its own GDAL (rasterio), in its own process. A layer GDAL can open by
itself (a local file, a /vsi path, a GDAL connection string) is handed over by name. Anything else
QGIS can show (WMS, XYZ, WCS, other providers) is rendered by QGIS, over the searched extent at the
search resolution, into a GeoTIFF that the worker then reads: `RenderedLayer`. Rendered files are
kept in a cache for a day, so searching the same web layer again is fast (and uses the tile index).
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Callable

from qgis.core import QgsApplication, QgsProviderRegistry, QgsRasterLayer, QgsRectangle

from .compat import RASTER_HAS_SIZE

# Layers without a native pixel size (WMS, XYZ) are read at this many pixels across the extent
# being searched unless a resolution is chosen: fine enough for objects tens of pixels wide.
DEFAULT_PIXELS_ACROSS = 4096
MAX_RENDER_PIXELS = 16384 * 16384  # about 1 GB of RGBA: refuse larger renders with a clear message
RENDER_ROWS = 256                  # rendered in strips: memory stays small however large the extent
CACHE_MAX_AGE_S = 24 * 3600        # web layers change; a day-old rendering is made again


def layer_file_path(layer: QgsRasterLayer) -> str | None:
    """The local file behind a GDAL layer, or None (remote, database, or not GDAL)."""
    if layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or ""
    return path if path and os.path.isfile(path) else None


def gdal_dataset_name(layer: QgsRasterLayer) -> str | None:
    """What the worker's GDAL opens itself for a GDAL layer: its file, or a /vsi path (/vsicurl/,
    /vsizip/, ...); None for anything else (other providers, database and service connection
    strings), which QGIS renders instead."""
    if layer.providerType() != "gdal":
        return None
    path = layer_file_path(layer)
    if path:
        return path
    source = layer.source()
    return source if source.startswith("/vsi") else None


def rendered_cache_dir() -> Path:
    return Path(QgsApplication.qgisSettingsDirPath()) / "sketch_search" / "rendered"


class RenderedLayer:
    """A layer QGIS draws, to be rendered into a GeoTIFF for the worker.

    Built on the main thread (the provider and renderer are cloned there: QGIS data providers must
    not be shared with the map canvas); `render()` runs in a background task."""

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
        native = bool(provider.capabilities() & RASTER_HAS_SIZE) and provider.xSize() > 0
        full = provider.extent()
        area = QgsRectangle(extent) if extent is not None and not extent.isEmpty() else QgsRectangle(full)
        if resolution is None and native:
            resolution = full.width() / provider.xSize()  # the provider's own pixel size
        if resolution is None:
            # Tiled services (XYZ, WMTS) list their zoom levels' resolutions: use the finest.
            native_res = [r for r in provider.nativeResolutions() if r > 0]
            resolution = min(native_res) if native_res else max(area.width(), area.height()) / DEFAULT_PIXELS_ACROSS
        if not resolution > 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.resolution = float(resolution)
        self.width = max(1, int(round(area.width() / resolution)))
        self.height = max(1, int(round(area.height() / resolution)))
        if self.width * self.height > MAX_RENDER_PIXELS:
            raise ValueError(f"{self.width} x {self.height} pixels at {resolution:g} map units per pixel is too large "
                             "to render: zoom in, or choose a coarser web layer resolution under Options")
        self.extent = QgsRectangle(area.xMinimum(), area.yMaximum() - self.height * resolution,
                                   area.xMinimum() + self.width * resolution, area.yMaximum())
        key = "|".join([layer.providerType(), layer.source(), self.crs_wkt, self.extent.toString(6),
                        f"{self.width}x{self.height}", self._renderer.type()])
        self.cache_name = hashlib.sha1(key.encode("utf-8")).hexdigest()[:20] + ".tif"

    def render(self, folder: Path | None = None, is_cancelled: Callable[[], bool] = lambda: False,
               progress: Callable[[int, int, str], None] | None = None) -> Path:
        """Writes (or reuses, if younger than a day) the GeoTIFF: RGB + alpha for what QGIS could not
        draw. Written under a temporary name and renamed, so a cancelled render leaves nothing."""
        from osgeo import gdal  # QGIS's own GDAL, in QGIS's process: no clash

        folder = Path(folder or rendered_cache_dir())
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.cache_name
        if path.is_file() and time.time() - path.stat().st_mtime < CACHE_MAX_AGE_S:
            return path
        tmp = path.with_suffix(f".{os.getpid()}.part.tif")
        options = ["TILED=YES", "COMPRESS=DEFLATE", "PHOTOMETRIC=RGB", "ALPHA=YES", "BIGTIFF=IF_SAFER"]
        ds = gdal.GetDriverByName("GTiff").Create(str(tmp), self.width, self.height, 4, gdal.GDT_Byte, options)
        if ds is None:
            raise OSError(f"cannot write {tmp}: {gdal.GetLastErrorMsg()}")
        try:
            ds.SetGeoTransform((self.extent.xMinimum(), self.resolution, 0.0, self.extent.yMaximum(), 0.0,
                                -self.resolution))
            ds.SetProjection(self.crs_wkt)
            for row in range(0, self.height, RENDER_ROWS):
                if is_cancelled():
                    raise InterruptedError("rendering cancelled")
                rows = min(RENDER_ROWS, self.height - row)
                self._write_strip(ds, row, rows)
                if progress is not None:
                    progress(row + rows, self.height, f"Rendering layer {self.name!r}")
            ds.FlushCache()
            ds = None
            os.replace(tmp, path)
        except BaseException:
            ds = None
            tmp.unlink(missing_ok=True)
            raise
        return path

    def _write_strip(self, ds, row: int, rows: int) -> None:
        y1 = self.extent.yMaximum() - row * self.resolution
        rect = QgsRectangle(self.extent.xMinimum(), y1 - rows * self.resolution, self.extent.xMaximum(), y1)
        block = self._renderer.block(1, rect, self.width, rows)
        if block is None or not block.isValid() or block.width() != self.width or block.height() != rows:
            raise OSError(f"QGIS could not draw {self.width} x {rows} pixels of layer {self.name!r}")
        # The renderer's output is ARGB32: one little-endian 32-bit word per pixel, bytes B, G, R, A.
        data = bytes(block.data())
        for band, offset in ((1, 2), (2, 1), (3, 0), (4, 3)):
            ds.GetRasterBand(band).WriteRaster(0, row, self.width, rows, data[offset::4])


def source_for_layer(layer: QgsRasterLayer, resolution: float | None = None,
                     extent: QgsRectangle | None = None):
    """What the worker gets for a layer: {"path", "name"} for what GDAL opens itself (unless a
    resolution is forced), else a RenderedLayer to render first (SearchTask does, in the background)."""
    name = gdal_dataset_name(layer)
    if name and resolution is None:
        # Named as in the layer tree: that is how the user knows the layer.
        return {"path": name, "name": layer.name(), "bands": None}
    return RenderedLayer(layer, resolution, extent)
