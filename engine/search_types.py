"""The search API's plain data and errors: options (the engine's one source of defaults), extent,
match, estimate, result. They import nothing of the engine, so the CLI's argument parser, the
planner and the ranking can use them without importing the search itself; engine.search
re-exports them (import them from there)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path

from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from .raster.source import Window


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
    """Every option of a search with its default: the CLI and the worker read their defaults here.
    Tile sizes are chosen from the sizes of the objects analysts search for (see engine/tiling.py).
    Stage 2 is off: measured on the UC Merced mosaic with real Earth-on-Canvas aeroplane sketches
    (precision@10, default tiling), cross-attention re-ranking of the stage-1 candidates lowered
    precision with the default model's checkpoints (0.39 -> 0.32 at step 150, 0.39 -> 0.28 at step
    300; chance 0.11) and makes a warm search 10-20x slower. It stays an option (--stage2)."""
    top_k: int = 20
    tile_sizes_m: tuple[float, ...] = (60.0, 120.0, 240.0)  # tile edge in ground metres, one scale each
    overlap: float = 0.5                                    # fraction of a tile shared with its neighbour
    stage2: bool = False                                    # cross-attention re-ranking of the best candidates
    expansion: bool = True                                  # the model card's query expansion (engine/expansion.py)
    candidates: int = 100                                   # stage-1 candidates passed to stage 2 / merging
    min_valid: float = 0.5                                  # tiles with less valid (non-nodata) area are skipped
    merge_iou: float = 0.3                                  # hits overlapping more than this merge into one match
    merge_containment: float = 0.7                          # ... or when this share of the smaller one is covered
    max_tiles: int = 20000                                  # refuse to compute more new tiles than this
    output_crs: str | None = None                           # default: the first source's CRS
    index_dir: str | Path | None = None                     # default: engine.index.default_index_dir()
    use_index: bool = True                                  # False: compute everything in memory, store nothing


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
