"""`sketch-search evaluate`: retrieval quality of a model on class-folder queries and gallery.

With --json the last line of output is one JSON object: mAP (over the whole ranked gallery), P@10,
P@100 (standard precision at K), queries, gallery, and per-class figures.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..model.retrieval import MAX_QUERY_EXPANSION
from . import UserError, require_torch


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="rank a gallery for every sketch query and report mAP, P@10, P@100")
    p.add_argument("--queries", required=True, help="sketches: DIR/<class>/* or an RSketch folder (its sketch/ side)")
    p.add_argument("--gallery", required=True, help="images: DIR/<class>/* or an RSketch folder (its image/ side)")
    p.add_argument("--map", action="append", default=[], metavar="QUERYCLASS=GALLERYCLASS",
                   help="match a query class to a differently named gallery class (repeatable)")
    p.add_argument("--query-classes", metavar="A,B", help="use only these query classes (default: every class folder)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", help="model file (default: the shipped model)")
    which.add_argument("--baseline", choices=("lite0-gap", "lite0-gap-plain"),
                       help="an untrained reference instead of a model")
    p.add_argument("--stage2", action="store_true", help="re-rank each query's top candidates with cross attention")
    p.add_argument("--stage2-top", type=int, default=100, metavar="K",
                   help="candidates re-ranked by --stage2 (default 100)")
    p.add_argument("--expansion", type=int, metavar="N",
                   help="rank again with each query moved toward its N best images, as a search does "
                        "(default: the model card's query_expansion; 0: none)")
    p.add_argument("--centering", action=argparse.BooleanOptionalAction, default=True,
                   help="the model card's sketch centering (default: on, as in search; --no-centering "
                        "measures the sketches' vectors as the model gives them)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line (last line of output)")
    p.set_defaults(handler=run)


def parse_map(entries: list[str]) -> dict[str, str]:
    out = {}
    for entry in entries:
        query, sep, gallery = entry.partition("=")
        if not sep or not query.strip() or not gallery.strip():
            raise UserError(f"--map wants QUERYCLASS=GALLERYCLASS, got {entry!r}")
        out[query.strip()] = gallery.strip()
    return out


def run(args) -> int:
    require_torch("evaluate")
    from ..datasets import list_class_folder
    from ..evaluation.retrieval import evaluate

    if args.stage2_top < 1:
        raise UserError(f"--stage2-top must be at least 1, got {args.stage2_top}")
    mapping = parse_map(args.map)
    wanted = [c.strip() for c in args.query_classes.split(",") if c.strip()] if args.query_classes else None
    queries = list_class_folder(args.queries, side="sketch", classes=wanted)
    gallery = list_class_folder(args.gallery, side="image")
    if args.baseline:
        if args.stage2:
            raise UserError("--stage2 needs a trained model's cross attention, not --baseline")
        from ..evaluation.baseline import Lite0GapEncoder
        encoder = Lite0GapEncoder(plain_sketches=args.baseline.endswith("-plain"))
        model = {"name": encoder.name}
    else:
        from ..embedder import Embedder
        encoder = Embedder.from_checkpoint(args.checkpoint, device=args.device)
        if not args.centering:
            encoder.centering = None
        model = {"name": encoder.name, "sha256": encoder.card.get("weights_sha256"), "path": encoder.card.get("path")}
    retrieval = getattr(encoder, "retrieval", None)  # the baselines have no card: no expansion
    expansion = args.expansion if args.expansion is not None else getattr(retrieval, "query_expansion", 0)
    if not 0 <= expansion <= MAX_QUERY_EXPANSION:
        raise UserError(f"--expansion must be from 0 to {MAX_QUERY_EXPANSION}, got {expansion}")
    progress = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.json else None
    result = evaluate(encoder, queries, gallery, mapping, stage2=args.stage2, stage2_top=args.stage2_top,
                      progress=progress, expansion=expansion)
    centering = getattr(encoder, "centering", None)
    summary = {**result.summary, "model": model, "sketch_centering": centering.weight if centering is not None else 0.0}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{model['name']}: mAP {summary['mAP']:.4f}  P@10 {summary['P@10']:.4f}  P@100 {summary['P@100']:.4f}"
              f"  ({summary['queries']} queries, {summary['gallery']} gallery images"
              f"{', stage 2' if args.stage2 else ''}{f', expansion {expansion}' if expansion else ''}"
              f"{f', sketch centering {centering.weight}' if centering is not None else ''})")
        for c, f in summary["per_class"].items():
            print(f"  {c} -> {f['gallery_class']}: mAP {f['mAP']:.4f}  P@10 {f['P@10']:.4f}  P@100 {f['P@100']:.4f}"
                  f"  ({f['queries']} queries)")
    return 0
