"""How the default card's query settings were chosen: stroke widening (`sketch_widen`), the
model's share of the fused score (`stage1_fusion.model_weight`), the share of the tiles' drawings
(`stage1_fusion.drawing_weight`, engine.model.tile_drawing), query expansion (`query_expansion`:
rank again toward each query's N best images) and sketch centering (`sketch_centering.weight`: the
share of the card's sketch mean taken off each sketch, engine.model.sketch_centering), on our own validation sketches
(benchmarks/validation_sketches, 10 UC Merced classes), never on the Earth-on-Canvas test sketches.
The other protocols are measured with the same settings and printed beside, not used to choose.

    .venv/bin/python -m benchmarks.sketch_settings [--checkpoint C] [--widen 1 3 5] [--weights 0.3 0.5 0.7]
        [--drawing-weights 0 0.5] [--expansion 0 3 5] [--centering 0 0.75] [--json]

Each gallery is embedded once (its unit-length parts kept apart: CLS, descriptor of the photo and,
when a drawing weight is asked for, descriptor of the drawing), each query set once per widening,
and the weights applied to the parts as the engine fuses them.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.datasets import list_class_folder
from engine.embedder import Embedder
from engine.embeddings import Embeddings
from engine.evaluation.retrieval import evaluate
from engine.model.checkpoints import load_checkpoint
from engine.model.retrieval import SKETCH_WIDEN_CHOICES, Fusion, RetrievalSettings
from engine.model.sketch_centering import SketchCentering
from engine.runtime import default_model_path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SKETCH_SEARCH_DATA", ROOT.parent / "shared" / "data"))
UCM = DATA / "ucm10"
ZEROSHOT = ROOT / "runs" / "zeroshot"  # python -m engine.evaluation.zeroshot configs/default.json runs/zeroshot
UCM_CLASSES = sorted(p.name for p in UCM.iterdir()) if UCM.is_dir() else []
# name -> (query folder, query classes or None, gallery folder, {query class: gallery class}); the first chooses
PROTOCOLS = {
    "validation (ours, chooses)": (ROOT / "benchmarks" / "validation_sketches", None, UCM, {}),
    "EoC Aeroplane -> UCM (test)": (DATA / "eoc_sketches", ["Aeroplane"], UCM, {"Aeroplane": "airplane"}),
    "samples -> UCM": (ROOT / "samples" / "sketches", ["airplane", "freeway", "harbor", "parkinglot"], UCM, {}),
    "zero-shot AID (synthetic)": (ZEROSHOT / "queries", None, ZEROSHOT / "gallery", {}),
    # composed after sketch centering was chosen, to check it (scripts/sample/compose_fresh_sketches.py): never chooses
    "fresh check (ours, 30)": (ROOT / "benchmarks" / "fresh_sketches", None, UCM, {}),
}


def parts(vectors: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A stage-1 vector fused at w = 0.5 -> its two unit-length parts."""
    return vectors[:, :width] * 2 ** 0.5, vectors[:, width:] * 2 ** 0.5


class Vectors:
    """An encoder over stage-1 vectors fused once from their parts, exactly as the engine fuses them
    (tiles with a drawing are not unit length, and are not made so)."""

    def __init__(self, sketch_parts: list[np.ndarray], tile_parts: list[np.ndarray], model_weight: float,
                 drawing_weight: float, descriptor: str, centering: float = 0.0, mean_parts: list | None = None):
        settings = RetrievalSettings(Fusion(descriptor, model_weight, drawing_weight))
        self.sketches = settings.fuse_sketch(sketch_parts)
        if centering:  # the card's sketch mean, fused at this model weight as the sketches are
            self.sketches = SketchCentering(centering, settings.fuse_sketch(mean_parts)).apply(self.sketches)
        self.tiles = settings.fuse(tile_parts if drawing_weight else tile_parts[:2])

    def embed_sketches(self, sketches, with_tokens=False):
        return Embeddings(self.sketches)

    def embed_images(self, images, with_tokens=False):
        return Embeddings(self.tiles)


