"""The search API: a sketch and raster sources in, ranked matches (polygons) out.

This is the contract the QGIS plugin and the command line call:

    from engine.search import search, estimate, SearchOptions, Extent, SearchCancelled
    matches = search(embedder, sketch, [source, ...], extent=Extent.from_bbox(...),
                     options=SearchOptions(top_k=20), progress=cb, is_cancelled=flag)

- `embedder`: an engine.embedder.Embedder (any checkpoint).
- `sketch`: anything engine.preprocess accepts (path, PIL image, uint8 RGB/RGBA array);
  an empty sketch raises engine.preprocess.EmptySketchError.
- `sources`: one or more engine.raster.RasterSource (RasterioSource for files, the plugin's own
  for QGIS providers). They may differ in CRS and resolution.
- `extent`: None (whole rasters) or an Extent: a shapely geometry (box or polygon) with its CRS.
  An extent that touches no raster raises SearchError.
- `progress(done, total, message)`: called from the calling thread between batches.
- `is_cancelled()`: polled between batches; when it returns True the tiles finished so far are
  committed to the index and SearchCancelled is raised promptly.
- Returns matches best first: Match.geometry is a shapely Polygon in the output CRS
  (options.output_crs, else the first source's CRS), Match.crs_wkt that CRS, rank 1 = best,
  score higher = better (cosine similarity), source = the source's name, scale = tile size in metres.

Errors meant for the user (too many tiles, extent outside every raster, unknown CRS) are
SearchError subclasses with a one-line message.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from .raster.source import Window

# Defaults, chosen from the sizes of the objects analysts search for (see engine/tiling.py).
DEFAULT_TILE_SIZES_M = (60.0, 120.0, 240.0)
DEFAULT_OVERLAP = 0.5
DEFAULT_TOP_K = 20
DEFAULT_MAX_TILES = 20000
# Stage 2 off by default: measured on the UC Merced mosaic with real Earth-on-Canvas aeroplane
# sketches (precision@10, default tiling), cross-attention re-ranking of the stage-1 candidates
# lowered precision with the default model's checkpoints (0.39 -> 0.32 at step 150, 0.39 -> 0.28
# at step 300; chance 0.11) and makes a warm search 10-20x slower. It stays an option (--stage2).
DEFAULT_STAGE2 = False

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]


class SearchError(Exception):
    """A search that cannot run as asked; the message is one line meant for the user."""


class SearchCancelled(SearchError):
    """is_cancelled() returned True; finished tiles were kept in the index."""


class TooManyTiles(SearchError):
    """The search would compute more tiles than options.max_tiles allows."""


@dataclass(frozen=True)
class Extent:
    """Where to search: a shapely geometry (box or polygon) and its CRS (WKT, EPSG:xxxx, ...)."""
    geometry: BaseGeometry
    crs: str

    @classmethod
    def from_bbox(cls, minx: float, miny: float, maxx: float, maxy: float, crs: str) -> "Extent":
        if not (maxx > minx and maxy > miny):
            raise SearchError(f"empty bounding box: {minx} {miny} {maxx} {maxy} (need MINX < MAXX and MINY < MAXY)")
        return cls(box(minx, miny, maxx, maxy), crs)


@dataclass(frozen=True)
class SearchOptions:
    top_k: int = DEFAULT_TOP_K
    tile_sizes_m: tuple[float, ...] = DEFAULT_TILE_SIZES_M   # tile edge in ground metres, one scale each
    overlap: float = DEFAULT_OVERLAP                        # fraction of a tile shared with its neighbour
    stage2: bool = DEFAULT_STAGE2                           # cross-attention re-ranking of the best candidates
    candidates: int = 100                                   # stage-1 candidates passed to stage 2 / merging
    min_valid: float = 0.5                                  # tiles with less valid (non-nodata) area are skipped
    merge_iou: float = 0.3                                  # hits overlapping more than this merge into one match
    merge_containment: float = 0.7                          # ... or when this share of the smaller one is covered
    max_tiles: int = DEFAULT_MAX_TILES                      # refuse to compute more new tiles than this
    output_crs: str | None = None                           # default: the first source's CRS
    index_dir: str | Path | None = None                     # default: engine.index.default_index_dir()
    use_index: bool = True                                  # False: compute everything in memory, store nothing


@dataclass
class Match:
    geometry: Polygon   # in crs_wkt
    crs_wkt: str
    rank: int           # 1 = best
    score: float        # higher = better
    source: str         # the source's name
    scale: float        # tile size in metres
    merged: int = 1     # how many overlapping tile hits this match stands for
    source_index: int = 0           # the source's position in the list given to the search
    window: Window | None = None    # the best tile's pixel window in that source (thumbnails, zoom)
    mark: str | None = None         # refined searches: "like" / "unlike" when it lies on a place so marked


@dataclass
class Estimate:
    tiles: int          # tiles the search covers (all scales and sources)
    cached: int         # of which the index already holds
    to_compute: int     # tiles to embed now
    seconds: float      # expected time for them on this embedder's device
    skipped_scales: list[str] = field(default_factory=list)  # scales too fine for a raster's resolution

    def describe(self) -> str:
        return (f"{self.tiles} tiles ({self.cached} in the index, {self.to_compute} to compute, "
                f"about {_human_seconds(self.seconds)})")


@dataclass
class SearchResult:
    matches: list[Match]
    computed: int       # tiles embedded by this call
    cached: int         # tiles read from the index
    skipped: int        # tiles skipped as mostly nodata
    seconds: float


def _human_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def search(embedder, sketch, sources: Sequence, extent: Extent | None = None,
           options: SearchOptions | None = None, progress: ProgressFn | None = None,
           is_cancelled: CancelFn | None = None, like: Sequence[Extent] = (),
           unlike: Sequence[Extent] = ()) -> list[Match]:
    """Find where the sketched object occurs; see the module docstring for the contract.
    `like` / `unlike`: places (Extents) marked as wanted / not wanted refine the query, and with
    `like` the sketch may be None (search by example); see engine/refine.py."""
    return run_search(embedder, sketch, sources, extent, options, progress, is_cancelled, like, unlike).matches


def check_options(options: SearchOptions) -> None:
    """Refuse options out of range (NaN included) in one line, before any work."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if not options.tile_sizes_m:
        raise SearchError("no tile size given")
    for t in options.tile_sizes_m:
        if not number(t) or t <= 0:
            raise SearchError(f"tile size must be a positive number of metres, got {t}")
    if not number(options.overlap) or not 0 <= options.overlap < 1:
        raise SearchError(f"overlap must be at least 0 and below 1, got {options.overlap}")
    if not number(options.min_valid) or not 0 <= options.min_valid <= 1:
        raise SearchError(f"min-valid must be a share from 0 to 1, got {options.min_valid}")
    for name in ("top_k", "candidates"):
        if not isinstance(getattr(options, name), Integral) or getattr(options, name) < 1:
            raise SearchError(f"{name.replace('_', '-')} must be a whole number of at least 1, "
                              f"got {getattr(options, name)}")
    if not isinstance(options.max_tiles, Integral) or options.max_tiles < 0:
        raise SearchError(f"max-tiles must be a whole number of at least 0, got {options.max_tiles}")


