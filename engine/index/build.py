"""Filling index entries: read the tiles not computed yet, embed them in batches, commit.

Reading runs one batch ahead in a background thread (GDAL releases the GIL), so the model and
the disk work at the same time. Commits happen every few seconds and at a cancel, so a killed
run loses little and the next run computes only what is missing.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .store import NOT_DONE, IndexEntry

COMMIT_SECONDS = 2.0


class Cancelled(Exception):
    """Raised between batches when is_cancelled() says so (after committing finished tiles)."""


@dataclass
class Layer:
    """One raster at one scale: its source, grid, index entry and the tiles a search covers."""
    source: object
    grid: object
    entry: IndexEntry
    tiles: np.ndarray  # tile ids the search covers (sorted)

    @property
    def todo(self) -> np.ndarray:
        return self.tiles[self.entry.state[self.tiles] == NOT_DONE]


def read_tiles(source, grid, tiles: np.ndarray, size: int, min_valid: float):
    """Pixels of the tiles at size x size; returns (images (B, S, S, 3), kept tile ids, skipped ids)."""
    images, kept, skipped = [], [], []
    for t in tiles:
        rgb, valid = source.read_rgb(grid.window(t), (size, size))
        if valid.mean() < min_valid:
            skipped.append(t)
        else:
            images.append(rgb)
            kept.append(t)
    arr = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return arr, np.asarray(kept, np.int64), np.asarray(skipped, np.int64)


def compute_layers(layers: list[Layer], embedder, min_valid: float, with_tokens: bool,
                   progress: Callable[[int, int, str], None] | None = None,
                   is_cancelled: Callable[[], bool] | None = None) -> tuple[int, int]:
    """Embed every not-yet-computed tile of the layers. Returns (embedded, skipped) counts."""
    total = sum(len(l.todo) for l in layers)
    counts = {"done": 0, "embedded": 0, "skipped": 0}
    if progress:
        progress(0, total, f"{total} tiles to compute")
    with ThreadPoolExecutor(max_workers=1) as pool:
        for layer in layers:
            with layer.entry.locked():
                todo = layer.todo
                if len(todo) == 0:
                    continue
                pending = _Pending()
                try:
                    _compute_layer(layer, todo, embedder, min_valid, with_tokens, pool, pending, counts, total,
                                   progress, is_cancelled)
                except (Cancelled, KeyboardInterrupt):
                    pending.commit(layer.entry)  # keep every finished batch, then stop
                    raise
            write_tile_layer(layer)
    return counts["embedded"], counts["skipped"]


def _compute_layer(layer, todo, embedder, min_valid, with_tokens, pool, pending, counts, total, progress,
                   is_cancelled) -> None:
    size, batch = embedder.cfg.img_size, embedder.batch_size
    batches = [todo[i:i + batch] for i in range(0, len(todo), batch)]
    future = pool.submit(read_tiles, layer.source, layer.grid, batches[0], size, min_valid)
    for bi in range(len(batches)):
        images, kept, skip = future.result()
        if bi + 1 < len(batches):  # read the next batch while the model runs
            future = pool.submit(read_tiles, layer.source, layer.grid, batches[bi + 1], size, min_valid)
        emb = embedder.embed_images(images, with_tokens=with_tokens) if len(kept) else None
        pending.add(kept, emb, skip, with_tokens)
        counts["done"] += len(batches[bi])
        counts["embedded"] += len(kept)
        counts["skipped"] += len(skip)
        if time.monotonic() - pending.since > COMMIT_SECONDS or bi + 1 == len(batches):
            pending.commit(layer.entry)
        if progress:
            progress(counts["done"], total, f"{layer.source.name} at {layer.grid.tile_m:g} m")
        if is_cancelled and is_cancelled():
            future.cancel()
            raise Cancelled(f"cancelled after {counts['done']} of {total} tiles (kept in the index)")


class _Pending:
    """Rows computed but not yet committed."""

    def __init__(self):
        self.tiles, self.vectors, self.skipped, self.tokens = [], [], [], []
        self.since = time.monotonic()

    def add(self, kept, emb, skipped, with_tokens):
        if emb is not None:
            self.tiles.append(kept)
            self.vectors.append(emb.cls)
            if with_tokens:
                self.tokens.append(emb.tokens.numpy().astype(np.float16))
        self.skipped.append(skipped)

    def commit(self, entry: IndexEntry) -> None:
        if not (self.tiles or self.skipped):
            return
        tiles = np.concatenate(self.tiles) if self.tiles else np.zeros(0, np.int64)
        dim = entry.dim
        vectors = np.concatenate(self.vectors) if self.vectors else np.zeros((0, dim), np.float32)
        skipped = np.concatenate(self.skipped) if self.skipped else np.zeros(0, np.int64)
        tokens = np.concatenate(self.tokens) if self.tokens else None
        entry.commit(tiles, vectors, skipped, tokens, tiles if tokens is not None else None)
        self.__init__()


def tokens_for(layer: Layer, tiles: np.ndarray, embedder, min_valid: float) -> np.ndarray:
    """Stage-2 tokens of some embedded tiles: from the index, computing (and storing) missing ones."""
    entry = layer.entry
    missing = tiles[entry.tokstate[tiles] == 0] if len(tiles) else tiles
    if len(missing):
        images, kept, _ = read_tiles(layer.source, layer.grid, missing, embedder.cfg.img_size, 0.0)
        emb = embedder.embed_images(images, with_tokens=True)
        with entry.locked():
            entry.commit(np.zeros(0, np.int64), np.zeros((0, entry.dim), np.float32), np.zeros(0, np.int64),
                         emb.tokens.numpy().astype(np.float16), kept)
    return np.asarray(entry.tokens[np.asarray(tiles, np.int64)], np.float32)


def write_tile_layer(layer: Layer) -> None:
    """tiles.gpkg beside the arrays: polygons of the embedded tiles, for QGIS or any GIS."""
    from ..export import write_polygons
    from .store import EMBEDDED

    entry = layer.entry
    if entry.folder is None:
        return
    ids = np.flatnonzero(entry.state == EMBEDDED)
    rows, cols = np.divmod(ids, layer.grid.cols)
    write_polygons(entry.folder / "tiles.gpkg", layer.grid.polygons(ids),
                   {"tile": ids, "row": rows, "col": cols, "scale": np.full(len(ids), layer.grid.tile_m)},
                   layer.source.crs_wkt, overwrite=True, layer="tiles")
