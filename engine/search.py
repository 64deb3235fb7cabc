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

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

# Defaults, chosen from the sizes of the objects analysts search for (see engine/tiling.py).
DEFAULT_TILE_SIZES_M = (60.0, 120.0, 240.0)
DEFAULT_OVERLAP = 0.5
DEFAULT_TOP_K = 20
DEFAULT_MAX_TILES = 20000

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
    stage2: bool = True                                     # cross-attention re-ranking of the best candidates
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
           is_cancelled: CancelFn | None = None) -> list[Match]:
    """Find where the sketched object occurs; see the module docstring for the contract."""
    return run_search(embedder, sketch, sources, extent, options, progress, is_cancelled).matches


def estimate(embedder, sources: Sequence, extent: Extent | None = None,
             options: SearchOptions | None = None) -> Estimate:
    """Tile count and expected time of a search, without computing anything."""
    raise NotImplementedError("engine.search.estimate is being built (issue 3)")


def run_search(embedder, sketch, sources: Sequence, extent: Extent | None = None,
               options: SearchOptions | None = None, progress: ProgressFn | None = None,
               is_cancelled: CancelFn | None = None) -> SearchResult:
    """search() with counts of computed / cached / skipped tiles (for tests, logs and benchmarks)."""
    raise NotImplementedError("engine.search.run_search is being built (issue 3)")
