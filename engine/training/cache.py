"""The training set: (image view, synthetic or real sketch) pairs, with the frozen trunk prefix's
feature maps computed once and kept in float16 chunk files under the run folder.

Each pair's augmentation and sketch style come from its own seeded generator, so a rebuilt cache
is identical, and an interrupted build continues from its last finished chunk.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ..datasets import Item, list_class_folder
from ..model import MLAGT
from ..preprocess import INK_RGB_SUM, load_array, preprocess_image, preprocess_sketch
from .augment import augment_view
from .config import TrainConfig
from .synth import CANVAS, SketchStyle, synth_sketch
from .trunk_split import prefix_levels

log = logging.getLogger(__name__)
CHUNK = 256  # pairs per chunk file


@dataclass(frozen=True)
class PairSpec:
    image: Path
    sketch: Path | None  # None: synthesise from the image view
    label: int
    key: tuple[int, int]  # seeds this pair's randomness


@dataclass
class FeatureCache:
    sketch_levels: list[torch.Tensor]  # per level (N, C, H, W) float16
    image_levels: list[torch.Tensor]
    labels: torch.Tensor  # (N,) long
    instance: torch.Tensor  # (N,) bool: the sketch was drawn from this very image view
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def plan_pairs(cfg: TrainConfig) -> tuple[list[PairSpec], list[str]]:
    """Which images (and real sketches) the run trains on, in a reproducible order."""
    every = list_class_folder(cfg.resolved(cfg.images), side="image")
    held = {h.lower() for h in cfg.holdout}
    items = [i for i in every if i.label.lower() not in held]
    classes = sorted({i.label for i in items})
    missing = held - {i.label.lower() for i in every}
    if missing:
        raise ValueError(f"held-out classes not found among the training images: {', '.join(sorted(missing))}")
    rng = np.random.default_rng(cfg.seed)
    by_class: dict[str, list[Item]] = {c: [i for i in items if i.label == c] for c in classes}
    chosen: dict[str, list[Item]] = {}
    for c in classes:
        pool = by_class[c]
        take = rng.permutation(len(pool))[:cfg.per_class]
        chosen[c] = [pool[j] for j in sorted(take)]
    specs = []
    for ci, c in enumerate(classes):
        for j, item in enumerate(chosen[c]):
            specs += [PairSpec(item.path, None, ci, (ci * 100000 + j, v)) for v in range(cfg.views)]
    lower = {c.lower(): i for i, c in enumerate(classes)}
    for r, real in enumerate(cfg.real_sketches):
        for query_class, image_class in real.map.items():
            if image_class.lower() not in lower:
                raise ValueError(f"real sketches {query_class}: image class {image_class!r} is not a training class")
            ci = lower[image_class.lower()]
            sketches = [s for s in list_class_folder(cfg.resolved(real.dir), side="sketch", classes=[query_class])
                        if has_ink(s.path)]
            for j, sk in enumerate(sketches):
                partner = chosen[classes[ci]][j % len(chosen[classes[ci]])]
                specs.append(PairSpec(partner.path, sk.path, ci, (10_000_000 + r * 100000 + j, 0)))
    return specs, classes


def has_ink(path: Path) -> bool:
    """Whether preprocessing finds strokes in a sketch file (a few real ones are too faint); skipped ones are logged."""
    ink = (load_array(path)[:, :, :3].astype(np.int32).sum(axis=2) <= INK_RGB_SUM).any()
    if not ink:
        log.warning("skipping %s: no stroke dark enough for preprocessing", path)
    return bool(ink)


def make_pair(spec: PairSpec, seed: int, size: int, mean, std, widen: int = 1,
              style: SketchStyle = SketchStyle()) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised (sketch, image) tensors of one pair; the sketch's strokes widened as the card's
    sketch_widen will widen query sketches; synthetic sketches drawn in `style`."""
    rng = np.random.default_rng([seed, *spec.key])
    view, valid = augment_view(load_array(spec.image)[:, :, :3], CANVAS, rng)
    sketch = synth_sketch(view, rng, style, valid) if spec.sketch is None else load_array(spec.sketch)
    return preprocess_sketch(sketch, size, mean, std, widen), preprocess_image(view, size, mean, std)


def build_cache(cfg: TrainConfig, model: MLAGT, folder: Path, batch: int = 32) -> FeatureCache:
    specs, classes = plan_pairs(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    c = model.cfg
    style = cfg.style
    for start in range(0, len(specs), CHUNK):
        path = folder / f"chunk_{start // CHUNK:05d}.npz"
        if path.is_file():
            continue
        part = specs[start:start + CHUNK]
        sk_levels: list[list[np.ndarray]] = []
        im_levels: list[list[np.ndarray]] = []
        for b in range(0, len(part), batch):
            pairs = [make_pair(s, cfg.seed, c.img_size, c.mean, c.std, cfg.sketch_widen, style)
                     for s in part[b:b + batch]]
            x = torch.stack([p[0] for p in pairs] + [p[1] for p in pairs]).contiguous(memory_format=torch.channels_last)
            levels = [lv.cpu() for lv in prefix_levels(model, x.to(next(model.parameters()).device), cfg.freeze_upto)]
            n = len(pairs)
            sk_levels.append([lv[:n].half().contiguous().numpy() for lv in levels])
            im_levels.append([lv[n:].half().contiguous().numpy() for lv in levels])
        arrays = {}
        for li in range(len(sk_levels[0])):
            arrays[f"sketch{li}"] = np.concatenate([p[li] for p in sk_levels])
            arrays[f"image{li}"] = np.concatenate([p[li] for p in im_levels])
        arrays["labels"] = np.array([s.label for s in part], np.int64)
        arrays["instance"] = np.array([s.sketch is None for s in part])
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        log.info("feature cache: %d / %d pairs", min(start + CHUNK, len(specs)), len(specs))
    (folder / "classes.json").write_text(json.dumps(classes))
    return load_cache(folder, len(specs))


def load_cache(folder: Path, expected: int | None = None) -> FeatureCache:
    chunks = sorted(folder.glob("chunk_*.npz"))
    parts = [dict(np.load(p)) for p in chunks]
    levels = len([k for k in parts[0] if k.startswith("sketch")])
    cat = lambda key: torch.from_numpy(np.concatenate([p[key] for p in parts]))  # noqa: E731
    cache = FeatureCache([cat(f"sketch{i}") for i in range(levels)], [cat(f"image{i}") for i in range(levels)],
                         cat("labels"), cat("instance"), json.loads((folder / "classes.json").read_text()))
    if expected is not None and len(cache) != expected:
        raise ValueError(f"feature cache {folder} holds {len(cache)} pairs, the run plans {expected}: "
                         "delete it to rebuild")
    return cache


def sample_batch(cache: FeatureCache, classes: int, per_class: int, rng: np.random.Generator) -> torch.Tensor:
    """Indices of `per_class` pairs from each of `classes` random classes."""
    labels = cache.labels.numpy()
    present = np.unique(labels)
    pick = rng.choice(present, size=min(classes, len(present)), replace=False)
    pools = [np.flatnonzero(labels == c) for c in pick]
    idx = [rng.choice(p, size=per_class, replace=len(p) < per_class) for p in pools]
    return torch.from_numpy(np.concatenate(idx))
