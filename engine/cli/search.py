"""`sketch-search search`: find a sketched object in rasters and write the matches as a GIS layer.

The options shared with `sketch-search index build` (rasters, extent, tiling, model) are defined
here once and reused there.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..search_types import Extent, SearchError, SearchOptions, check_options
from . import UserError

DEFAULTS = SearchOptions()  # the engine's defaults; every option below shows and uses these
INDEX_DIR_HELP = "tile index folder (default: $SKETCH_SEARCH_INDEX or ~/.cache/sketch-search/index)"

EXAMPLE = """example:
  sketch-search search --raster ortho.tif --sketch plane.png --top-k 20 --out planes.shp
  sketch-search search --raster a.tif --raster b.tif --sketch court.png --out courts.gpkg \\
      --bbox -120.62 37.28 -120.58 37.31 --bbox-crs EPSG:4326 --tile-size 40 80
  sketch-search search --raster ortho.tif --sketch plane.png --like right.gpkg --unlike wrong.gpkg --out planes2.gpkg
  sketch-search search --raster ortho.tif --like one_plane.geojson --out planes.gpkg     (search by example)
"""


def add_raster_options(p) -> None:
    """Rasters, extent, tiling, model and index options (shared by search and index build)."""
    g = p.add_argument_group("rasters and extent")
    g.add_argument("--raster", action="append", required=True, metavar="PATH",
                   help="a raster file GDAL reads (GeoTIFF, COG, VRT, ...); repeat for several")
    g.add_argument("--bands", type=int, nargs="+", metavar="N",
                   help="1-based band numbers for red, green, blue (or one band for grey); default: the "
                        "colour-interpretation RGB bands, else the first three")
    g.add_argument("--bbox", type=float, nargs=4, metavar=("MINX", "MINY", "MAXX", "MAXY"),
                   help="search only this box (default: the whole rasters)")
    g.add_argument("--bbox-crs", metavar="CRS", help="CRS of --bbox, e.g. EPSG:4326 (default: the first raster's)")
    g.add_argument("--within", metavar="PATH",
                   help="search only inside the polygons of this vector file (.gpkg, .shp, .geojson; its own CRS)")
    t = p.add_argument_group("tiling")
    add_tile_size_option(t)
    t.add_argument("--overlap", type=float, default=DEFAULTS.overlap,
                   help="share of a tile overlapping its neighbour, 0 to <1 (default: %(default)s)")
    t.add_argument("--min-valid", type=float, default=DEFAULTS.min_valid,
                   help="skip tiles with less valid (non-nodata) area than this share (default: %(default)s)")
    t.add_argument("--max-tiles", type=int, default=DEFAULTS.max_tiles,
                   help="refuse to compute more new tiles than this (default: %(default)s)")
    m = p.add_argument_group("model and index")
    m.add_argument("--checkpoint", metavar="PATH", help="model file (default: the shipped model)")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    m.add_argument("--index-dir", metavar="DIR", help=INDEX_DIR_HELP)
    m.add_argument("--no-index", action="store_true", help="compute everything in memory and store nothing")


def add_tile_size_option(p) -> None:
    """--tile-size M [M ...] (search, index build, mosaic eval): SearchOptions.tile_sizes_m."""
    shown = " ".join(f"{t:g}" for t in DEFAULTS.tile_sizes_m)
    p.add_argument("--tile-size", type=float, nargs="+", metavar="M", default=list(DEFAULTS.tile_sizes_m),
                   help=f"tile edge(s) in ground metres, one scale each (default: {shown})")


def register(sub) -> None:
    p = sub.add_parser("search", help="find where a sketched object occurs in rasters; write the matches as polygons",
                       description="Cut the rasters into tiles in ground units at several scales, rank the tiles "
                                   "against the sketch (stage 1: global vectors; stage 2: cross-attention "
                                   "re-ranking), merge overlapping hits and write the best matches as polygons "
                                   "with fields rank (1 = best), score (higher = better), source, scale (tile "
                                   "size in m) and merged (tile hits merged into the match).",
                       epilog=EXAMPLE, formatter_class=_formatter())
    p.add_argument("--sketch", metavar="PATH", help="the sketch: dark strokes on white, or strokes on transparency "
                                                   "(may be left out when --like is given: search by example)")
    p.add_argument("--like", action="append", metavar="FILE",
                   help="places like the ones wanted: the polygons of a vector file (its own CRS), e.g. matches "
                        "of an earlier search marked right; repeatable")
    p.add_argument("--unlike", action="append", metavar="FILE",
                   help="places not wanted (e.g. matches marked wrong): polygons of a vector file; repeatable")
    p.add_argument("--top-k", type=int, default=DEFAULTS.top_k, metavar="N",
                   help="number of matches (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="output layer: .shp, .gpkg or .geojson (by extension; GeoJSON is always WGS 84 lon/lat, "
                        "RFC 7946)")
    p.add_argument("--out-crs", metavar="CRS", help="CRS of a .shp/.gpkg output (default: the first raster's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--stage2", action=argparse.BooleanOptionalAction, default=DEFAULTS.stage2,
                   help="re-rank the best candidates with cross-attention (default: %s; measured "
                        "to lower precision with the default model)" % ("on" if DEFAULTS.stage2 else "off"))
    p.add_argument("--expansion", action=argparse.BooleanOptionalAction, default=DEFAULTS.expansion,
                   help="search a second time with the sketch moved toward its best few matches, as the model "
                        "card says (default: %s; not with --like/--unlike)" % ("on" if DEFAULTS.expansion else "off"))
    p.add_argument("--estimate", action="store_true",
                   help="only print the tile count and expected time of this search, then stop")
    p.add_argument("--candidates", type=int, default=DEFAULTS.candidates, metavar="N",
                   help="stage-1 candidates re-ranked and merged (at least 10 x top-k; default: %(default)s)")
    add_raster_options(p)
    p.set_defaults(handler=run)


def _formatter():
    return argparse.RawDescriptionHelpFormatter


def open_inputs(args):
    """Rasters, extent and options from the arguments; bad input -> UserError before any work."""
    from ..raster.rasterio_source import RasterError, RasterioSource

    sources = []
    for path in args.raster:
        try:
            sources.append(RasterioSource(path, bands=tuple(args.bands) if args.bands else None))
        except RasterError as exc:
            raise UserError(str(exc)) from None
    extent = None
    if args.bbox and args.within:
        raise UserError("give either --bbox or --within, not both")
    if args.within:
        extent = polygon_extent(args.within)
    if args.bbox:
        try:
            extent = Extent.from_bbox(*args.bbox, args.bbox_crs or sources[0].crs_wkt)
        except SearchError as exc:
            raise UserError(str(exc)) from None
    options = SearchOptions(
        top_k=getattr(args, "top_k", DEFAULTS.top_k), tile_sizes_m=tuple(args.tile_size), overlap=args.overlap,
        stage2=getattr(args, "stage2", DEFAULTS.stage2), expansion=getattr(args, "expansion", DEFAULTS.expansion),
        candidates=getattr(args, "candidates", DEFAULTS.candidates),
        min_valid=args.min_valid, max_tiles=args.max_tiles, output_crs=getattr(args, "out_crs", None),
        index_dir=args.index_dir, use_index=not args.no_index)
    check_options(options)  # before the model loads
    return sources, extent, options


def polygon_extent(path: str):
    """The union of the polygons of a vector file, as a search Extent in the file's CRS."""
    import shapely

    from .places import read_places

    polygons = read_places(path, "--within")  # the same checks and messages as --like / --unlike
    return Extent(shapely.union_all([p.geometry for p in polygons]), polygons[0].crs)


