"""Probe: fuse a model's CLS vector with its card's stage-1 fusion partner (the untrained
ImageNet EfficientNet-Lite0 descriptor), cos = w * cos_model + (1 - w) * cos_descriptor, and report
retrieval figures for several w. Sketch views are as the card sets them. This is how the shipped
card's `stage1_fusion` weight was chosen (on the zero-shot protocol). Usage:
    .venv/bin/python -m benchmarks.fusion_probe --queries DIR --gallery DIR [--query-classes A] [--map Q=G]
        [--checkpoint PATH] [--descriptor efficientnet_lite0_gap|efficientnet_lite0_gem] [--sketch-views 1|4|8]
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from engine.datasets import list_class_folder
from engine.embedder import Embedder
from engine.embeddings import Embeddings
from engine.evaluation.retrieval import evaluate
from engine.model.checkpoints import load_checkpoint
from engine.model.retrieval import FUSION_DESCRIPTORS, SKETCH_VIEW_CHOICES, Fusion, RetrievalSettings, fuse
from engine.runtime import default_model_path


class Precomputed:
    """An encoder over vectors computed once: the model's and the descriptor's parts fused at w."""

    def __init__(self, model: tuple[np.ndarray, np.ndarray], descriptor: tuple[np.ndarray, np.ndarray], w: float):
        self.sketches, self.images = fuse(model[0], descriptor[0], w), fuse(model[1], descriptor[1], w)

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
    p.add_argument("--checkpoint", help="default: the shipped model")
    p.add_argument("--descriptor", choices=list(FUSION_DESCRIPTORS), help="fusion partner (default: the card's)")
    p.add_argument("--sketch-views", type=int, choices=SKETCH_VIEW_CHOICES, help="default: the card's")
    args = p.parse_args(argv)
    queries = list_class_folder(args.queries, classes=args.query_classes)
    gallery = list_class_folder(args.gallery)
    mapping = dict(m.split("=", 1) for m in args.map)
    net, card = load_checkpoint(args.checkpoint or default_model_path())
    settings = RetrievalSettings.from_card(card)
    descriptor = args.descriptor or (settings.fusion.descriptor if settings.fusion else "efficientnet_lite0_gem")
    views = args.sketch_views or settings.sketch_views
    # One pass per input: fused at w = 0.5, each part is unit length times sqrt(0.5), so the two halves
    # are the CLS vector and the descriptor, each with the same sketch views (and the card's widening).
    fused_card = replace(settings, fusion=Fusion(descriptor, 0.5), sketch_views=views).apply_to(card)
    fused = Embedder(net, fused_card, "cpu")
    width = net.cfg.width
    split = lambda v: (v[:, :width] * 2 ** 0.5, v[:, width:] * 2 ** 0.5)  # noqa: E731
    (ms, bs), (mi, bi) = (split(fused.embed_sketches([q.path for q in queries]).cls),
                          split(fused.embed_images([g.path for g in gallery]).cls))
    m, b = (ms, mi), (bs, bi)
    print(f"descriptor {descriptor}, sketch views {views}")
    for w in args.weights:
        s = evaluate(Precomputed(m, b, w), queries, gallery, mapping).summary
        print(f"w_model={w:.1f}  mAP {s['mAP']:.3f}  P@10 {s['P@10']:.3f}  P@100 {s['P@100']:.3f}")


if __name__ == "__main__":
    main()
