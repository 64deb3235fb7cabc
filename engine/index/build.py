"""Filling index entries: read the tiles not computed yet, embed them in batches, commit.

Reading (engine/index/tile_reader.py: neighbouring tiles read as one window, cut from memory,
normalised for the model) runs several batches ahead in reader threads, so the model and the disk
work at the same time. Commits happen every few seconds, at a cancel and before an error ends the
run, so a killed run loses little and the next run computes only what is missing.
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import ann
from .store import EMBEDDED, NO_TOKENS, NOT_DONE, SKIPPED, SPACE_MARGIN, IndexEntry, TileIndexError, free_bytes
from .tile_reader import BatchReader, RegionReader, read_tiles, region_side  # read_tiles: tests slow it down here

COMMIT_SECONDS = 2.0

log = logging.getLogger(__name__)


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

    @property
    def label(self) -> str:
        return f"{self.source.name} at {self.grid.tile_m:g} m"


def open_entry(root: Path | None, key: dict, grid, dim: int, tiles: np.ndarray, info: dict) -> IndexEntry:
    """The index entry of one grid, read-only, with the rows of `tiles` checked; damaged rows
    count as not computed (a warning says which file).

    A huge entry with an ANN index (millions of rows: checking them all would read tens of GB) is
    checked lazily instead: a search checks the blocks of the hits it returns (engine/index/ann.py),
    an index build all of them before computing (compute_layers)."""
    entry = IndexEntry.open(root, key, grid.count, dim, info)
    entry.lazy_checks = len(tiles) >= ann.ANN_MIN_ROWS and ann.held_rows(entry.folder) > 0
    if not entry.lazy_checks:
        for problem in entry.verify(tiles):
            log.warning("%s; its tiles are computed again", problem)
    return entry


def check_disk_space(layers: list[Layer], with_tokens: bool, n_tokens: int | None = None) -> None:
    """Refuse to start when the index's disk cannot take the tiles to compute (one line)."""
    need: dict[Path, int] = {}
    for layer in layers:
        entry = layer.entry
        if entry.folder is None or not len(layer.todo):
            continue
        root = entry.folder.parent
        need[root] = need.get(root, 0) + entry.bytes_to_add(len(layer.todo), with_tokens, n_tokens)
    for root, nbytes in need.items():
        if not _may_write(root):
            continue  # a read-only index: tiles are computed in memory
        free = free_bytes(root)
        if free < nbytes + SPACE_MARGIN:
            raise TileIndexError(
                f"not enough free disk space for the tile index {root}: about {_mib(nbytes + SPACE_MARGIN)} needed, "
                f"{_mib(free)} free (free some space, choose another folder with --index-dir or "
                f"SKETCH_SEARCH_INDEX, or search with --no-index)")


def require_writable(layers: list[Layer]) -> None:
    """Building an index stores tiles: refuse a folder that cannot be written, before any work
    (a search would compute in memory instead)."""
    for root in sorted({layer.entry.folder.parent for layer in layers
                         if layer.entry.folder is not None and len(layer.todo)}):
        if not _may_write(root):
            raise TileIndexError(f"cannot build the tile index in {root}: the folder cannot be written (read-only "
                                 f"or not yours); choose another with --index-dir or SKETCH_SEARCH_INDEX")


