"""Tile pipeline speed: read + resample + preprocess (no model), and end to end on a device.

Run through `python -m benchmarks.search_speed --pipeline-only --raster R [--json]` (or with
`--device cuda` for a whole cold search). The pipelines run over every tile of the default tiling
(60/120/240 m, 50 % overlap) in the model's batches, in alternating rounds of the same process, and
the medians are reported:

- "ours": engine/index/tile_reader.py as the index build uses it: each region of the raster decoded
  once for all scales where the source allows it (RegionReader), tiles in compact blocks, one
  resampled read per block at the tiles' resolution, tiles cut from memory, normalised as one batch,
  several reader threads ahead (`workers`);
- "per scale": the same tile reader with each scale reading the file on its own (before regions);
- "baseline": the pipeline before it: one window read per tile (`RasterSource.read_rgb`), one
  read-ahead thread, `prepare_image` per tile.
"""
from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

DEFAULT_SCALES = (60.0, 120.0, 240.0)


def model_input(checkpoint: str | None) -> tuple[int, tuple, tuple, int]:
    """(input size, mean, std, CPU batch size) of a model card, without importing torch."""
    from engine.model.checkpoints import card_path_for
    from engine.runtime import default_model_path

    card = json.loads(card_path_for(Path(checkpoint) if checkpoint else default_model_path()).read_text())
    cfg = card["config"]
    return int(cfg["img_size"]), tuple(cfg["mean"]), tuple(cfg["std"]), 32


def legacy_read_rgb(source, window, out_size):
    """RasterioSource.read_rgb as it was before the tile reader (masks always read, bands always
    gathered, invalid pixels always blanked): the baseline's reads."""
    from rasterio.enums import Resampling
    from rasterio.windows import Window as RioWindow

    assert getattr(source, "_offset", (0, 0)) == (0, 0), "the baseline reads the file, not a decoded region"
    rows, cols = out_size
    rgb = np.zeros((rows, cols, 3), np.uint8)
    valid = np.zeros((rows, cols), bool)
    c0, r0 = max(window.col_off, 0.0), max(window.row_off, 0.0)
    c1 = min(window.col_off + window.width, source.width)
    r1 = min(window.row_off + window.height, source.height)
    if c1 <= c0 or r1 <= r0:
        return rgb, valid
    sx, sy = cols / window.width, rows / window.height
    oc0, or0 = round((c0 - window.col_off) * sx), round((r0 - window.row_off) * sy)
    oc1, or1 = round((c1 - window.col_off) * sx), round((r1 - window.row_off) * sy)
    if oc1 <= oc0 or or1 <= or0:
        return rgb, valid
    shape = (or1 - or0, oc1 - oc0)
    resampling = Resampling.average if sx < 0.75 else Resampling.bilinear
    rio_window = RioWindow(c0, r0, c1 - c0, r1 - r0)
    unique = list(dict.fromkeys(source.bands))
    with source._lock:
        data = source._ds.read(unique, window=rio_window, out_shape=(len(unique),) + shape, resampling=resampling)
        masks = source._ds.read_masks(unique, window=rio_window, out_shape=(len(unique),) + shape,
                                      resampling=Resampling.nearest)
    ok = (masks > 0).all(axis=0)
    if np.issubdtype(data.dtype, np.floating):
        ok &= np.isfinite(data).all(axis=0)
    data = data[[unique.index(b) for b in source.bands]]
    part = source._to_uint8(data)
    part[:, ~ok] = 0
    rgb[or0:or1, oc0:oc1] = part.transpose(1, 2, 0)
    valid[or0:or1, oc0:oc1] = ok
    return rgb, valid


def legacy_read_tiles(source, grid, tiles, size, min_valid):
    """The reading of tiles before the tile reader: one window read per tile, as it was then."""
    return per_tile_read_tiles(source, grid, tiles, size, min_valid, read=legacy_read_rgb)


