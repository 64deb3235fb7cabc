"""The gallery protocols on partial views: each UC Merced image replaced by a random square crop.

A search tile is rarely a whole scene: it shows part of one, or (on the project's mosaic) parts of
several images with seams between them. This separates the two: crops are partial views without
seams. Used to tell whether a stage-1 option that wins on whole images and loses on the mosaic loses
to partial views or to the mosaic's seams (BENCHMARKS.md, "Ablation: drawn tiles").

    .venv/bin/python -m benchmarks.crop_gallery [--share 0.6] [--checkpoint C ...] [--expansion 3]

Prints, per checkpoint (default: the shipped model), class-mean mAP and P@10 of our validation
sketches and of the EoC aeroplane sketches against the 1,000 crops. The crops are seeded: every
checkpoint sees the same ones.
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from benchmarks.sketch_settings import PROTOCOLS, UCM, UCM_CLASSES, macro_map
from engine.datasets import list_class_folder
from engine.embedder import Embedder
from engine.embeddings import Embeddings
from engine.evaluation.retrieval import evaluate


def crops(paths, share: float, seed: int = 0) -> list[np.ndarray]:
    """A random square crop of `share` of each image's shorter side (uint8 RGB arrays)."""
    rng = np.random.default_rng(seed)
    out = []
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        side = max(1, int(min(h, w) * share))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        out.append(np.ascontiguousarray(image[y:y + side, x:x + side]))
    return out


class CroppedGallery:
    """The embedder's sketches against gallery vectors computed once."""

    def __init__(self, embedder: Embedder, gallery_vectors: np.ndarray):
        self.embedder, self.gallery_vectors = embedder, gallery_vectors

    def embed_sketches(self, sketches, with_tokens=False):
        return self.embedder.embed_sketches(sketches)

    def embed_images(self, images, with_tokens=False):
        return Embeddings(self.gallery_vectors)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--share", type=float, default=0.6, help="crop side as a share of the image's shorter side")
    p.add_argument("--checkpoint", nargs="+", default=[None], help="models to compare (default: the shipped one)")
    p.add_argument("--expansion", type=int, default=3, help="query expansion, as a search does (0: none)")
    args = p.parse_args(argv)
    if not 0 < args.share <= 1:
        p.error("--share must be in (0, 1]")
    gallery = list_class_folder(UCM)
    views = crops([g.path for g in gallery], args.share)
    for checkpoint in args.checkpoint:
        embedder = Embedder.from_checkpoint(checkpoint, "cpu")
        encoder = CroppedGallery(embedder, embedder.embed_images(views).cls)
        for name, (qdir, classes, _, mapping) in list(PROTOCOLS.items())[:2]:
            queries = list_class_folder(qdir, classes=classes)
            if not mapping:
                queries = [q for q in queries if q.label in UCM_CLASSES]
            summary = evaluate(encoder, queries, gallery, mapping, expansion=args.expansion).summary
            print(f"{checkpoint or 'shipped model'}: crops {args.share:g}, {name}: class-mean mAP "
                  f"{macro_map(summary):.3f} P@10 {summary['P@10']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