def _may_write(root: Path) -> bool:
    while not root.exists() and root.parent != root:
        root = root.parent
    try:
        if os.statvfs(root).f_flag & os.ST_RDONLY:
            return False
    except (AttributeError, OSError):  # no statvfs on Windows
        pass
    return os.access(root, os.W_OK)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def compute_layers(layers: list[Layer], embedder, min_valid: float, with_tokens: bool,
                   progress: Callable[[int, int, str], None] | None = None,
                   is_cancelled: Callable[[], bool] | None = None,
                   approximate_index: bool = False) -> tuple[int, int]:
    """Embed every not-yet-computed tile of the layers. Returns (embedded, skipped) counts.
    approximate_index: also (re)build the ANN index of entries large enough for one (index builds;
    a search never spends minutes on it)."""
    total = sum(len(layer.todo) for layer in layers)
    counts = {"done": 0, "embedded": 0, "skipped": 0}
    if total:
        check_disk_space(layers, with_tokens, _token_estimate(embedder))
    if progress:
        progress(0, total, f"{total} tiles to compute")
    for group in _by_source(layers):
        for layer in group:
            if approximate_index and getattr(layer.entry, "lazy_checks", False):  # a build checks every row
                for problem in layer.entry.verify(layer.tiles):
                    log.warning("%s; its tiles are computed again", problem)
                layer.entry.lazy_checks = False
        busy = [layer for layer in group if len(layer.todo) or _tile_layer_stale(layer)
                or (approximate_index and ann.needs_refresh(layer.entry))]
        if not busy:
            continue
        with ExitStack() as held:  # every scale of a raster at once: they share its reads
            for layer in busy:
                held.enter_context(layer.entry.writing())
            todos = [layer.todo for layer in busy]  # another process may have computed some, or found some damaged
            for layer, todo in zip(busy, todos):
                if layer.entry.read_only_note and len(todo):
                    log.warning("%s: %d tiles of %s are computed in memory and not stored",
                                layer.entry.read_only_note, len(todo), layer.label)
            work = [(layer, todo) for layer, todo in zip(busy, todos) if len(todo)]
            if work:
                pendings = [_Pending() for _ in work]
                try:
                    _compute(work, embedder, min_valid, with_tokens, pendings, counts, total, progress, is_cancelled)
                except TileIndexError:
                    raise  # the index itself failed (full disk...): nothing more can be stored
                except BaseException:
                    for (layer, _), pending in zip(work, pendings):
                        pending.commit(layer.entry)  # keep every finished batch (cancel, Ctrl-C, bad pixels)
                    raise
            for layer, todo in zip(busy, todos):
                if layer.entry.stored and (len(todo) or _tile_layer_stale(layer)):
                    write_tile_layer(layer)
                if approximate_index and layer.entry.stored:  # a huge entry gets its approximate index for stage 1
                    ann.refresh(layer.entry, lambda what: progress and progress(counts["done"], total, what))
    return counts["embedded"], counts["skipped"]