def plan(embedder, sources: Sequence, extent: Extent | None, options: SearchOptions) -> tuple[list, list[str]]:
    """Open the index entry of every (source, scale) read-only, check the rows the search covers
    and select those tiles. Returns (layers, skipped scale descriptions)."""
    from .index import default_index_dir, entry_key
    from .index.build import Layer, open_entry
    from .tiling import TilingError, area_in_pixels, make_grid, parse_crs

    if not sources:
        raise SearchError("no raster to search")
    check_options(options)
    try:
        if extent is not None:
            parse_crs(extent.crs)
        if options.output_crs:
            parse_crs(options.output_crs)
    except TilingError as exc:
        raise SearchError(str(exc)) from None
    root = None
    if options.use_index:
        root = Path(options.index_dir) if options.index_dir else default_index_dir()
    layers, skipped = [], []
    size, dim = embedder.cfg.img_size, embedder.vector_dim
    for source in sources:
        area = area_in_pixels(extent.geometry, extent.crs, source) if extent is not None else None
        for tile_m in options.tile_sizes_m:
            try:
                grid = make_grid(source, tile_m, options.overlap)
            except TilingError as exc:
                raise SearchError(str(exc)) from None
            if grid is None:
                skipped.append(f"{source.name}: {tile_m:g} m tiles are too small for its resolution")
                continue
            tiles = grid.select(area)
            if len(tiles) == 0:
                continue
            key = entry_key(source.identity, embedder.identity, tile_m, options.overlap, size, options.min_valid)
            info = {"raster": source.name, "crs_wkt": source.crs_wkt, "grid": {
                "rows": grid.rows, "cols": grid.cols, "tile_px": [grid.tile_c, grid.tile_r],
                "stride_px": [grid.stride_c, grid.stride_r], "transform": list(grid.transform)[:6]}}
            try:
                entry = open_entry(root, key, grid, dim, tiles, info)
            except OSError as exc:
                raise SearchError(f"cannot use the tile index folder {root}: {exc.strerror or exc} "
                                  f"(choose another with --index-dir or SKETCH_SEARCH_INDEX)") from None
            layers.append(Layer(source, grid, entry, tiles))
    if not layers:
        if extent is not None:
            raise SearchError("the extent lies outside every raster (check the bounding box and its CRS)")
        raise SearchError("; ".join(skipped) or "no tiles to search")
    return layers, skipped


