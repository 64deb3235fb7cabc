"""The zero-shot protocol's data: synthetic sketch queries of a run's held-out classes, and a
gallery of other images of those classes (the sketched images are left out of the gallery, so a
query cannot simply find its own source image).

    python -m engine.evaluation.zeroshot configs/default.json runs/zeroshot  (any config: they hold out the same)

writes OUT/queries/<class>/*.png and OUT/gallery/<class>/* (symbolic links), seeded and reproducible,
ready for `sketch-search evaluate --queries OUT/queries --gallery OUT/gallery`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from ..datasets import list_class_folder
from ..preprocess import load_array
from ..training.config import TrainConfig
from ..training.synth import synth_sketch

SEED_OFFSET = 1_000_003  # keeps query sketches apart from any training seed


def build(cfg: TrainConfig, out: Path, queries_per_class: int, gallery_per_class: int) -> tuple[int, int]:
    if not cfg.holdout:
        raise ValueError(f"run {cfg.name!r} holds out no classes: the zero-shot protocol needs some")
    items = list_class_folder(cfg.resolved(cfg.images), side="image", classes=list(cfg.holdout))
    rng = np.random.default_rng(cfg.seed + SEED_OFFSET)
    n_q = n_g = 0
    for label in sorted({i.label for i in items}):
        pool = [i for i in items if i.label == label]
        order = rng.permutation(len(pool))
        if len(pool) < queries_per_class + 1:
            raise ValueError(f"class {label} has {len(pool)} images, too few for {queries_per_class} queries")
        (out / "queries" / label).mkdir(parents=True, exist_ok=True)
        (out / "gallery" / label).mkdir(parents=True, exist_ok=True)
        for j in order[:queries_per_class]:
            src = pool[j].path
            sketch = synth_sketch(load_array(src)[:, :, :3], np.random.default_rng([cfg.seed + SEED_OFFSET, int(j)]))
            Image.fromarray(sketch).save(out / "queries" / label / f"{src.stem}.png")
            n_q += 1
        for j in order[queries_per_class:queries_per_class + gallery_per_class]:
            link = out / "gallery" / label / pool[j].path.name
            if not link.exists():
                link.symlink_to(pool[j].path.resolve())
            n_g += 1
    return n_q, n_g


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="the training run's config (its holdout classes are used)")
    p.add_argument("out", help="output folder (queries/ and gallery/ are created in it)")
    p.add_argument("--queries-per-class", type=int, default=10)
    p.add_argument("--gallery-per-class", type=int, default=100)
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        p.error(f"{out} exists and is not empty")
    n_q, n_g = build(TrainConfig.load(args.config), out, args.queries_per_class, args.gallery_per_class)
    print(f"wrote {n_q} query sketches and {n_g} gallery links under {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