def macro_map(summary: dict) -> float:
    """Mean of the per-class mAPs: each class counts once, however many sketches it has."""
    return float(np.mean([c["mAP"] for c in summary["per_class"].values()]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="default: the shipped model")
    p.add_argument("--widen", nargs="+", type=int, default=[1, 3, 5], choices=SKETCH_WIDEN_CHOICES)
    p.add_argument("--weights", nargs="+", type=float, default=[0.3, 0.4, 0.5, 0.6, 0.7])
    p.add_argument("--drawing-weights", nargs="+", type=float, default=[0.0],
                   help="shares of the score given to the tiles' drawings (0: not drawn)")
    p.add_argument("--expansion", nargs="+", type=int, default=[0, 3, 5],
                   help="query expansion: images each query moves toward (0: none)")
    p.add_argument("--centering", nargs="+", type=float,
                   help="shares of the card's sketch mean taken off each sketch (default: the card's; 0: none)")
    p.add_argument("--json", action="store_true", help="also print every figure as one JSON line")
    args = p.parse_args(argv)
    net, card = load_checkpoint(args.checkpoint or default_model_path())
    shipped = Embedder(net, card, "cpu")
    base, width = shipped.retrieval, net.cfg.width
    mean_parts = None  # the card's sketch mean as unit-scale parts [CLS, descriptor], to fuse at any weight
    if shipped.centering is not None and base.fusion is not None:
        w0 = base.fusion.model_weight
        mean = shipped.centering.mean[None]
        mean_parts = [mean[:, :width] / w0 ** 0.5, mean[:, width:] / (1 - w0) ** 0.5]
    centerings = args.centering if args.centering is not None else [shipped.centering.weight if mean_parts else 0.0]
    if any(centerings) and mean_parts is None:
        p.error("--centering: the card has no sketch mean (python -m engine.training.sketch_mean)")
    descriptor = base.fusion.descriptor if base.fusion else "efficientnet_lite0_gem_shared"
    galleries, rows = {}, []
    for name, (qdir, classes, gdir, mapping) in PROTOCOLS.items():
        if not (qdir.is_dir() and gdir.is_dir()):
            print(f"{name}: skipped ({qdir if not qdir.is_dir() else gdir} is missing)")
            continue
        queries, gallery = list_class_folder(qdir, classes=classes), list_class_folder(gdir)
        if mapping == {} and gdir == UCM:  # our folders are named after the gallery classes
            queries = [q for q in queries if q.label in UCM_CLASSES]
        if gdir not in galleries:
            emb = Embedder(net, replace(base, fusion=Fusion(descriptor, 0.5)).apply_to(card), "cpu")
            galleries[gdir] = list(parts(emb.embed_images([g.path for g in gallery]).cls, width))
            if any(args.drawing_weights):  # model 0, photo 0, drawing 1: the vector is [0, drawing's descriptor]
                emb = Embedder(net, replace(base, fusion=Fusion(descriptor, 0.0, 1.0)).apply_to(card), "cpu")
                galleries[gdir].append(emb.embed_images([g.path for g in gallery]).cls[:, width:])
        tile_parts = galleries[gdir]
        for widen in args.widen:
            settings = replace(base, fusion=Fusion(descriptor, 0.5), sketch_widen=widen)
            sketch_vectors = Embedder(net, settings.apply_to(card), "cpu").embed_sketches([q.path for q in queries])
            sm, sd = parts(sketch_vectors.cls, width)
            for w, e, expansion, centre in itertools.product(args.weights, args.drawing_weights, args.expansion,
                                                            centerings):
                if w + e > 1:
                    continue
                vectors = Vectors([sm, sd], tile_parts, w, e, descriptor, centre, mean_parts)
                summary = evaluate(vectors, queries, gallery, mapping, expansion=expansion).summary
                rows.append({"protocol": name, "widen": widen, "w": w, "drawing": e, "expansion": expansion,
                             "centering": centre,
                             "mAP": summary["mAP"],
                             "P@10": summary["P@10"], "class_mAP": round(macro_map(summary), 4),
                             "per_class": {c: v["mAP"] for c, v in summary["per_class"].items()}})
                print(f"{name:32s} widen {widen} w {w:.2f} drawing {e:.2f} expansion {expansion} "
                      f"centering {centre:.2f}: "
                      f"mAP {summary['mAP']:.3f} P@10 {summary['P@10']:.3f} "
                      f"class-mean mAP {rows[-1]['class_mAP']:.3f}  "
                      + " ".join(f"{c[:8]} {v:.2f}" for c, v in rows[-1]["per_class"].items()), flush=True)
    chooser = [r for r in rows if r["protocol"].startswith("validation")]
    if chooser:
        # the weights are part of every tile vector and index key: changing them makes analysts index again
        shipped = (base.fusion.model_weight, base.fusion.drawing_weight) if base.fusion else None
        for label, rows_ in (("over every setting", chooser),
                             (f"keeping the card's model_weight and drawing_weight {shipped} (indexes stay valid)",
                              [r for r in chooser if (r["w"], r["drawing"]) == shipped])):
            if rows_:
                best = max(rows_, key=lambda r: r["class_mAP"])
                print(f"best on the validation sketches {label}: sketch_widen {best['widen']}, model_weight "
                      f"{best['w']}, drawing_weight {best['drawing']}, query_expansion {best['expansion']}, "
                      f"sketch centering {best['centering']} (class-mean mAP {best['class_mAP']:.3f})")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
