"""Make a checkpoint's sketch mean (engine.model.sketch_centering) and name it in its model card.

The pool has two sources, weighted alike whatever their sizes:
- real hand-drawn sketches (`--real`: a folder of class folders, `--real-classes` to keep some);
- synthetic sketches (engine.training.synth) of `--per-class` photographs of every class the model
  was trained on (`--photos`: a folder of class folders; the card's training holdout is left out).
Many kinds of things, drawn two ways: what their vectors share is the sketching, not the things.
Never put test queries in the pool. Run it again after `engine.training.ship`, whose new card has
no sketch centering (a mean is made for one model's vectors).

    python -m engine.training.sketch_mean [--checkpoint engine/models/default.safetensors] \\
        --real '$SKETCH_SEARCH_DATA/eoc_sketches' --real-classes Runway Tenniscourt \\
        --photos '$SKETCH_SEARCH_DATA/aid' --per-class 8 --weight 0.75

writes NAME.sketch_mean.npy beside the checkpoint and the card's `sketch_centering` entry.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..datasets import list_class_folder
from ..model.checkpoints import card_path_for, parse_card
from ..model.sketch_centering import CARD_KEY, sketch_mean_path
from ..model.weight_files import sha256_of
from ..preprocess import load_array
from ..runtime import default_model_path
from .config import expand_path

SEED_OFFSET = 2_000_003  # keeps the pool's synthetic sketches apart from training and zero-shot seeds


def synthetic_sketches(photos: Path, classes: list[str], per_class: int, seed: int) -> list[np.ndarray]:
    """`per_class` synthetic sketches of each class's photographs, chosen and drawn reproducibly."""
    from .synth import synth_sketch  # OpenCV: the training extra

    items = list_class_folder(photos, side="image", classes=classes)
    rng = np.random.default_rng(seed + SEED_OFFSET)
    sketches = []
    for label in sorted({i.label for i in items}):
        pool = [i for i in items if i.label == label]
        for j in rng.permutation(len(pool))[:per_class]:
            image = load_array(pool[j].path)[:, :, :3]
            sketches.append(synth_sketch(image, np.random.default_rng([seed + SEED_OFFSET, int(j)])))
    return sketches


def sketch_mean(embedder, sources: list[list]) -> np.ndarray:
    """The mean of each source's mean sketch vector (float32). The embedder must centre nothing: the
    mean is of the vectors before centering (main loads the model without the card's entry)."""
    if embedder.centering is not None:
        raise ValueError("the sketch mean is made from uncentred vectors: load the model without its sketch_centering")
    means = [np.asarray(embedder.embed_sketches(s).cls, np.float64).mean(0) for s in sources]
    return np.mean(means, axis=0).astype(np.float32)


def write_sketch_mean(checkpoint: Path, mean: np.ndarray, weight: float, identity: str, pool: str) -> Path:
    """NAME.sketch_mean.npy and the card's entry naming it, each written whole or not at all."""
    out = sketch_mean_path(checkpoint)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, mean.astype(np.float32), allow_pickle=False)
    card_file = card_path_for(checkpoint)
    card = parse_card(card_file)
    card[CARD_KEY] = {"weight": weight, "file": out.name, "sha256": sha256_of(tmp), "identity": identity, "pool": pool}
    card_tmp = card_file.with_name(card_file.name + ".tmp")
    card_tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(out)
    card_tmp.replace(card_file)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="NAME.safetensors (default: the shipped model)")
    p.add_argument("--real", required=True, help="real sketches: a folder of class folders")
    p.add_argument("--real-classes", nargs="*", help="keep only these classes of --real")
    p.add_argument("--photos", required=True, help="photographs for the synthetic sketches: a folder of class folders")
    p.add_argument("--per-class", type=int, default=8, help="synthetic sketches per trained class (default 8)")
    p.add_argument("--weight", type=float, default=0.75, help="share of the mean taken off each sketch (0-1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not 0 <= args.weight <= 1:
        p.error("--weight is from 0 to 1")
    if args.per_class < 1:
        p.error("--per-class is at least 1")
    from ..embedder import Embedder  # torch: after the arguments are checked
    from ..model.checkpoints import load_any

    checkpoint = Path(args.checkpoint) if args.checkpoint else default_model_path()
    model, card = load_any(checkpoint)
    # the card's own centering (perhaps of older weights, or its file gone) is what this replaces
    card = {k: v for k, v in card.items() if k != CARD_KEY} | {"path": str(checkpoint)}
    embedder = Embedder(model, card, "cpu")
    training = embedder.card.get("training", {})
    trained = training.get("trained_classes")
    if not trained:
        raise SystemExit(f"{card_path_for(checkpoint)} names no trained_classes: its training data is unknown")
    real_dir, photos = expand_path(args.real), expand_path(args.photos)
    real = [i.path for i in list_class_folder(real_dir, classes=args.real_classes)]
    if not real:
        kept = f" of {', '.join(args.real_classes)}" if args.real_classes else ""
        raise SystemExit(f"no sketches in {real_dir}{kept}")
    synthetic = synthetic_sketches(photos, trained, args.per_class, args.seed)
    mean = sketch_mean(embedder, [real, synthetic])
    real_classes = sorted({Path(r).parent.name for r in real})
    pool = (f"{len(real)} real sketches ({real_dir.name}: {', '.join(real_classes)}) and {len(synthetic)} synthetic "
            f"sketches ({args.per_class} per trained class of {photos.name}, seed {args.seed}), the two weighted alike")
    out = write_sketch_mean(checkpoint, mean, args.weight, embedder.identity, pool)
    print(f"wrote {out} and the card's {CARD_KEY} (weight {args.weight}): {pool}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
