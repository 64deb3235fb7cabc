"""Reading tiles for the model, fast: each region read once per scale, tiles cut from memory.

A grid's tiles overlap (by half by default), so reading one window per tile reads every source
pixel about four times and pays GDAL's and Python's per-call cost per tile. Here a batch of
neighbouring tiles is read as one window at the tiles' own resolution (GDAL resamples while
reading, with the same floating-point window arithmetic as a per-tile read), and each tile is a
slice of it. That gives each interior tile exactly the pixels of its own read when the tile stride
is a whole number of output pixels (size x (1 - overlap): 80 px for 160 px tiles at 50 %), which
tests/engine/test_tile_reader.py checks on real GeoTIFFs. Tiles that hang over the raster's edge,
strides that are not whole pixels, and sources that do not declare `block_reads` are read one
window per tile, as before.

Batches are read ahead by several threads (GDAL's reads and NumPy's copies release the GIL), each
with its own handle on the raster, so the model never waits on the disk.

Several scales of one raster (RegionReader): each square region is decoded once into memory and
every scale's tiles are resampled from it by the same GDAL reads, instead of each scale reading the
file again. On a raster that stays in the page cache this costs the same CPU time; on one larger
than memory (or on a network share) it reads the file about once instead of three times. Where GDAL
would resample other pixels than the full-resolution ones (overviews, masks, VRTs), scales read on
their own as before.
"""
from __future__ import annotations

import math
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np

from ..raster.source import Window

BLOCK_DENSITY = 0.5     # a read window must hold at least this share of wanted tiles, else it is split
READ_TILES = 128        # tiles per read (a block of 8 x 16 at 50 % overlap reads 1.2x the tiles' own area)
MAX_READERS = 16        # reader threads at most (beyond that the disk, not the CPU, limits)
MAX_BLOCK_PX = 1 << 26  # source pixels one read may span (64 Mpx: 0.2 GB of RGB), so fine imagery stays bounded
REGION_SIDE = 6144      # source pixels a side of a region decoded once for all scales (38 Mpx: 113 MB of RGB)


def reader_threads() -> int:
    """Default number of reader threads: the CPUs this process may use, within 1..MAX_READERS.
    Overridable with SKETCH_SEARCH_READERS."""
    wanted = os.environ.get("SKETCH_SEARCH_READERS", "").strip()
    if wanted.isdigit() and int(wanted) > 0:
        return int(wanted)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, MAX_READERS))


def output_stride(grid, size: int) -> tuple[int, int] | None:
    """The tile stride in output pixels (columns, rows) when it is a whole number, else None."""
    strides = []
    for stride, tile in ((grid.stride_c, grid.tile_c), (grid.stride_r, grid.tile_r)):
        px = stride * size / tile
        if abs(px - round(px)) > 1e-6 or round(px) < 1:
            return None
        strides.append(int(round(px)))
    return strides[0], strides[1]


