"""RasterSource over any file (or VRT/COG/URL) that rasterio's GDAL reads.

Pixels become comparable RGB: 8-bit data is used as is (the model saw 8-bit imagery); 16-bit and
float data are stretched with per-band 2-98 % percentiles computed once from a decimated read of
the whole raster, never per tile. Validity comes from GDAL's masks (nodata, alpha, mask bands)
plus NaNs. Reads pass out_shape so GDAL picks overviews when a tile is read coarser than full size.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window as RioWindow

from .source import Window

# GDAL's block cache defaults to 5 % of RAM and grows with every block read, so memory would
# grow with the raster's size (measured: +22 % peak for 16384^2 vs 4096^2 px with a 256 MB cache,
# +2 % with 128 MB). Beyond the cache, blocks are read again rather than kept. Set before GDAL
# first reads; a value the user exported wins.
os.environ.setdefault("GDAL_CACHEMAX", "128")

STATS_SIZE = 1024          # long side of the decimated read used for the stretch statistics
PERCENTILES = (2.0, 98.0)
# Content digest of a file: whole files up to DIGEST_WHOLE bytes; larger ones by their first and
# last DIGEST_EDGE bytes (headers, tile offsets, trailing tiles) and DIGEST_SAMPLES pieces spread
# evenly between: about 0.2 MB read, so opening a raster stays instant on a network share.
DIGEST_WHOLE = 1 << 20
DIGEST_EDGE = 1 << 16
DIGEST_SAMPLES, DIGEST_PIECE = 32, 4096
# Files beside a raster that change what GDAL reads from it (overviews, masks, statistics).
SIDECARS = (".ovr", ".msk", ".aux.xml")


class RasterError(ValueError):
    """A raster that cannot be opened or used; one-line message for the user."""


def default_bands(ds) -> tuple[int, int, int]:
    """The colour-interpretation RGB bands if labelled, else the first three, else grey (1, 1, 1)."""
    ci = list(ds.colorinterp)
    if all(c in ci for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        return tuple(ci.index(c) + 1 for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue))
    colour = [i + 1 for i, c in enumerate(ci) if c != ColorInterp.alpha]
    if len(colour) >= 3:
        return tuple(colour[:3])
    return (colour[0],) * 3 if colour else (1, 1, 1)


def content_digest(path: str | os.PathLike, size: int) -> str:
    """A short digest of a file's bytes: all of a small file, or its head, tail and evenly spread
    pieces of a large one. Catches pixels rewritten in place with the size and mtime kept."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= DIGEST_WHOLE:
            h.update(fh.read())
        else:
            offsets = [0] + [DIGEST_EDGE + (size - 2 * DIGEST_EDGE) * i // DIGEST_SAMPLES
                             for i in range(DIGEST_SAMPLES)] + [size - DIGEST_EDGE]
            for off in offsets:
                fh.seek(off)
                h.update(fh.read(DIGEST_EDGE if off in (0, size - DIGEST_EDGE) else DIGEST_PIECE))
    return h.hexdigest()[:16]


def file_stamp(path: str | os.PathLike) -> str:
    """size:mtime_ns:digest of a file; changes when the file is rewritten (even with its size and
    mtime restored) or touched."""
    stat = os.stat(path)
    return f"{stat.st_size}:{stat.st_mtime_ns}:{content_digest(path, stat.st_size)}"


def sidecars_stamp(path: str) -> str:
    """Stamps of the overview, mask and statistics files beside a raster, where there are any."""
    parts = []
    for suffix in SIDECARS:
        side = path + suffix
        if os.path.isfile(side):
            parts.append(f"{suffix}={file_stamp(side)}")
    return ("|" + ",".join(parts)) if parts else ""


def vrt_source_paths(vrt_path: str | os.PathLike) -> list[str]:
    """The files a VRT reads, in document order: every SourceFilename (simple, complex, averaged,
    kernel-filtered and mask-band sources, overviews) and SourceDataset (warped VRTs). A name
    marked relativeToVRT="1" is resolved against the VRT's folder, as GDAL does; other relative
    names against the working directory. /vsi paths and URLs are returned unchanged."""
    import xml.etree.ElementTree as ET

    folder = Path(vrt_path).resolve().parent
    out = []
    for elem in ET.parse(vrt_path).getroot().iter():
        if elem.tag not in ("SourceFilename", "SourceDataset") or not (elem.text or "").strip():
            continue
        name = elem.text.strip()
        if "://" in name or name.startswith("/vsi"):
            out.append(name)
        elif elem.get("relativeToVRT", "0").strip().lower() in ("1", "true", "yes"):
            out.append(str((folder / name).resolve()))
        else:
            out.append(str(Path(name).resolve()))
    return out