def _tiles_per_second(embedder) -> float:
    """Throughput of this embedder on its device: a short timed run on blank tiles."""
    size = embedder.cfg.img_size
    n = max(2, min(embedder.batch_size, 8))
    blank = np.full((n, size, size, 3), 128, np.uint8)
    embedder.embed_images(blank[:1])  # warm-up
    t0 = time.perf_counter()
    embedder.embed_images(blank)
    return n / max(time.perf_counter() - t0, 1e-6)


def estimate(embedder, sources: Sequence, extent: Extent | None = None,
             options: SearchOptions | None = None) -> Estimate:
    """Tile count and expected time of a search (a short timed embedding gives the speed)."""
    options = options or SearchOptions()
    layers, skipped = plan(embedder, sources, extent, options)
    return _estimate(embedder, layers, skipped)


def _estimate(embedder, layers, skipped) -> Estimate:
    tiles = sum(len(layer.tiles) for layer in layers)
    todo = sum(len(layer.todo) for layer in layers)
    seconds = todo / _tiles_per_second(embedder) if todo else 0.0
    return Estimate(tiles, tiles - todo, todo, seconds, skipped)


def run_search(embedder, sketch, sources: Sequence, extent: Extent | None = None,
               options: SearchOptions | None = None, progress: ProgressFn | None = None,
               is_cancelled: CancelFn | None = None, like: Sequence[Extent] = (),
               unlike: Sequence[Extent] = ()) -> SearchResult:
    """search() with counts of computed / cached / skipped tiles (for tests, logs and benchmarks)."""
    if like or unlike or sketch is None:
        from .refine import run_refined_search

        return run_refined_search(embedder, sketch, sources, extent, options, progress, is_cancelled, like, unlike)
    t0 = time.perf_counter()
    options = options or SearchOptions()
    check_options(options)
    sk = embedder.embed_sketches([sketch], with_tokens=options.stage2)  # fails early on an empty sketch
    layers, _ = plan(embedder, sources, extent, options)
    computed, skipped = _compute(embedder, layers, options, progress, is_cancelled, "this search")
    cached = sum(len(layer.tiles) for layer in layers) - computed - skipped
    _something_to_search(layers, options, "nothing to search")

    hits = _stage1(sk.cls[0], layers, max(options.candidates, 10 * options.top_k))
    if hits and options.stage2:
        if is_cancelled and is_cancelled():
            raise SearchCancelled("cancelled before re-ranking (tiles kept in the index)")
        if progress:
            progress(1, 1, f"re-ranking {len(hits)} candidates")
        hits = _user_errors(_stage2, embedder, sk.tokens[0], layers, hits, options.min_valid)
    matches = _merge(hits, layers, options, sources)
    return SearchResult(matches, computed, cached, skipped, time.perf_counter() - t0)


def _compute(embedder, layers, options, progress, is_cancelled, what: str,
             approximate_index: bool = False) -> tuple[int, int]:
    """Embed the tiles not in the index yet, within the max_tiles limit (approximate_index: and
    give huge entries their ANN index, engine/index/ann.py; index builds only)."""
    from .index.build import Cancelled, compute_layers

    todo = sum(len(layer.todo) for layer in layers)
    if todo > options.max_tiles:
        raise TooManyTiles(f"{what} would compute {_estimate(embedder, layers, []).describe()}, more than the "
                           f"limit of {options.max_tiles}: narrow the extent, use fewer or larger tile sizes, "
                           f"or raise the limit (--max-tiles)")
    try:
        return _user_errors(compute_layers, layers, embedder, options.min_valid, options.stage2, progress,
                            is_cancelled, approximate_index)
    except Cancelled as exc:
        raise SearchCancelled(str(exc)) from None