def per_tile_read_tiles(source, grid, tiles, size, min_valid, read=None):
    """The reading of tiles before the tile reader: one resampled window read per tile."""
    images, kept, skipped = [], [], []
    for t in tiles:
        window = grid.window(t)
        rgb, valid = read(source, window, (size, size)) if read else source.read_rgb(window, (size, size))
        share = valid.mean()
        if share < min_valid or share == 0:
            skipped.append(t)
        else:
            images.append(rgb)
            kept.append(t)
    arr = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return arr, np.asarray(kept, np.int64), np.asarray(skipped, np.int64)


def _layers(source, scales, overlap=0.5):
    from engine.tiling import make_grid

    grids = [make_grid(source, s, overlap) for s in scales]
    return [g for g in grids if g is not None]


def run_ours(source, grids, size, mean, std, batch, min_valid, threads) -> tuple[int, float]:
    from engine.index.tile_reader import BatchReader, read_tiles
    from engine.preprocess import normalise_batch

    t0, n = time.perf_counter(), 0
    for grid in grids:
        reader = BatchReader(source, grid, np.arange(grid.count, dtype=np.int64), batch, size, min_valid,
                             read_tiles, threads=threads, prepare=lambda images: normalise_batch(images, mean, std))
        for tiles, _prepared, _kept, _skipped in reader:
            n += len(tiles)
    return n, time.perf_counter() - t0


def run_regions(source, grids, size, mean, std, batch, min_valid, threads) -> tuple[int, float]:
    """Ours with every scale cut from one decoding of each region (tile_reader.RegionReader), as the
    index build does where the source allows it; per-scale block reads where it does not."""
    from engine.index.tile_reader import RegionReader, read_tiles, region_side
    from engine.preprocess import normalise_batch

    side = region_side(source, grids)
    if side is None:
        return run_ours(source, grids, size, mean, std, batch, min_valid, threads)
    t0, n = time.perf_counter(), 0
    reader = RegionReader(source, [(g, np.arange(g.count, dtype=np.int64)) for g in grids], batch, size, min_valid,
                          read_tiles, side, threads=threads, prepare=lambda images: normalise_batch(images, mean, std))
    for _part, tiles, _prepared, _kept, _skipped in reader:
        n += len(tiles)
    return n, time.perf_counter() - t0


def run_baseline(source, grids, size, mean, std, batch, min_valid, read=legacy_read_tiles) -> tuple[int, float]:
    from engine.preprocess import prepare_image

    t0, n = time.perf_counter(), 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        for grid in grids:
            todo = np.arange(grid.count, dtype=np.int64)
            batches = [todo[i:i + batch] for i in range(0, len(todo), batch)]
            future = pool.submit(read, source, grid, batches[0], size, min_valid)
            for bi in range(len(batches)):
                images, _kept, _skipped = future.result()
                if bi + 1 < len(batches):
                    future = pool.submit(read, source, grid, batches[bi + 1], size, min_valid)
                if len(images):
                    np.stack([prepare_image(im, size, mean, std) for im in images])
                n += len(batches[bi])
    return n, time.perf_counter() - t0