def _token_estimate(embedder) -> int | None:
    cfg = getattr(embedder, "cfg", None)
    size, patch = getattr(cfg, "img_size", None), getattr(cfg, "patch_size", None)
    return (size // patch) ** 2 + 1 if size and patch else None


def _by_source(layers: list[Layer]) -> list[list[Layer]]:
    """The layers grouped by raster (one source object), in their order."""
    groups: dict[int, list[Layer]] = {}
    for layer in layers:
        groups.setdefault(id(layer.source), []).append(layer)
    return list(groups.values())


def _compute(work, embedder, min_valid, with_tokens, pendings, counts, total, progress, is_cancelled) -> None:
    """The tiles of one raster's layers: every scale cut from one decoding of each region where
    that gives the same pixels (tile_reader.RegionReader), else layer by layer."""
    source = work[0][0].source
    side = region_side(source, [layer.grid for layer, _ in work]) if len(work) > 1 else None
    prepared = hasattr(embedder, "prepare_batch") and hasattr(embedder, "embed_prepared")
    reader = None if side is None else RegionReader(
        source, [(layer.grid, todo) for layer, todo in work], embedder.batch_size, embedder.cfg.img_size, min_valid,
        lambda *args: read_tiles(*args), side, prepare=embedder.prepare_batch if prepared else None)
    if reader is None or not reader.worthwhile:
        for (layer, todo), pending in zip(work, pendings):
            _compute_layer(layer, todo, embedder, min_valid, with_tokens, pending, counts, total, progress,
                           is_cancelled)
        return
    label = f"{source.name} at {'/'.join(f'{layer.grid.tile_m:g}' for layer, _ in work)} m"
    last_commit = time.monotonic()
    with closing(iter(reader)) as stream:
        for pi, tiles, images, kept, skip in stream:
            emb = None
            if len(kept):
                emb = (embedder.embed_prepared(images, with_tokens) if prepared
                       else embedder.embed_images(images, with_tokens=with_tokens))
            pendings[pi].add(kept, emb, skip, with_tokens)
            counts["done"] += len(tiles)
            counts["embedded"] += len(kept)
            counts["skipped"] += len(skip)
            if time.monotonic() - last_commit > COMMIT_SECONDS:
                for (layer, _), pending in zip(work, pendings):
                    pending.commit(layer.entry)
                last_commit = time.monotonic()
            if progress:
                progress(counts["done"], total, label)
            if is_cancelled and is_cancelled():
                raise Cancelled(f"cancelled after {counts['done']} of {total} tiles (kept in the index)")
    for (layer, _), pending in zip(work, pendings):
        pending.commit(layer.entry)


def _compute_layer(layer, todo, embedder, min_valid, with_tokens, pending, counts, total, progress,
                   is_cancelled) -> None:
    # Embedders with a batch path get the tiles normalised by the reader threads (or, on a GPU,
    # pinned for an asynchronous copy); others take the uint8 tiles.
    prepared = hasattr(embedder, "prepare_batch") and hasattr(embedder, "embed_prepared")
    reader = BatchReader(layer.source, layer.grid, todo, embedder.batch_size, embedder.cfg.img_size, min_valid,
                         lambda *args: read_tiles(*args),  # looked up per call, so a test's stand-in is used
                         prepare=embedder.prepare_batch if prepared else None)
    batches = reader.batches
    with closing(iter(reader)) as stream:
        for bi, (tiles, images, kept, skip) in enumerate(stream):
            emb = None
            if len(kept):
                emb = (embedder.embed_prepared(images, with_tokens) if prepared
                       else embedder.embed_images(images, with_tokens=with_tokens))
            pending.add(kept, emb, skip, with_tokens)
            counts["done"] += len(tiles)
            counts["embedded"] += len(kept)
            counts["skipped"] += len(skip)
            if time.monotonic() - pending.since > COMMIT_SECONDS or bi + 1 == len(batches):
                pending.commit(layer.entry)
            if progress:
                progress(counts["done"], total, layer.label)
            if is_cancelled and is_cancelled():
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
    """Stage-2 tokens of some embedded tiles: from the index, computing (and storing) missing or
    damaged ones."""
    entry = layer.entry
    tiles = np.asarray(tiles, np.int64)
    known = len(entry.problems)
    for problem in entry.verify(tiles)[known:]:
        log.warning("%s; its tiles are computed again", problem)
    missing = tiles[entry.tokstate[tiles] == NO_TOKENS] if len(tiles) else tiles
    if len(missing):
        images, kept, _ = read_tiles(layer.source, layer.grid, missing, embedder.cfg.img_size, 0.0)
        emb = embedder.embed_images(images, with_tokens=True)
        with entry.writing():
            entry.commit(np.zeros(0, np.int64), np.zeros((0, entry.dim), np.float32), np.zeros(0, np.int64),
                         emb.tokens.numpy().astype(np.float16), kept)
    return np.asarray(entry.tokens[tiles], np.float32)


def _tile_layer_stale(layer: Layer) -> bool:
    """tiles.gpkg is missing or older than the last commit (a run killed before writing it)."""
    entry = layer.entry
    if entry.folder is None or not entry.exists or not (entry.state == EMBEDDED).any():
        return False
    try:
        return os.stat(entry.folder / "tiles.gpkg").st_mtime < entry.commit_mtime()
    except OSError:
        return True


def write_tile_layer(layer: Layer) -> None:
    """tiles.gpkg beside the arrays: polygons of the embedded tiles, for QGIS or any GIS. It is a
    convenience, not needed to search: failing to write it is a warning."""
    from ..export import ExportError, write_polygons

    entry = layer.entry
    if entry.folder is None:
        return
    ids = np.flatnonzero(entry.state == EMBEDDED)
    rows, cols = np.divmod(ids, layer.grid.cols)
    try:
        write_polygons(entry.folder / "tiles.gpkg", layer.grid.polygons(ids),
                       {"tile": ids, "row": rows, "col": cols, "scale": np.full(len(ids), layer.grid.tile_m)},
                       layer.source.crs_wkt, overwrite=True, layer="tiles")
    except (ExportError, OSError) as exc:
        # Not worth a warning: a search does not need it, and the next run that writes the index tries
        # again (a full disk is reported by the commit that meets it).
        log.info("could not write %s (tile polygons for GIS): %s", entry.folder / "tiles.gpkg", exc)


def nothing_to_search(layers: list[Layer], min_valid: float) -> str | None:
    """Why no covered tile has a vector (one line, one reason per raster), or None when some has."""
    if any((layer.entry.state[layer.tiles] == EMBEDDED).any() for layer in layers):
        return None
    by_source: dict[int, list[Layer]] = {}
    for layer in layers:
        if (layer.entry.state[layer.tiles] == SKIPPED).all():
            by_source.setdefault(id(layer.source), []).append(layer)
    reasons = []
    for group in by_source.values():
        src = group[0].source
        scales = ", ".join(f"{layer.grid.tile_m:g}" for layer in group)
        # the largest share of a tile the raster can fill, at each scale
        fills = [min(1.0, src.width / layer.grid.tile_c) * min(1.0, src.height / layer.grid.tile_r) for layer in group]
        if all(f < max(min_valid, 1e-12) for f in fills):
            share = "a" if min_valid >= 1 else f"{min_valid:.0%} of a"
            reasons.append(f"{src.name} ({src.width} x {src.height} px) is smaller than {share} "
                           f"{min(layer.grid.tile_m for layer in group):g} m tile (use a smaller --tile-size)")
        else:
            reasons.append(f"every tile of {src.name} in the search area ({scales} m) has less than {min_valid:.0%} "
                           f"valid pixels (nodata or outside the raster; lower --min-valid or check the raster's "
                           f"nodata value)")
    return "; ".join(reasons) or "no tile could be computed"
