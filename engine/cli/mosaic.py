"""`sketch-search mosaic build|eval`: a georeferenced mosaic of labelled images with its truth,
and the precision of search matches on it."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..search_types import SearchError, SearchOptions
from . import UserError
from .search import DEFAULTS, add_tile_size_option


def register(sub) -> None:
    p = sub.add_parser("mosaic", help="build a test mosaic from labelled images; evaluate search precision on it",
                       description="End-to-end check on real imagery with known answers.")
    msub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = msub.add_parser("build", help="mosaic GeoTIFF + truth polygons from a folder of class sub-folders",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="example:\n  sketch-search mosaic build --images ../shared/data/ucm10 "
                               "--out ucm.tif --truth ucm_truth.gpkg --per-class 10\n")
    b.add_argument("--images", required=True, metavar="DIR", help="folder with one sub-folder of images per class")
    b.add_argument("--out", required=True, metavar="PATH", help="mosaic GeoTIFF to write (.tif)")
    b.add_argument("--truth", required=True, metavar="PATH", help="truth polygons to write (.gpkg, .geojson or .shp)")
    b.add_argument("--per-class", type=int, default=10, metavar="N", help="images per class (default: %(default)s)")
    b.add_argument("--classes", nargs="+", metavar="NAME", help="only these classes (default: all sub-folders)")
    b.add_argument("--cell-px", type=int, default=256, help="cell size in pixels (default: %(default)s)")
    b.add_argument("--gsd", type=float, default=0.3, help="metres per pixel (default: %(default)s, UC Merced's)")
    b.add_argument("--crs", default="EPSG:32611", help="projected CRS (default: %(default)s)")
    b.add_argument("--seed", type=int, default=0, help="sampling and layout seed (default: %(default)s)")
    b.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    b.set_defaults(handler=run_build)
    e = msub.add_parser("eval", help="precision of the top-K matches of each sketch against the truth",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="example:\n  sketch-search mosaic eval --raster ucm.tif --truth ucm_truth.gpkg "
                               "--sketches ../shared/data/eoc_sketches/Aeroplane --class airplane --top-k 10\n")
    e.add_argument("--raster", required=True, metavar="PATH", help="the mosaic GeoTIFF")
    e.add_argument("--truth", required=True, metavar="PATH", help="its truth polygons (field 'class')")
    e.add_argument("--sketches", required=True, metavar="PATH", help="a sketch file or a folder of them")
    e.add_argument("--class", dest="cls", required=True, metavar="NAME", help="the truth class the sketches show")
    e.add_argument("--top-k", type=int, default=10, metavar="N",
                   help="matches judged per sketch (default: %(default)s)")
    e.add_argument("--min-overlap", type=float, default=0.5,
                   help="a match is correct when it overlaps a cell of the class by this share of the smaller of the "
                        "two (default: %(default)s)")
    add_tile_size_option(e)
    e.add_argument("--stage2", action=argparse.BooleanOptionalAction, default=DEFAULTS.stage2,
                   help="stage-2 re-ranking (default: as in search, %s)" % ("on" if DEFAULTS.stage2 else "off"))
    e.add_argument("--expansion", action=argparse.BooleanOptionalAction, default=DEFAULTS.expansion,
                   help="the model card's query expansion (default: as in search, %s)"
                        % ("on" if DEFAULTS.expansion else "off"))
    e.add_argument("--checkpoint", metavar="PATH", help="model file (default: the shipped model)")
    e.add_argument("--device", default="auto")
    e.add_argument("--index-dir", metavar="DIR", help="tile index folder (default: the user cache)")
    e.add_argument("--json", metavar="PATH", help="also write the per-sketch figures as JSON")
    e.set_defaults(handler=run_eval)


def run_build(args) -> int:
    from ..mosaic import MosaicSpec, build_mosaic

    spec = MosaicSpec(per_class=args.per_class, cell_px=args.cell_px, gsd=args.gsd, crs=args.crs, seed=args.seed,
                      classes=tuple(args.classes or ()))
    tif, truth = build_mosaic(args.images, args.out, args.truth, spec, overwrite=args.overwrite)
    print(f"wrote {tif} and {truth}")
    return 0


def run_eval(args) -> int:
    from ..runtime import load_embedder
    from ..mosaic_eval import evaluate, list_sketches

    opts = SearchOptions(stage2=args.stage2, expansion=args.expansion, index_dir=args.index_dir,
                         tile_sizes_m=tuple(args.tile_size))
    embedder = load_embedder(args.checkpoint, args.device)
    try:
        report = evaluate(embedder, args.raster, args.truth, list_sketches(args.sketches), args.cls, args.top_k,
                          args.min_overlap, opts)
    except SearchError as exc:
        raise UserError(str(exc)) from None
    print(report.describe())
    if args.json:
        Path(args.json).write_text(json.dumps(report.__dict__ | {"mean_precision": report.mean_precision}, indent=1))
    return 0