def vrt_sources_stamp(vrt_path: str | os.PathLike, _seen: frozenset = frozenset()) -> str:
    """A short digest of the VRT's source files and their stamps (nested VRTs followed,
    cycles cut), so rewriting or touching any source changes a VRT's identity. A source that cannot
    be stat'ed (missing, URL, driver-prefixed name) enters by its name alone."""
    import hashlib
    import xml.etree.ElementTree as ET

    vrt_path = str(Path(vrt_path).resolve())
    seen = _seen | {vrt_path}
    try:
        paths = vrt_source_paths(vrt_path)
    except (OSError, ET.ParseError):
        return "unparsed"
    parts = []
    for path in paths:
        try:
            stamp = file_stamp(path)
        except OSError:
            stamp = "unstatted"
        if path.lower().endswith(".vrt") and path not in seen and stamp != "unstatted":
            stamp += "+" + vrt_sources_stamp(path, seen)
        parts.append(f"{path}={stamp}")
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return f"{len(parts)}:{digest}"


def _first_line(exc: BaseException) -> str:
    """The first line of an error, or of GDAL's own message where rasterio only points to it."""
    lines = str(exc).strip().splitlines()
    if exc.__cause__ is not None and (not lines or "previous exception" in lines[0]):
        return _first_line(exc.__cause__)
    if lines and isinstance(exc.args, tuple) and len(exc.args) == 3 and isinstance(exc.args[2], str):
        return exc.args[2].strip().splitlines()[0]  # GDAL's CPLE_* errors: (class, number, message)
    return lines[0] if lines else type(exc).__name__


