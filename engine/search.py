"""The search API: a sketch and raster sources in, ranked matches (polygons) out.

This is the contract the QGIS plugin and the command line call:

    from engine.search import search, estimate, SearchOptions, Extent, SearchCancelled
    matches = search(embedder, sketch, [source, ...], extent=Extent.from_bbox(...),
                     options=SearchOptions(top_k=20), progress=cb, is_cancelled=flag)

- `embedder`: an engine.embedder.Embedder (any checkpoint).
- `sketch`: anything engine.preprocess accepts (path, PIL image, uint8 RGB/RGBA array);
  an empty sketch raises engine.preprocess.EmptySketchError.
- `sources`: one or more engine.raster.RasterSource (RasterioSource for anything GDAL opens).
  They may differ in CRS and resolution.
- `extent`: None (whole rasters) or an Extent: a shapely geometry (box or polygon) with its CRS.
  An extent that touches no raster raises SearchError.
- `progress(done, total, message)`: called from the calling thread between batches.
- `is_cancelled()`: polled between batches; when it returns True the tiles finished so far are
  committed to the index and SearchCancelled is raised promptly.
- Returns matches best first: Match.geometry is a shapely Polygon in the output CRS
  (options.output_crs, else the first source's CRS), Match.crs_wkt that CRS, rank 1 = best,
  score higher = better (cosine similarity with the sketch's vector, centred as the model card says
  (engine/model/sketch_centering.py), or the expanded one: engine/expansion.py),
  source = the source's name, source_index = its position in `sources`, scale = tile size in metres,
  window = the best tile's pixel window in that source.

Errors meant for the user (too many tiles, extent outside every raster, unknown CRS, an
unreadable raster, an unusable index folder) are SearchError or its subclasses, with a one-line
message.

Inside: the options and result types are in engine/search_types.py, what a search covers in
engine/plan.py, stage 1, stage 2 and merging in engine/ranking.py, query expansion (a second stage-1
pass) in engine/expansion.py; this module runs them in order.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Sequence

import numpy as np

from .expansion import expand_query
from .index import TileIndexError
from .index.build import Cancelled, compute_layers, nothing_to_search, require_writable
from .plan import plan
from .ranking import merge, stage1, stage2
from .raster.rasterio_source import RasterError
from .search_types import (Estimate, Extent, Match, SearchCancelled, SearchError, SearchOptions, SearchResult,
                           TooManyTiles, check_options)

__all__ = ["CancelFn", "Estimate", "Extent", "Match", "ProgressFn", "SearchCancelled", "SearchError",
           "SearchOptions", "SearchResult", "TooManyTiles", "build_index", "check_options", "estimate", "plan",
           "run_search", "search"]

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]



def search(embedder, sketch, sources: Sequence, extent: Extent | None = None,
           options: SearchOptions | None = None, progress: ProgressFn | None = None,
           is_cancelled: CancelFn | None = None, like: Sequence[Extent] = (),
           unlike: Sequence[Extent] = ()) -> list[Match]:
    """Find where the sketched object occurs; see the module docstring for the contract.
    `like` / `unlike`: places (Extents) marked as wanted / not wanted refine the query, and with
    `like` the sketch may be None (search by example); see engine/refine.py."""
    return run_search(embedder, sketch, sources, extent, options, progress, is_cancelled, like, unlike).matches


def _tiles_per_second(embedder) -> float:
    """Throughput of this embedder on its device: a short timed run on blank tiles."""
    size = embedder.cfg.img_size
    n = max(2, min(embedder.batch_size, 8))
    blank = np.full((n, size, size, 3), 128, np.uint8)
    embedder.embed_images(blank[:1])  # warm-up
    t0 = time.perf_counter()
    embedder.embed_images(blank)
    return n / max(time.perf_counter() - t0, 1e-6)


@contextmanager
def _as_search_errors():
    """An unreadable raster or an unusable index reaches the caller as a one-line SearchError,
    the one error type of this API."""
    try:
        yield
    except (TileIndexError, RasterError) as exc:
        raise SearchError(str(exc)) from None


def estimate(embedder, sources: Sequence, extent: Extent | None = None,
             options: SearchOptions | None = None) -> Estimate:
    """Tile count and expected time of a search (a short timed embedding gives the speed)."""
    options = options or SearchOptions()
    with _as_search_errors():
        layers, skipped = plan(embedder, sources, extent, options)
        return estimate_layers(embedder, layers, skipped)


def estimate_layers(embedder, layers, skipped) -> Estimate:
    """estimate() for layers already planned."""
    tiles = sum(len(layer.tiles) for layer in layers)
    todo = sum(len(layer.todo) for layer in layers)
    seconds = todo / _tiles_per_second(embedder) if todo else 0.0
    return Estimate(tiles, tiles - todo, todo, seconds, skipped)


def run_search(embedder, sketch, sources: Sequence, extent: Extent | None = None,
               options: SearchOptions | None = None, progress: ProgressFn | None = None,
               is_cancelled: CancelFn | None = None, like: Sequence[Extent] = (),
               unlike: Sequence[Extent] = ()) -> SearchResult:
    """search() with counts of computed / cached / skipped tiles (for tests, logs and benchmarks)."""
    with _as_search_errors():
        if like or unlike or sketch is None:
            from .refine import run_refined_search  # refine builds on this module

            return run_refined_search(embedder, sketch, sources, extent, options, progress, is_cancelled, like,
                                      unlike)
        return _run_search(embedder, sketch, sources, extent, options or SearchOptions(), progress, is_cancelled)


def _run_search(embedder, sketch, sources, extent, options: SearchOptions, progress, is_cancelled) -> SearchResult:
    t0 = time.perf_counter()
    check_options(options)
    sk = embedder.embed_sketches([sketch], with_tokens=options.stage2)  # fails early on an empty sketch
    layers, _ = plan(embedder, sources, extent, options)
    computed, skipped = compute_missing(embedder, layers, options, progress, is_cancelled, "this search")
    cached = sum(len(layer.tiles) for layer in layers) - computed - skipped
    require_something_to_search(layers, options, "nothing to search")

    n = max(options.candidates, 10 * options.top_k)
    hits = stage1(sk.cls[0], layers, n)
    expansion = embedder.retrieval.query_expansion if options.expansion else 0
    if hits and expansion:
        hits = stage1(expand_query(sk.cls[0], hits, layers, options, expansion), layers, n)
    if hits and options.stage2:
        if is_cancelled and is_cancelled():
            raise SearchCancelled("cancelled before re-ranking (tiles kept in the index)")
        if progress:
            progress(1, 1, f"re-ranking {len(hits)} candidates")
        hits = stage2(embedder, sk.tokens[0], layers, hits, options.min_valid)
    matches = merge(hits, layers, options, sources)
    return SearchResult(matches, computed, cached, skipped, time.perf_counter() - t0)


def compute_missing(embedder, layers, options, progress, is_cancelled, what: str,
                    approximate_index: bool = False) -> tuple[int, int]:
    """Embed the tiles not in the index yet, within the max_tiles limit (approximate_index: and
    give huge entries their ANN index, engine/index/ann.py; index builds only)."""
    todo = sum(len(layer.todo) for layer in layers)
    if todo > options.max_tiles:
        raise TooManyTiles(f"{what} would compute {estimate_layers(embedder, layers, []).describe()}, more than the "
                           f"limit of {options.max_tiles}: narrow the extent, use fewer or larger tile sizes, "
                           f"or raise the limit (--max-tiles)")
    try:
        return with_search_errors(compute_layers, layers, embedder, options.min_valid, options.stage2, progress,
                            is_cancelled, approximate_index)
    except Cancelled as exc:
        raise SearchCancelled(str(exc)) from None


def with_search_errors(fn, *args):
    """fn(*args), with an unreadable raster or an unusable index as a one-line SearchError."""
    with _as_search_errors():
        return fn(*args)


def require_something_to_search(layers, options: SearchOptions, what: str) -> None:
    """A search where every covered tile was skipped is an error that says why."""
    why = nothing_to_search(layers, options.min_valid)
    if why:
        raise SearchError(f"{what}: {why}")


def build_index(embedder, sources: Sequence, extent: Extent | None = None, options: SearchOptions | None = None,
                progress: ProgressFn | None = None, is_cancelled: CancelFn | None = None) -> SearchResult:
    """Compute and store the tiles of a future search ahead of time (no sketch needed).
    Tokens for stage 2 are stored too when options.stage2; max_tiles applies as in a search."""
    t0 = time.perf_counter()
    options = options or SearchOptions()
    if not options.use_index:
        raise SearchError("building an index needs an index folder (use_index=False given)")
    with _as_search_errors():
        layers, _ = plan(embedder, sources, extent, options)
        require_writable(layers)
        computed, skipped = compute_missing(embedder, layers, options, progress, is_cancelled, "building", True)
        cached = sum(len(layer.tiles) for layer in layers) - computed - skipped
        require_something_to_search(layers, options, "nothing to index")
    return SearchResult([], computed, cached, skipped, time.perf_counter() - t0)
