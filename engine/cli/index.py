"""`sketch-search index build|info|clear`: the tile index ahead of time, and its upkeep."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import UserError
from .search import INDEX_DIR_HELP, ProgressBar, add_raster_options, open_inputs


def register(sub) -> None:
    p = sub.add_parser("index", help="build the tile index ahead of time, inspect or clear it",
                       description="The tile index keeps every tile's vectors (and stage-2 tokens) on disk, keyed by "
                                   "raster, tiling and model, so a search over indexed tiles computes nothing again.")
    isub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = isub.add_parser("build", help="compute and store the tiles of the given rasters (resumable)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="example:\n  sketch-search index build --raster ortho.tif --tile-size 60 120 240\n")
    b.add_argument("--tokens", action="store_true",
                   help="also store every tile's stage-2 tokens (much larger; without them a --stage2 search "
                        "computes and keeps the tokens of its candidates only)")
    b.add_argument("--dask", metavar="ADDRESS",
                   help="read and embed on a Dask cluster: a scheduler address (tcp://host:8786), or local:N to start "
                        "N local worker processes; this process commits, so the index equals a serial build's")
    add_raster_options(b)
    b.set_defaults(handler=run_build)
    i = isub.add_parser("info", help="list the index entries (raster, scale, model, tiles, size on disk)")
    i.add_argument("--index-dir", metavar="DIR", help=INDEX_DIR_HELP)
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(handler=run_info)
    c = isub.add_parser("clear", help="delete index entries (of some rasters, or all)")
    c.add_argument("--index-dir", metavar="DIR", help=INDEX_DIR_HELP)
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--raster", action="append", metavar="PATH", help="entries of this raster file (repeatable)")
    what.add_argument("--all", action="store_true", help="every entry")
    c.set_defaults(handler=run_clear)


def _root(args) -> Path:
    from ..index import default_index_dir
    return Path(args.index_dir) if args.index_dir else default_index_dir()


def run_build(args) -> int:
    from dataclasses import replace

    from ..runtime import load_embedder
    from ..index.store import TileIndexError
    from ..search import SearchError, build_index

    if args.no_index:
        raise UserError("index build stores tiles: drop --no-index")
    sources, extent, options = open_inputs(args)
    options = replace(options, stage2=args.tokens)
    if args.dask and args.tokens:
        raise UserError("a Dask build stores stage-1 vectors only: drop --tokens")
    # with --dask the workers embed (on their own device); here the model only names the index entries
    embedder = load_embedder(args.checkpoint, "cpu" if args.dask else args.device)
    bar = ProgressBar()
    try:
        if args.dask:
            from ..index.distributed import build_index_dask

            checkpoint = str(Path(args.checkpoint).resolve()) if args.checkpoint else None
            result = build_index_dask(embedder, sources, args.dask, checkpoint, args.device, extent, options,
                                      progress=bar)
        else:
            result = build_index(embedder, sources, extent, options, progress=bar)
    except (SearchError, TileIndexError) as exc:
        raise UserError(str(exc)) from None
    finally:
        bar.close()
    print(f"index ready in {_root(args)}: {result.computed} tiles computed, {result.cached} already there, "
          f"{result.skipped} skipped as nodata ({result.seconds:.1f} s)")
    return 0


def run_info(args) -> int:
    from ..index import list_entries

    root = _root(args)
    entries = list_entries(root)
    if args.json:
        print(json.dumps([{k: v for k, v in e.items() if k != "crs_wkt"} for e in entries], indent=1))
        return 0
    print(f"index folder: {root} ({len(entries)} entries)")
    for e in entries:
        if e.get("broken"):
            print(f"  {e['folder']}: {e['problem']} (remove it with `sketch-search index clear --all`)")
            continue
        key = e["key"]
        print(f"  {e.get('raster', '?')} at {key['tile_m']:g} m, overlap {key['overlap']:g}: {e['embedded']} of "
              f"{e['tiles']} tiles embedded, {e['skipped']} skipped, {e['with_tokens']} with tokens, "
              f"{e['bytes'] / 2**20:.1f} MiB; model {key['model'][:12]}; {Path(e['folder']).name}")
        for problem in e["problems"]:
            print(f"    damaged: {problem}; the next search or `index build` of this raster computes "
                  f"those tiles again (the counts above leave them out)")
    return 0


def run_clear(args) -> int:
    from ..index import remove_entries

    root = _root(args)
    if args.all:
        n = remove_entries(root)
    else:
        # entries are keyed by the resolved path at the start of the raster identity
        n = sum(remove_entries(root, str(Path(r).resolve()) + "|") for r in args.raster)
    print(f"removed {n} index entries from {root}")
    return 0
