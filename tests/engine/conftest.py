"""Shared fixtures of the engine tests: real GeoTIFFs written with rasterio (raster, tiling, index
and search tests), the bar sketch and the tiny-model embedder (index and search tests)."""
from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
import rasterio
from affine import Affine

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


def write_vrt(path: Path, source: Path, relative: bool = True) -> Path:
    """A plain VRT (GDAL's XML, written by hand) at `path` re-exposing every band of `source` (a
    GeoTIFF or another VRT), named relative to the VRT's folder (relativeToVRT="1") or absolute."""
    with rasterio.open(source) as ds:
        width, height, count, dtypes = ds.width, ds.height, ds.count, ds.dtypes
        gt = ", ".join(repr(v) for v in ds.transform.to_gdal())
        srs = escape(ds.crs.to_wkt(), {'"': "&quot;"})
    resolved = Path(source).resolve()
    name = os.path.relpath(resolved, Path(path).resolve().parent) if relative else str(resolved)
    gdal_types = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}
    bands = "".join(f"""
  <VRTRasterBand dataType="{gdal_types[dtypes[b - 1]]}" band="{b}">
    <SimpleSource>
      <SourceFilename relativeToVRT="{int(relative)}">{escape(name)}</SourceFilename>
      <SourceBand>{b}</SourceBand>
      <SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>
      <DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>
    </SimpleSource>
  </VRTRasterBand>""" for b in range(1, count + 1))
    Path(path).write_text(f"""<VRTDataset rasterXSize="{width}" rasterYSize="{height}">
  <SRS>{srs}</SRS>
  <GeoTransform>{gt}</GeoTransform>{bands}
</VRTDataset>
""")
    return Path(path)


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




@pytest.fixture(scope="session")
def bar_sketch() -> np.ndarray:
    """The sketch the index and search tests query with: a black vertical bar on white, 64 x 64.
    Read-only, so no test can change it for another."""
    sketch = np.full((64, 64, 3), 255, np.uint8)
    sketch[16:48, 28:36] = 0
    sketch.setflags(write=False)
    return sketch


@pytest.fixture(scope="module")
def emb(request, tiny_checkpoint):
    """The tiny seeded model on the CPU. Its batch size is the test module's EMB_BATCH_SIZE (how
    many tiles go between progress/cancel checks matters to some tests), else 16."""
    from engine.embedder import Embedder

    return Embedder.from_checkpoint(tiny_checkpoint, "cpu", batch_size=getattr(request.module, "EMB_BATCH_SIZE", 16))


class _Tools:
    write_tif = staticmethod(write_tif)
    write_vrt = staticmethod(write_vrt)
    pattern = staticmethod(pattern)
    UTM = UTM


@pytest.fixture(scope="session")
def geo():
    """Helpers for tests: geo.write_tif(path, data, ...), geo.write_vrt(path, source, relative=True),
    geo.pattern(rows, cols), geo.UTM."""
    return _Tools
