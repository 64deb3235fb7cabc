"""GeoTIFF fixtures for the raster, tiling, index and search tests: real files written with rasterio."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp

UTM = "EPSG:32611"  # UTM 11N (where UC Merced's imagery lies)


def write_tif(path: Path, data: np.ndarray, transform: Affine = Affine(0.3, 0, 500000, 0, -0.3, 4000000),
              crs: str = UTM, nodata=None, colorinterp=None, **profile) -> Path:
    """data: (bands, rows, cols)."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    with rasterio.open(path, "w", driver=profile.pop("driver", "GTiff"), width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform, nodata=nodata,
                       **profile) as dst:
        dst.write(data)
        if colorinterp:
            dst.colorinterp = colorinterp
    return path


def pattern(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A (3, rows, cols) uint8 image with structure at several scales (so tiles differ)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    base = np.stack([np.sin(x / 7.0) + np.cos(y / 11.0), np.sin((x + y) / 23.0), np.cos(x / 31.0) * np.sin(y / 5.0)])
    noise = rng.normal(0, 0.3, size=(3, rows, cols))
    img = (base + noise - (base + noise).min()) / np.ptp(base + noise)
    return (img * 255).astype(np.uint8)


@pytest.fixture
def rgb_tif(tmp_path) -> Path:
    """600 x 800 px, 8-bit RGB, 0.3 m pixels in UTM (180 m x 240 m)."""
    return write_tif(tmp_path / "rgb.tif", pattern(600, 800))


@pytest.fixture
def make_tif(tmp_path):
    """Factory: make_tif(name, data, **write_tif options) -> path."""
    def make(name: str, data: np.ndarray, **kw) -> Path:
        return write_tif(tmp_path / name, data, **kw)
    return make




class _Tools:
    write_tif = staticmethod(write_tif)
    pattern = staticmethod(pattern)
    UTM = UTM


@pytest.fixture(scope="session")
def geo():
    """Helpers for tests: geo.write_tif(path, data, ...), geo.pattern(rows, cols), geo.UTM."""
    return _Tools