class ProgressBar:
    """A tqdm bar on a terminal; silent otherwise (logs and pipes stay clean)."""

    def __init__(self, unit: str = "tile"):
        self.bar, self.unit = None, unit
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit=self.unit, file=sys.stderr, dynamic_ncols=True)
        self.bar.total = total
        self.bar.set_description(message[:40])
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args) -> int:
    from ..runtime import load_embedder
    from ..export import check_output, write_matches
    from ..preprocess import load_array
    from ..search import run_search
    from .places import read_all

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {args.top_k}")
    if args.estimate:
        return run_estimate(args)
    out = check_output(args.out, args.overwrite)  # before any work
    like, unlike = read_all(args.like, "--like"), read_all(args.unlike, "--unlike")
    if args.sketch is None and not like:
        raise UserError("give --sketch, or --like with places like the ones wanted (search by example), or both")
    sketch = load_array(Path(args.sketch)) if args.sketch is not None else None
    sources, extent, options = open_inputs(args)
    embedder = load_embedder(args.checkpoint, args.device)
    bar = ProgressBar()
    try:
        result = run_search(embedder, sketch, sources, extent, options, progress=bar, like=like, unlike=unlike)
    except SearchError as exc:
        raise UserError(str(exc)) from None
    finally:
        bar.close()
    write_matches(out, result.matches, crs_wkt=_out_crs(sources, options),
                  overwrite=args.overwrite)
    print(f"wrote {len(result.matches)} matches to {out} ({result.computed} tiles computed, "
          f"{result.cached} from the index, {result.seconds:.1f} s)")
    return 0


def run_estimate(args) -> int:
    from ..runtime import load_embedder
    from ..search import estimate

    sources, extent, options = open_inputs(args)
    embedder = load_embedder(args.checkpoint, args.device)
    try:
        est = estimate(embedder, sources, extent, options)
    except SearchError as exc:
        raise UserError(str(exc)) from None
    print(f"{est.describe()} on {embedder.device_description}")
    for line in est.skipped_scales:
        print(f"note: {line}")
    if est.to_compute > options.max_tiles:
        print(f"note: more than --max-tiles {options.max_tiles}; the search would refuse to run")
    return 0


def _out_crs(sources, options) -> str:
    from ..tiling import parse_crs
    return parse_crs(options.output_crs or sources[0].crs_wkt).to_wkt()
