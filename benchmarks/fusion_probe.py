"""Probe: fuse the default model's stage-1 vector with the untrained
ImageNet EfficientNet-Lite0 GAP feature, cos = w * cos_model + (1 - w) * cos_gap, and report
retrieval figures for several w. This is how the shipped card's `stage1_fusion` weight was chosen
(on the zero-shot protocol). Usage:
    .venv/bin/python -m benchmarks.fusion_probe --queries DIR --gallery DIR [--query-classes A] [--map Q=G]
"""
from __future__ import annotations

import argparse

import numpy as np

from engine.embedder import Embedder, Embeddings, default_checkpoint
from engine.evaluation.baseline import Lite0GapEncoder
from engine.evaluation.folders import list_class_folder
from engine.evaluation.retrieval import evaluate
from engine.model.checkpoints import load_checkpoint


class Precomputed:
    """An encoder over vectors computed once: [sqrt(w) * model, sqrt(1 - w) * gap], renormalised."""

    def __init__(self, model: tuple[np.ndarray, np.ndarray], gap: tuple[np.ndarray, np.ndarray], w: float):
        fuse = lambda a, b: np.concatenate([np.sqrt(w) * a, np.sqrt(1 - w) * b], 1)  # noqa: E731
        self.sketches, self.images = fuse(model[0], gap[0]), fuse(model[1], gap[1])

    def embed_sketches(self, sketches, with_tokens=False):
        return Embeddings(self.sketches / np.linalg.norm(self.sketches, axis=1, keepdims=True))

    def embed_images(self, images, with_tokens=False):
        return Embeddings(self.images / np.linalg.norm(self.images, axis=1, keepdims=True))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", required=True)
    p.add_argument("--gallery", required=True)
    p.add_argument("--query-classes", nargs="*")
    p.add_argument("--map", nargs="*", default=[], help="QUERYCLASS=GALLERYCLASS")
    p.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.3, 0.5, 0.7, 1.0])
    args = p.parse_args(argv)
    queries = list_class_folder(args.queries, classes=args.query_classes)
    gallery = list_class_folder(args.gallery)
    mapping = dict(m.split("=", 1) for m in args.map)
    # the default model's CLS vector alone: drop the card's own stage1_fusion, which this probe varies
    net, card = load_checkpoint(default_checkpoint())
    model = Embedder(net, {k: v for k, v in card.items() if k != "stage1_fusion"}, "cpu")
    gap = Lite0GapEncoder()
    q_paths, g_paths = [q.path for q in queries], [g.path for g in gallery]
    m = (model.embed_sketches(q_paths).cls, model.embed_images(g_paths).cls)
    b = (gap.embed_sketches(q_paths).cls, gap.embed_images(g_paths).cls)
    for w in args.weights:
        s = evaluate(Precomputed(m, b, w), queries, gallery, mapping).summary
        print(f"w_model={w:.1f}  mAP {s['mAP']:.3f}  P@10 {s['P@10']:.3f}  P@100 {s['P@100']:.3f}")


if __name__ == "__main__":
    main()