def block_order(grid, tiles: np.ndarray, batch: int) -> np.ndarray:
    """The tiles reordered so that consecutive runs of `batch` tiles are compact blocks of the
    grid (about twice as wide as tall), which one window read covers with little waste."""
    tiles = np.asarray(tiles, np.int64)
    if len(tiles) <= 1 or batch <= 1:
        return tiles
    h = max(1, int(round(math.sqrt(batch / 2))))
    w = max(1, math.ceil(batch / h))
    rows, cols = np.divmod(tiles, grid.cols)
    order = np.lexsort((cols, rows, cols // w, rows // h))
    return tiles[order]


def read_tiles(source, grid, tiles: np.ndarray, size: int, min_valid: float):
    """Pixels of the tiles at size x size; returns (images (B, S, S, 3) uint8, kept tile ids,
    skipped ids), kept in the order given. A tile with less valid area than min_valid, or none at
    all, is skipped."""
    tiles = np.asarray(tiles, np.int64)
    images = np.zeros((len(tiles), size, size, 3), np.uint8)
    shares = np.zeros(len(tiles), np.float64)
    blockwise = _blockwise(source, grid, tiles, size)
    for at in _dense_groups(grid, tiles, blockwise):
        _read_block(source, grid, tiles, at, size, images, shares)
    for i in np.flatnonzero(~blockwise):
        rgb, valid = source.read_rgb(grid.window(tiles[i]), (size, size))
        images[i], shares[i] = rgb, valid.mean()
    keep = (shares >= min_valid) & (shares > 0)
    if keep.all():
        return images, tiles, tiles[:0]
    return images[keep], tiles[keep], tiles[~keep]


def _blockwise(source, grid, tiles: np.ndarray, size: int) -> np.ndarray:
    """Which tiles may be cut from a block read: whole-pixel strides, a source whose windows are
    resampled exactly (RasterioSource), and the tile wholly inside the raster (an edge tile's read
    is clipped and stretched by rounding, which a block read would not reproduce)."""
    if not getattr(source, "block_reads", False) or output_stride(grid, size) is None:
        return np.zeros(len(tiles), bool)
    rows, cols = np.divmod(tiles, grid.cols)
    return ((cols * grid.stride_c + grid.tile_c <= source.width)
            & (rows * grid.stride_r + grid.tile_r <= source.height))


def _dense_groups(grid, tiles: np.ndarray, blockwise: np.ndarray) -> Iterator[np.ndarray]:
    """Positions (into `tiles`) of groups whose bounding box of tiles is dense enough for one read;
    a sparse set (a polygon's tiles, a resumed run's leftovers) is split in halves until it is."""
    rows, cols = np.divmod(tiles, grid.cols)
    stack = [np.flatnonzero(blockwise)]
    while stack:
        at = stack.pop()
        if len(at) == 0:
            continue
        r, c = rows[at], cols[at]
        height, width = r.max() - r.min() + 1, c.max() - c.min() + 1
        source_px = ((height - 1) * grid.stride_r + grid.tile_r) * ((width - 1) * grid.stride_c + grid.tile_c)
        if len(at) == 1 or (len(at) >= BLOCK_DENSITY * height * width and source_px <= MAX_BLOCK_PX):
            yield at
            continue
        if height >= width:
            cut = r < r.min() + height // 2
        else:
            cut = c < c.min() + width // 2
        stack += [at[cut], at[~cut]]


def _read_block(source, grid, tiles: np.ndarray, at: np.ndarray, size: int, images: np.ndarray,
                shares: np.ndarray) -> None:
    """One window read covering the tiles at positions `at`, at the tiles' resolution; each tile
    is cut from it, its valid share from an integral image of the validity mask."""
    step_c, step_r = output_stride(grid, size)
    rows, cols = np.divmod(tiles[at], grid.cols)
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    # The window spans from the first tile's origin to the last tile's far edge, computed as the
    # per-tile windows are, so GDAL resamples each tile's part from the same source positions.
    col_off, row_off = c0 * grid.stride_c, r0 * grid.stride_r
    window = Window(col_off, row_off, c1 * grid.stride_c + grid.tile_c - col_off,
                    r1 * grid.stride_r + grid.tile_r - row_off)
    out_rows, out_cols = (r1 - r0) * step_r + size, (c1 - c0) * step_c + size
    rgb, valid = source.read_rgb(window, (int(out_rows), int(out_cols)))
    ys, xs = (rows - r0) * step_r, (cols - c0) * step_c
    if valid.all():
        shares[at] = 1.0
    else:  # an integral image: the valid count of any rectangle in four lookups
        counts = np.zeros((out_rows + 1, out_cols + 1), np.int64)
        np.cumsum(np.cumsum(valid, axis=0, dtype=np.int64), axis=1, out=counts[1:, 1:])
        inside = counts[ys + size, xs + size] - counts[ys, xs + size] - counts[ys + size, xs] + counts[ys, xs]
        shares[at] = inside / float(size * size)
    for i, y, x in zip(at, ys, xs):
        images[i] = rgb[y:y + size, x:x + size]


class _ThreadSources:
    """One handle on `source` per reading thread (`source.clone()`), or the source itself when one
    thread reads; `close()` closes the clones."""

    def __init__(self, source, threads: int):
        self.source, self.threads = source, threads
        self._local = threading.local()
        self._clones: list = []
        self._lock = threading.Lock()

    def get(self):
        if self.threads == 1:
            return self.source
        src = getattr(self._local, "source", None)
        if src is None:
            src = self._local.source = self.source.clone()
            with self._lock:
                self._clones.append(src)
        return src

    def close(self) -> None:
        for clone in self._clones:
            close = getattr(clone, "close", None)
            if close:
                close()
        self._clones.clear()


def _read_ahead(units: list, work: Callable, threads: int, name: str) -> Iterator:
    """work(unit) for each unit on `threads` threads, its results yielded in unit order; at most
    threads + 1 units in flight (every thread busy, one finished and waiting)."""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name) as pool:
        pending: deque = deque()
        try:
            for ui in range(len(units)):
                while len(pending) < threads + 1 and ui + len(pending) < len(units):
                    pending.append(pool.submit(work, units[ui + len(pending)]))
                yield from pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class BatchReader:
    """The model's batches of `tiles`, read ahead in order by `threads` threads, each with its own
    handle on the source (`source.clone()` where the source has one; otherwise the source is shared
    and reads take turns).

    The tiles are put in block order and read in units of several batches (about READ_TILES tiles,
    a compact block of the grid, so overlapping tiles share one read), then split into batches of
    `batch`. `read` is called as read(source, grid, tiles, size, min_valid) and must return kept
    tiles in the order given; `prepare`, if given, turns each unit's images into the model's input
    in the reading thread. Iterating yields (tiles of the batch, images or prepared input, kept
    ids, skipped ids); `batches` lists the batches in that order."""

    def __init__(self, source, grid, tiles: np.ndarray, batch: int, size: int, min_valid: float,
                 read: Callable, threads: int | None = None, prepare: Callable | None = None):
        self.source, self.grid = source, grid
        self.size, self.min_valid, self.read, self.prepare = size, min_valid, read, prepare
        n_batches = math.ceil(len(tiles) / batch) if len(tiles) else 0
        # a unit of about READ_TILES tiles, but at least four units per layer, so small layers still
        # read in parallel and report progress as they go
        self.per_read = max(1, min(READ_TILES // batch, math.ceil(n_batches / 4)))
        tiles = block_order(grid, tiles, batch * self.per_read)
        self.batches = [tiles[i:i + batch] for i in range(0, len(tiles), batch)]
        self.units = [self.batches[i:i + self.per_read] for i in range(0, len(self.batches), self.per_read)]
        self.threads = max(1, min(threads or reader_threads(), len(self.units) or 1))
        if not hasattr(source, "clone"):
            self.threads = 1
        self._sources = _ThreadSources(source, self.threads)

    def _work(self, unit: list[np.ndarray]) -> list[tuple]:
        tiles = np.concatenate(unit)
        images, kept, skipped = self.read(self._sources.get(), self.grid, tiles, self.size, self.min_valid)
        if self.prepare is not None and len(kept):
            images = self.prepare(images)
        # split back into batches: kept and skipped come in the order given
        is_kept = np.isin(tiles, kept)
        out, at, first = [], 0, 0
        for batch in unit:
            mine = is_kept[at:at + len(batch)]
            n = int(mine.sum())
            out.append((batch, images[first:first + n], batch[mine], batch[~mine]))
            at, first = at + len(batch), first + n
        return out

    def __iter__(self):
        try:
            yield from _read_ahead(self.units, self._work, self.threads, "tile-reader")
        finally:
            self._sources.close()


# -- several scales of one raster, each region decoded once ----------------------------------------------
def region_side(source, grids, max_side: int | None = None) -> int | None:
    """The side (source pixels) of the squares whose tiles share one decoded region, or None where
    per-scale reads are as cheap: one scale, a source whose regions would not resample as the file
    does (overviews, masks, VRTs: see RasterioSource.region_reads), or tiles so large that a region
    would decode more than the per-scale reads together. `max_side`: smaller regions (fewer tiles
    each), where they still pay."""
    if len(grids) < 2 or not getattr(source, "region_reads", False):
        return None
    biggest = max(max(g.tile_c, g.tile_r) for g in grids)
    side = int(min(REGION_SIDE - biggest, max_side or REGION_SIDE))
    # per-scale block reads decode about 1.2x the raster per scale; regions (side + biggest)^2 / side^2
    # once: worth it only where that is clearly less
    if side < biggest or ((side + biggest) / side) ** 2 > 0.8 * 1.2 * len(grids):
        return None
    return side


def region_plan(source, parts: list[tuple], side: int) -> list[tuple[Window, list[tuple[int, np.ndarray]]]]:
    """The regions to decode, in order: each tile of every part (grid, tiles) goes to the square of
    `side` px holding its window's origin; a region's window spans its tiles' windows (clipped to
    the raster). Returns [(window, [(part index, tile ids), ...]), ...]."""
    buckets: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
    for pi, (grid, tiles) in enumerate(parts):
        tiles = np.asarray(tiles, np.int64)
        rows, cols = np.divmod(tiles, grid.cols)
        ry = np.floor(rows * grid.stride_r / side).astype(np.int64)
        rx = np.floor(cols * grid.stride_c / side).astype(np.int64)
        key = ry * (1 << 31) + rx
        order = np.argsort(key, kind="stable")
        keys, starts = np.unique(key[order], return_index=True)
        for k, group in zip(keys, np.split(order, starts[1:])):
            buckets.setdefault((int(k >> 31), int(k & ((1 << 31) - 1))), []).append((pi, tiles[group]))
    plan = []
    for at in sorted(buckets):
        c0 = r0 = math.inf
        c1 = r1 = -math.inf
        for pi, tiles in buckets[at]:
            grid = parts[pi][0]
            rows, cols = np.divmod(tiles, grid.cols)
            c0, r0 = min(c0, cols.min() * grid.stride_c), min(r0, rows.min() * grid.stride_r)
            c1 = max(c1, cols.max() * grid.stride_c + grid.tile_c)
            r1 = max(r1, rows.max() * grid.stride_r + grid.tile_r)
        c0, r0 = max(0.0, c0), max(0.0, r0)
        c1, r1 = min(float(source.width), c1), min(float(source.height), r1)
        plan.append((Window(c0, r0, max(c1 - c0, 1.0), max(r1 - r0, 1.0)), buckets[at]))
    return plan


def regions_worthwhile(plan: list, parts: list[tuple]) -> bool:
    """Whether decoding the plan's regions reads clearly less than each scale's block reads would."""
    # Each tile of a scale owns about one stride^2 of its block reads (x1.2 for the blocks' overlap):
    # a sparse set (a resumed build's leftovers) is cheaper read scale by scale than region by region.
    region_px = sum(w.width * w.height for w, _ in plan)
    scale_px = 1.2 * sum(len(tiles) * grid.stride_c * grid.stride_r for grid, tiles in parts)
    return region_px < 0.8 * scale_px


class _Loaded:
    """One region of a RegionReader: decoded by the first unit that needs it, freed after its last."""

    def __init__(self, window: Window, units: int):
        self.window, self.units, self.lock, self.pixels = window, units, threading.Lock(), None


class RegionReader:
    """The batches of several scales (`parts`: (grid, tiles) each) of one source, each region of
    the raster decoded once (RasterioSource.region) and every scale's tiles cut from it by `read`
    (read_tiles), which gives the pixels of per-scale reads. Units of about READ_TILES tiles are
    read ahead in order by `threads` threads, each on a handle of its own on the region, so they
    share a region's pixels; a region is freed after its last unit, so about two regions are in
    memory at a time whatever the raster's size. Iterating yields (part index, tiles of the batch,
    images or prepared input, kept ids, skipped ids); a part's batches come region by region."""

    def __init__(self, source, parts: list[tuple], batch: int, size: int, min_valid: float, read: Callable,
                 side: int, threads: int | None = None, prepare: Callable | None = None):
        self.source, self.parts, self.batch, self.size = source, parts, batch, size
        self.min_valid, self.read, self.prepare = min_valid, read, prepare
        self.plan = region_plan(source, parts, side)
        self.worthwhile = regions_worthwhile(self.plan, parts)
        per_read = max(1, READ_TILES // batch)
        self.units, self.regions = [], []
        for window, groups in self.plan:
            first = len(self.units)
            for pi, tiles in groups:
                tiles = block_order(parts[pi][0], tiles, batch * per_read)
                self.units += [(len(self.regions), pi, tiles[u:u + batch * per_read])
                               for u in range(0, len(tiles), batch * per_read)]
            self.regions.append(_Loaded(window, len(self.units) - first))
        self.threads = max(1, min(threads or reader_threads(), len(self.units) or 1))
        if not hasattr(source, "clone"):
            self.threads = 1
        self._sources = _ThreadSources(source, self.threads)

    def _work(self, unit) -> list[tuple]:
        ri, pi, tiles = unit
        region = self.regions[ri]
        with region.lock:  # the first unit decodes it; the others of the region wait for that
            if region.pixels is None:
                region.pixels = self._sources.get().region(region.window)
            view = region.pixels.open()
        try:
            images, kept, skipped = self.read(view, self.parts[pi][0], tiles, self.size, self.min_valid)
        finally:
            view.close()
            with region.lock:
                region.units -= 1
                if region.units == 0:
                    region.pixels = None
        if self.prepare is not None and len(kept):
            images = self.prepare(images)
        is_kept = np.isin(tiles, kept)
        out, first = [], 0
        for at in range(0, len(tiles), self.batch):
            batch = tiles[at:at + self.batch]
            mine = is_kept[at:at + len(batch)]
            n = int(mine.sum())
            out.append((pi, batch, images[first:first + n], batch[mine], batch[~mine]))
            first += n
        return out

    def __iter__(self):
        try:
            yield from _read_ahead(self.units, self._work, self.threads, "region-reader")
        finally:
            self._sources.close()
            for region in self.regions:
                region.pixels = None