def _user_errors(fn, *args):
    """fn(*args), with an unreadable raster or an unusable index as a one-line SearchError."""
    from .index import TileIndexError
    from .raster.rasterio_source import RasterError

    try:
        return fn(*args)
    except (TileIndexError, RasterError) as exc:
        raise SearchError(str(exc)) from None


def _something_to_search(layers, options: SearchOptions, what: str) -> None:
    """A search where every covered tile was skipped is an error that says why."""
    from .index.build import nothing_to_search

    why = nothing_to_search(layers, options.min_valid)
    if why:
        raise SearchError(f"{what}: {why}")


def _stage1(query: np.ndarray, layers, n: int) -> list[tuple[float, int, int]]:
    """The n best (score, layer index, tile) over all layers by global-vector similarity."""
    from .index.ann import entry_topk
    from .index.store import EMBEDDED

    hits = []
    for li, layer in enumerate(layers):
        rows = layer.tiles[layer.entry.state[layer.tiles] == EMBEDDED]
        ids, scores = entry_topk(query, layer.entry, rows, n)  # exact, or approximate + exact re-scoring when huge
        hits += [(float(s), li, int(t)) for s, t in zip(scores, ids)]
    return sorted(hits, key=lambda h: -h[0])[:n]


def _stage2(embedder, sketch_tokens, layers, hits, min_valid: float) -> list[tuple[float, int, int]]:
    """The candidates re-scored by cross-attention on (sketch, tile) token pairs, best first."""
    from .index.build import tokens_for
    from .ranking import stage2_scores

    rescored = []
    for li in sorted({h[1] for h in hits}):
        tiles = np.array([h[2] for h in hits if h[1] == li], np.int64)
        scores = stage2_scores(embedder, sketch_tokens, tokens_for(layers[li], tiles, embedder, min_valid))
        rescored += [(float(s), li, int(t)) for s, t in zip(scores, tiles)]
    return sorted(rescored, key=lambda h: -h[0])


def _merge(hits, layers, options: SearchOptions, sources: Sequence = ()) -> list[Match]:
    """Polygons in the output CRS; overlapping hits across tiles, scales and rasters become one match.
    `sources`: the list the search was given, so each match can name its source's position."""
    from .ranking import merge_hits
    from .tiling import parse_crs, reproject

    if not hits:
        return []
    out_wkt = parse_crs(options.output_crs or layers[0].source.crs_wkt).to_wkt()
    polys = np.empty(len(hits), dtype=object)
    for li in sorted({h[1] for h in hits}):
        idx = [i for i, h in enumerate(hits) if h[1] == li]
        layer = layers[li]
        geoms = layer.grid.polygons(np.array([hits[i][2] for i in idx], np.int64))
        polys[idx] = reproject(geoms, layer.source.crs_wkt, out_wkt)
    scores = np.array([h[0] for h in hits], np.float32)
    groups = merge_hits(polys, scores, options.merge_iou, options.merge_containment, limit=options.top_k)
    # By object, not by name: two sources may share a name (the same file added twice).
    position = {id(s): i for i, s in enumerate(sources)}
    matches = []
    for rank, group in enumerate(groups, start=1):
        score, li, tile = hits[group[0]]
        layer = layers[li]
        matches.append(Match(polys[group[0]], out_wkt, rank, score, layer.source.name, layer.grid.tile_m, len(group),
                             source_index=position.get(id(layer.source), 0), window=layer.grid.window(tile)))
    return matches


def build_index(embedder, sources: Sequence, extent: Extent | None = None, options: SearchOptions | None = None,
                progress: ProgressFn | None = None, is_cancelled: CancelFn | None = None) -> SearchResult:
    """Compute and store the tiles of a future search ahead of time (no sketch needed).
    Tokens for stage 2 are stored too when options.stage2; max_tiles applies as in a search."""
    t0 = time.perf_counter()
    options = options or SearchOptions()
    if not options.use_index:
        raise SearchError("building an index needs an index folder (use_index=False given)")
    layers, _ = plan(embedder, sources, extent, options)
    from .index.build import require_writable
    _user_errors(require_writable, layers)
    computed, skipped = _compute(embedder, layers, options, progress, is_cancelled, "building", True)
    cached = sum(len(layer.tiles) for layer in layers) - computed - skipped
    _something_to_search(layers, options, "nothing to index")
    return SearchResult([], computed, cached, skipped, time.perf_counter() - t0)
