"""Which checkpoint to ship, and how optimistic the shipped figure is.

Evaluates each checkpoint on the two retrieval protocols of BENCHMARKS.md (real aeroplane sketches
against UC Merced; zero-shot AID) with the same retrieval settings (stage-1 fusion, sketch views),
then measures the bias of choosing on the test queries themselves: the Aeroplane queries are split
in two halves (even and odd file order); the checkpoint chosen on one half is scored on the other.
Usage:
    .venv/bin/python -m benchmarks.checkpoint_choice CHECKPOINT ... [--fusion efficientnet_lite0_gem:0.5]
        [--sketch-views 8] [--zeroshot runs/zeroshot]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from engine.datasets import list_class_folder
from engine.embedder import Embedder
from engine.evaluation.retrieval import evaluate
from engine.model.checkpoints import load_checkpoint
from engine.model.retrieval import SKETCH_VIEW_CHOICES, Fusion

DATA = Path(os.environ.get("SKETCH_SEARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def embedder_for(path: str, fusion: Fusion | None, views: int | None) -> Embedder:
    net, card = load_checkpoint(path)
    card = dict(card)
    if fusion is not None:
        card["stage1_fusion"] = fusion.to_card()
    if views:
        card["sketch_views"] = views
    return Embedder(net, card, "cpu")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--fusion", help="override the cards' stage1_fusion: DESCRIPTOR:WEIGHT")
    p.add_argument("--sketch-views", type=int, choices=SKETCH_VIEW_CHOICES, help="override the cards' sketch_views")
    p.add_argument("--zeroshot", default="runs/zeroshot", help="output of python -m engine.evaluation.zeroshot")
    args = p.parse_args(argv)
    fusion = Fusion.parse(args.fusion) if args.fusion else None
    aero = list_class_folder(DATA / "eoc_sketches", side="sketch", classes=["Aeroplane"])
    ucm = list_class_folder(DATA / "ucm10", side="image")
    zs_q = list_class_folder(Path(args.zeroshot) / "queries", side="sketch")
    zs_g = list_class_folder(Path(args.zeroshot) / "gallery", side="image")
    halves = [np.arange(len(aero)) % 2 == h for h in (0, 1)]
    rows = []
    for path in args.checkpoints:
        emb = embedder_for(path, fusion, args.sketch_views)
        test = evaluate(emb, aero, ucm, {"Aeroplane": "airplane"})
        zs = evaluate(emb, zs_q, zs_g, {})
        rows.append((path, test, zs))
        t, z = test.summary, zs.summary
        print(f"{path}: Aeroplane->UCM mAP {t['mAP']:.3f} P@10 {t['P@10']:.3f} P@100 {t['P@100']:.3f} | "
              f"zero-shot AID mAP {z['mAP']:.3f} P@10 {z['P@10']:.3f} | halves mAP "
              f"{test.per_query_ap[halves[0]].mean():.3f} / {test.per_query_ap[halves[1]].mean():.3f}", flush=True)
    best_zs = max(rows, key=lambda r: r[2].summary["mAP"])
    print(f"chosen on zero-shot mAP: {best_zs[0]} -> Aeroplane->UCM mAP {best_zs[1].summary['mAP']:.3f} "
          f"P@10 {best_zs[1].summary['P@10']:.3f}")
    best = max(rows, key=lambda r: r[1].summary["mAP"])
    print(f"chosen on Aeroplane->UCM mAP itself: {best[0]} -> mAP {best[1].summary['mAP']:.3f} "
          f"P@10 {best[1].summary['P@10']:.3f} (optimistic)")
    for pick, score in ((0, 1), (1, 0)):
        chosen = max(rows, key=lambda r: r[1].per_query_ap[halves[pick]].mean())
        res = chosen[1]
        print(f"chosen on half {pick}: {chosen[0]} -> half {score}: mAP {res.per_query_ap[halves[score]].mean():.3f} "
              f"P@10 {res.per_query_p10[halves[score]].mean():.3f}; the best on half {score} had mAP "
              f"{max(r[1].per_query_ap[halves[score]].mean() for r in rows):.3f}")


if __name__ == "__main__":
    main()