class Uncached:
    """While active, the raster's pages are dropped from the page cache every `period` seconds
    (posix_fadvise DONTNEED; Linux), as for a raster far larger than memory or on a share: what a
    pipeline reads comes from storage again. `read_bytes()`: this process's reads from storage."""

    def __init__(self, path: str, period: float = 0.5):
        import threading

        self.path, self.period, self.stop = path, period, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import os

        fd = os.open(self.path, os.O_RDONLY)
        try:
            while not self.stop.is_set():
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                self.stop.wait(self.period)
        finally:
            os.close(fd)

    @staticmethod
    def read_bytes() -> int:
        with open("/proc/self/io") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("read_bytes"))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def pipeline_only(raster: str, checkpoint: str | None, rounds: int, threads: int | None,
                  scales=DEFAULT_SCALES, baseline: bool = True, min_valid: float = 0.5,
                  uncached: bool = False) -> dict:
    """Tiles per second of the pipelines, alternating rounds; medians. uncached: the raster's
    pages are dropped from the page cache while they run (see Uncached), and the bytes each reads
    from storage are reported."""
    from contextlib import nullcontext

    from engine.index.tile_reader import reader_threads, region_side
    from engine.raster.rasterio_source import RasterioSource

    size, mean, std, batch = model_input(checkpoint)
    source = RasterioSource(raster)
    grids = _layers(source, scales)
    threads = threads or reader_threads()
    ours, blocks, base, per_tile = [], [], [], []
    cpu = {"ours": [], "per_scale": []}  # CPU seconds of this process: steadier than wall time on a shared machine
    storage = {"ours": [], "per_scale": []}  # MiB read from storage (uncached only)
    tiles = 0
    for _ in range(rounds):
        for name, run, rates in (("ours", run_regions, ours),
                                 # the tile reader before regions: each scale's blocks read from the file
                                 ("per_scale", run_ours, blocks)):
            with Uncached(raster) if uncached else nullcontext():
                b0, c0 = Uncached.read_bytes(), time.process_time()
                tiles, seconds = run(source, grids, size, mean, std, batch, min_valid, threads)
                cpu[name].append(time.process_time() - c0)
                storage[name].append((Uncached.read_bytes() - b0) / 2**20)
            rates.append(tiles / seconds)
        if baseline:
            _, seconds = run_baseline(source, grids, size, mean, std, batch, min_valid)
            base.append(tiles / seconds)
            # the baseline's loop with today's read_rgb: what the block reads add beyond it
            _, seconds = run_baseline(source, grids, size, mean, std, batch, min_valid, per_tile_read_tiles)
            per_tile.append(tiles / seconds)
    out = {"raster": str(raster), "size_px": [source.width, source.height], "tiles": tiles,
           "scales_m": list(scales), "input_px": size, "batch": batch, "rounds": rounds,
           "tiles_per_s": statistics.median(ours), "workers": threads,
           "tiles_per_s_rounds": [round(v, 1) for v in ours],
           "regions": region_side(source, grids) is not None,
           "per_scale_tiles_per_s": statistics.median(blocks), "per_scale_rounds": [round(v, 1) for v in blocks],
           "regions_speedup": statistics.median(ours) / statistics.median(blocks),
           "cpu_s": {k: [round(v, 2) for v in vs] for k, vs in cpu.items()}, "uncached": uncached}
    if uncached:
        out["storage_read_mib"] = {k: [round(v) for v in vs] for k, vs in storage.items()}
    if baseline:
        out.update(baseline_tiles_per_s=statistics.median(base), baseline_workers=1,
                   baseline_rounds=[round(v, 1) for v in base],
                   speedup=statistics.median(ours) / statistics.median(base),
                   per_tile_now_tiles_per_s=statistics.median(per_tile))
    return out