class RasterioSource:
    """A raster file as a RasterSource. `bands`: 1-based band numbers for R, G, B (or one for grey)."""

    # GDAL resamples a read from its floating-point window, so a window covering several tiles,
    # read at the tiles' resolution, gives each tile the pixels of its own read: the tile reader
    # (engine/index/tile_reader.py) may cut tiles from one read.
    block_reads = True

    def __init__(self, path: str | os.PathLike, bands: tuple[int, ...] | None = None, name: str | None = None):
        self.path = str(path)
        is_url = "://" in self.path or self.path.startswith("/vsi")
        if not is_url and not Path(self.path).is_file():
            raise RasterError(f"raster not found: {self.path}")
        try:
            ds = rasterio.open(self.path)
        except RasterioError as exc:
            raise RasterError(f"cannot read raster {self.path}: {_first_line(exc)}") from None
        self._ds, self._lock = ds, threading.Lock()
        if ds.crs is None:
            ds.close()
            raise RasterError(f"raster has no coordinate reference system: {self.path}")
        if ds.transform == Affine.identity() and not ds.gcps[0]:
            ds.close()
            raise RasterError(f"raster is not georeferenced (identity transform): {self.path}")
        if bands is None:
            bands = default_bands(ds)
        bands = tuple(int(b) for b in bands)
        if len(bands) == 1:
            bands = bands * 3
        if len(bands) != 3 or any(not 1 <= b <= ds.count for b in bands):
            ds.close()
            raise RasterError(f"band mapping {bands} does not fit {self.path} ({ds.count} bands): "
                              f"give 1 or 3 band numbers from 1 to {ds.count}")
        self.bands = bands
        # GDAL says "all valid" (no nodata, alpha or mask band): its masks would be all 255, so
        # they are not read (a third of a read's time for 8-bit RGB).
        self._all_valid = all(MaskFlags.all_valid in ds.mask_flag_enums[b - 1] for b in set(bands))
        # A region decoded once serves every scale exactly only where GDAL would resample the
        # full-resolution pixels for each of them: no overviews, no masks to weigh averages, not a
        # VRT (whose sources resample on their own).
        self.region_reads = (self._all_valid and ds.driver != "VRT" and len({ds.dtypes[b - 1] for b in bands}) == 1
                             and not any(ds.overviews(b) for b in set(bands)))
        self._offset = (0, 0)  # where this handle's pixel (0, 0) lies in the raster (a region: its corner)
        self.name = name or Path(self.path).name
        self.crs_wkt = ds.crs.to_wkt()
        self.transform = ds.transform
        self.width, self.height = ds.width, ds.height
        self.dtypes = tuple(ds.dtypes[b - 1] for b in bands)
        resolved = self.path if is_url else str(Path(self.path).resolve())
        try:
            stamp = "url" if is_url else file_stamp(resolved) + sidecars_stamp(resolved)
            # A VRT's pixels live in its source files: their stamps are part of its identity.
            sources = ""
            if ds.driver == "VRT" and not is_url:
                self._check_vrt_sources(resolved)
                sources = f"|sources={vrt_sources_stamp(resolved)}"
        except OSError as exc:
            ds.close()
            raise RasterError(f"cannot read raster {self.path}: {exc.strerror or exc}") from None
        except RasterError:
            ds.close()
            raise
        self.identity = (f"{resolved}|{self.width}x{self.height}|{stamp}{sources}"
                         f"|bands={','.join(map(str, bands))}|stretch=p2-98")
        try:
            self._lut = self._stretch_params()
        except RasterioError as exc:
            ds.close()
            raise self._unreadable(exc) from None

    def _check_vrt_sources(self, vrt: str) -> None:
        """A VRT whose source file is gone would fail at its first read: say so now."""
        import xml.etree.ElementTree as ET

        try:
            sources = vrt_source_paths(vrt)
        except ET.ParseError:
            return  # GDAL opened it, so it is some dialect we do not parse
        for source in sources:
            driver_prefixed = ":" in source[2:]  # e.g. NETCDF:"a.nc":var; C:\\ is a drive
            if "://" not in source and not source.startswith("/vsi") and not driver_prefixed \
                    and not os.path.exists(source):
                raise RasterError(f"{self.path} refers to a file that does not exist: {source} "
                                  f"(restore it, or build the VRT again)")

    def _unreadable(self, exc: Exception) -> RasterError:
        return RasterError(f"cannot read the pixels of {self.path}: {_first_line(exc)} (the file may be "
                           f"truncated or damaged, or a file it refers to is missing: check it or create it again)")

    # -- statistics ---------------------------------------------------------------------------------
    def _stretch_params(self) -> list[tuple[float, float]] | None:
        """(low, high) per output band, from a decimated read of the whole raster; None for 8-bit."""
        if all(d == "uint8" for d in self.dtypes):
            return None
        scale = max(1.0, max(self.width, self.height) / STATS_SIZE)
        shape = (max(1, round(self.height / scale)), max(1, round(self.width / scale)))
        params = []
        for b in self.bands:
            data = self._ds.read(b, out_shape=shape, resampling=Resampling.nearest, masked=True).astype(np.float64)
            values = data.compressed()
            values = values[np.isfinite(values)]
            if values.size == 0:
                params.append((0.0, 1.0))
                continue
            lo, hi = np.percentile(values, PERCENTILES)
            if hi <= lo:  # a flat band: keep it mid-grey rather than divide by zero
                lo, hi = lo - 0.5, hi + 0.5
            params.append((float(lo), float(hi)))
        return params

    def _to_uint8(self, data: np.ndarray) -> np.ndarray:
        if self._lut is None:
            return data.astype(np.uint8, copy=False)
        out = np.empty(data.shape, np.uint8)
        for i, (lo, hi) in enumerate(self._lut):
            band = (data[i].astype(np.float32) - lo) * (255.0 / (hi - lo))
            out[i] = np.clip(np.nan_to_num(band, nan=0.0), 0, 255).astype(np.uint8)
        return out

    # -- reading ------------------------------------------------------------------------------------
    def read_rgb(self, window: Window, out_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = out_size
        rgb = np.zeros((rows, cols, 3), np.uint8)
        valid = np.zeros((rows, cols), bool)
        # Clip the window to the raster; the part outside stays black and invalid.
        c0, r0 = max(window.col_off, 0.0), max(window.row_off, 0.0)
        c1 = min(window.col_off + window.width, self.width)
        r1 = min(window.row_off + window.height, self.height)
        if c1 <= c0 or r1 <= r0:
            return rgb, valid
        sx, sy = cols / window.width, rows / window.height  # output pixels per source pixel
        oc0, or0 = round((c0 - window.col_off) * sx), round((r0 - window.row_off) * sy)
        oc1, or1 = round((c1 - window.col_off) * sx), round((r1 - window.row_off) * sy)
        if oc1 <= oc0 or or1 <= or0:
            return rgb, valid
        shape = (or1 - or0, oc1 - oc0)
        # Averaging when shrinking uses overviews and avoids aliasing; bilinear when enlarging.
        resampling = Resampling.average if sx < 0.75 else Resampling.bilinear
        # c0 - offset is exact (an integer taken from a larger float), so a region is read at the
        # same fractional positions as the file
        rio_window = RioWindow(c0 - self._offset[0], r0 - self._offset[1], c1 - c0, r1 - r0)
        unique = list(dict.fromkeys(self.bands))
        try:
            with self._lock:
                data = self._ds.read(unique, window=rio_window, out_shape=(len(unique),) + shape,
                                     resampling=resampling)
                masks = None if self._all_valid else self._ds.read_masks(
                    unique, window=rio_window, out_shape=(len(unique),) + shape, resampling=Resampling.nearest)
        except RasterioError as exc:
            raise self._unreadable(exc) from None
        ok = np.ones(shape, bool) if masks is None else (masks > 0).all(axis=0)
        if np.issubdtype(data.dtype, np.floating):
            ok &= np.isfinite(data).all(axis=0)
        order = [unique.index(b) for b in self.bands]
        if order != list(range(len(unique))):  # repeated or reordered bands (grey, BGR...)
            data = data[order]
        part = self._to_uint8(data)
        if masks is not None or np.issubdtype(data.dtype, np.floating):  # else every pixel is valid
            part[:, ~ok] = 0
        rgb[or0:or1, oc0:oc1] = part.transpose(1, 2, 0)
        valid[or0:or1, oc0:oc1] = ok
        return rgb, valid

    def region(self, window: Window, margin: int = 8) -> "Region":
        """The pixels of `window` (widened by `margin` for the resampling kernels, whole pixels,
        clipped to the raster) decoded once into memory: Region.open() gives sources over them
        whose reads of windows inside the region resample those pixels with GDAL as reads of the
        file do, so the tiles of several scales are cut from one decoding
        (engine/index/tile_reader.py). Only where `region_reads` is true."""
        if not self.region_reads:
            raise ValueError(f"{self.path}: a region would not resample as the file does")
        x0 = max(0, int(np.floor(window.col_off)) - margin)
        y0 = max(0, int(np.floor(window.row_off)) - margin)
        x1 = min(self.width, int(np.ceil(window.col_off + window.width)) + margin)
        y1 = min(self.height, int(np.ceil(window.row_off + window.height)) + margin)
        unique = list(dict.fromkeys(self.bands))
        try:
            with self._lock:
                data = self._ds.read(unique, window=RioWindow(x0 - self._offset[0], y0 - self._offset[1],
                                                              x1 - x0, y1 - y0))
        except RasterioError as exc:
            raise self._unreadable(exc) from None
        return Region(self, np.ascontiguousarray(data), x0, y0, tuple(unique.index(b) + 1 for b in self.bands))

    def close(self) -> None:
        self._ds.close()

    def clone(self) -> "RasterioSource":
        """The same source on a handle of its own (for another reading thread): the statistics and
        identity are shared, not computed again."""
        other = object.__new__(type(self))
        other.__setstate__(self.__getstate__())
        return other

    def __getstate__(self):  # reopen in another process instead of pickling a GDAL handle
        if self._offset != (0, 0) or "region_window" in self.__dict__:
            raise TypeError("a region of a raster lives in memory: copy its raster's source instead")
        state = self.__dict__.copy()
        state.pop("_ds"), state.pop("_lock")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._ds, self._lock = rasterio.open(self.path), threading.Lock()

    def __repr__(self) -> str:
        return f"RasterioSource({self.path!r}, bands={self.bands})"


# GDAL's names of the NumPy types a raster may have
_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32", "float64": "Float64"}


class Region:
    """Pixels of a part of a raster, decoded once (RasterioSource.region): (bands, rows, cols)."""

    def __init__(self, parent: RasterioSource, data: np.ndarray, x0: int, y0: int, bands: tuple[int, ...]):
        self.parent, self.data, self.x0, self.y0, self.bands = parent, data, x0, y0, bands
        self.window = Window(x0, y0, data.shape[2], data.shape[1])

    def open(self) -> RasterioSource:
        """A source with the raster's geometry that reads this region's pixels, on a GDAL handle of
        its own (a MEM dataset over the same memory, so threads read one region side by side).
        Reads must stay inside the region; close it before the region goes."""
        n, rows, cols = self.data.shape
        t = self.parent.transform @ Affine.translation(self.x0, self.y0)
        name = (f"MEM:::DATAPOINTER={self.data.__array_interface__['data'][0]},PIXELS={cols},LINES={rows},"
                f"BANDS={n},DATATYPE={_GDAL_TYPES[self.data.dtype.name]},PIXELOFFSET={self.data.itemsize},"
                f"LINEOFFSET={cols * self.data.itemsize},BANDOFFSET={rows * cols * self.data.itemsize},"
                f"GEOTRANSFORM={t.c!r}/{t.a!r}/{t.b!r}/{t.f!r}/{t.d!r}/{t.e!r}")
        other = object.__new__(RasterioSource)
        other.__dict__.update(self.parent.__dict__)
        with rasterio.Env(GDAL_MEM_ENABLE_OPEN="YES"):  # GDAL opens MEM:: names only when asked to
            other._ds = rasterio.open(name)
        other._lock, other._offset, other.bands = threading.Lock(), (self.x0, self.y0), self.bands
        other.region_window = self.window
        return other
