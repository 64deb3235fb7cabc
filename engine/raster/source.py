"""The raster-source interface: the seam between the engine and whatever reads pixels.

The engine reads rasters only through this interface. `RasterioSource` (engine/raster/rasterio_source.py)
implements it for files; the QGIS plugin implements it over a QGIS data provider for layers only
QGIS can read (WMS, XYZ, virtual).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from affine import Affine


@dataclass(frozen=True)
class Window:
    """A pixel window of the source raster: column/row offset and size, in full-resolution pixels."""
    col_off: float
    row_off: float
    width: float
    height: float


@runtime_checkable
class RasterSource(Protocol):
    name: str            # shown to users and stored with each match (layer name or file name)
    # changes whenever the pixels may have changed (path, size, mtime and a digest of some of the bytes;
    # a VRT's sources too; URL, ...)
    identity: str
    crs_wkt: str         # the raster's CRS as WKT
    transform: Affine    # pixel -> CRS coordinates (north-up or rotated)
    width: int           # full-resolution size in pixels
    height: int

    def read_rgb(self, window: Window, out_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Read `window` resampled to out_size=(rows, cols).

        Returns (rgb, valid): rgb uint8 (rows, cols, 3), contrast-stretched with statistics of the
        whole raster (not per tile, so tiles stay comparable); valid bool (rows, cols), False for
        nodata/masked/outside pixels. Reading at a coarser resolution may use overviews.
        """
        ...