class _LegacyEmbedder:
    """An embedder seen without its batch path (prepare_batch / embed_prepared): tiles go through
    embed_images one image at a time, as before the tile reader."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        if name in ("prepare_batch", "embed_prepared"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def embed_images(self, images, with_tokens=False):
        return self._inner.embed_images(list(images), with_tokens=with_tokens)


def end_to_end(raster: str, checkpoint: str | None, device: str, rounds: int, threads: int | None,
               scales=DEFAULT_SCALES, baseline: bool = True, batch: int | None = None,
               varied_batches: bool = False, cuda_graphs: bool = False) -> dict:
    """A cold search (no index) over the whole raster on `device`: tiles per second, ours against
    the per-tile pipeline (same model, same device, alternating rounds). The first round is also
    the process's first use of each batch shape (a GPU builds its kernels' plans then). `batch`:
    the embedder's batch size; `varied_batches`: short batches run at their own size on a GPU too
    (as before fixed_batch), to measure what the one shape saves; `cuda_graphs`: the model's forward
    replayed from CUDA graphs (engine/cuda_graphs.py, an experiment)."""
    import os

    import engine.index.build as build
    from engine.index.tile_reader import reader_threads
    from engine.raster.rasterio_source import RasterioSource
    from engine.runtime import load_embedder
    from engine.search import SearchOptions, run_search

    embedder = load_embedder(checkpoint, device)
    if batch:
        embedder.batch_size = batch
    if varied_batches:
        embedder.fixed_batch = False
    if cuda_graphs:
        embedder.cuda_graphs = True
    source = RasterioSource(raster)
    sketch = np.full((128, 128, 3), 255, np.uint8)
    sketch[20:108, 58:70] = 0
    opts = SearchOptions(tile_sizes_m=tuple(scales), use_index=False, max_tiles=10**9)
    embedder.embed_images(np.full((2, embedder.cfg.img_size, embedder.cfg.img_size, 3), 128, np.uint8))  # warm-up
    threads = threads or reader_threads()
    ours, base, tiles = [], [], 0
    real_read, real_side = build.read_tiles, build.region_side
    for _ in range(rounds):
        os.environ["SKETCH_SEARCH_READERS"] = str(threads)
        res = run_search(embedder, sketch, [source], options=opts)
        tiles = res.computed + res.skipped
        ours.append(tiles / res.seconds)
        if baseline:
            os.environ["SKETCH_SEARCH_READERS"] = "1"
            # per tile from the file, as before the tile reader: no regions (legacy_read_rgb reads files)
            build.read_tiles, build.region_side = legacy_read_tiles, lambda *a, **k: None
            try:
                res = run_search(_LegacyEmbedder(embedder), sketch, [source], options=opts)
            finally:
                build.read_tiles, build.region_side = real_read, real_side
            base.append((res.computed + res.skipped) / res.seconds)
    os.environ.pop("SKETCH_SEARCH_READERS", None)
    out = {"raster": str(raster), "size_px": [source.width, source.height], "tiles": tiles, "device": device,
           "model": embedder.name, "device_description": embedder.device_description, "batch": embedder.batch_size,
           "fixed_batch": bool(getattr(embedder, "fixed_batch", False)),
           "cuda_graphs": len(embedder._graphed.graphs) if hasattr(embedder, "_graphed") else 0,  # graphs made
           "rounds": rounds, "tiles_per_s": statistics.median(ours), "workers": threads,
           "tiles_per_s_rounds": [round(v, 1) for v in ours]}
    if baseline:
        out.update(baseline_tiles_per_s=statistics.median(base), baseline_workers=1,
                   baseline_rounds=[round(v, 1) for v in base],
                   speedup=statistics.median(ours) / statistics.median(base))
    return out


def report(result: dict, as_json: bool) -> None:
    kind = "end to end on " + result["device"] if "device" in result else "pipeline only (read + resample + preprocess)"
    line = (f"[pipeline] {kind}: {result['tiles']} tiles of {result['raster']} "
            f"({result['size_px'][0]}x{result['size_px'][1]} px): {result['tiles_per_s']:.0f} tiles/s "
            f"with {result['workers']} reader threads")
    if "per_scale_tiles_per_s" in result:
        cpu = {k: statistics.median(v) for k, v in result["cpu_s"].items()}
        line += (f" ({'each region decoded once for all scales' if result['regions'] else 'per-scale reads'}); "
                 f"each scale read on its own: {result['per_scale_tiles_per_s']:.0f} tiles/s: "
                 f"{result['regions_speedup']:.2f}x; CPU {cpu['ours']:.1f} s against {cpu['per_scale']:.1f} s")
        if "storage_read_mib" in result:
            mib = {k: statistics.median(v) for k, v in result["storage_read_mib"].items()}
            line += f"; read from storage (uncached): {mib['ours']:.0f} MiB against {mib['per_scale']:.0f} MiB"
    if "baseline_tiles_per_s" in result:
        line += (f"; per-tile baseline {result['baseline_tiles_per_s']:.0f} tiles/s: "
                 f"{result['speedup']:.1f}x (medians of {result['rounds']} alternating rounds)")
        if "per_tile_now_tiles_per_s" in result:
            line += (f"; the baseline's per-tile loop with today's read_rgb: "
                     f"{result['per_tile_now_tiles_per_s']:.0f} tiles/s")
    print(line)
    if as_json:
        print(json.dumps(result))
