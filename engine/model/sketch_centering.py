"""Sketch centering: a sketch's stage-1 vector minus a share of the mean vector of many sketches.

Every sketch is dark strokes on white paper, and that alone moves its vector the same way, whatever was
drawn: toward tiles that look like paper and lines more than toward the drawn thing. The mean vector
of many sketches of many kinds of things (`NAME.sketch_mean.npy` beside the card, made by
`python -m engine.training.sketch_mean`) estimates that shared part; taking `weight` times it off each
sketch's vector (then making it unit length again) leaves more of what the sketch shows.

Tile vectors, and so every index, are unchanged: this is a query-side setting like sketch views.
The card entry:
    "sketch_centering": {"weight": 0.75, "file": "default.sketch_mean.npy", "sha256": "...",
                         "identity": "<the model identity the mean was made for>", "pool": "..."}
A mean is of one model's vectors: a card given another stage-1 fusion (a benchmark's variant) has no
centering, since its identity differs.

Importing this module needs no torch (the ONNX Runtime engine uses it too).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..embeddings import Embeddings
from .weight_files import CheckpointError, sha256_of

CARD_KEY = "sketch_centering"
MEAN_SUFFIX = ".sketch_mean.npy"


@dataclass(frozen=True)
class SketchCentering:
    weight: float
    mean: np.ndarray  # (D,) float32: the mean stage-1 vector of the pool's sketches, uncentred

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D) unit-length sketch vectors -> (N, D) unit-length centred vectors, float32."""
        moved = np.asarray(vectors, np.float32) - np.float32(self.weight) * self.mean
        norms = np.linalg.norm(moved, axis=1, keepdims=True)
        return (moved / np.maximum(norms, 1e-12)).astype(np.float32)


def centred(embeddings: Embeddings, centering: SketchCentering | None) -> Embeddings:
    """Sketch embeddings with their stage-1 vectors centred (tokens, for stage 2, as they were)."""
    if centering is None:
        return embeddings
    return Embeddings(centering.apply(embeddings.cls), embeddings.tokens)


def sketch_mean_path(checkpoint: Path | str) -> Path:
    """Where `engine.training.sketch_mean` writes a checkpoint's sketch mean: NAME.sketch_mean.npy."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + MEAN_SUFFIX)


def load_sketch_centering(card: Mapping[str, Any], vector_dim: int, identity: str) -> SketchCentering | None:
    """The card's sketch centering, its mean read from beside the card (card["path"]) and checked
    against the card's sha256 and the model's vector length; None when the card has none, or has
    one made for another model identity. Every failure is a CheckpointError naming the card that
    says what to do."""
    entry = card.get(CARD_KEY)
    if not entry:
        return None
    card_file = Path(card.get("path", "model")).with_suffix(".json")

    def refuse(message: str) -> CheckpointError:
        return CheckpointError(card_file, message)

    required = {"weight", "file", "sha256", "identity"}
    if not isinstance(entry, Mapping) or set(entry) - required - {"pool"} or not required <= set(entry):
        raise refuse(f"unusable {CARD_KEY} entry {entry!r}: expected the keys {', '.join(sorted(required))} "
                     f"and optionally pool")
    if entry["identity"] != identity:
        return None
    weight = entry["weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise refuse(f"unusable {CARD_KEY} weight {weight!r}: a number from 0 to 1")
    mean_file = card_file.parent / Path(str(entry["file"])).name  # beside the card, never elsewhere
    if not mean_file.is_file():
        raise refuse(f"the sketch mean {mean_file} is missing (make it with "
                     f"`python -m engine.training.sketch_mean`, or remove the card's {CARD_KEY})")
    if sha256_of(mean_file) != entry["sha256"]:
        raise refuse(f"the sketch mean {mean_file} is not the file the card names (sha256 differs): "
                     f"make it again with `python -m engine.training.sketch_mean`")
    try:
        mean = np.load(mean_file, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise refuse(f"the sketch mean {mean_file} cannot be read ({exc})") from None
    if mean.shape != (vector_dim,) or not np.isfinite(mean).all():
        raise refuse(f"the sketch mean {mean_file} has shape {mean.shape}, the model's vectors "
                     f"{vector_dim} numbers: make it again with `python -m engine.training.sketch_mean`")
    return SketchCentering(float(weight), mean.astype(np.float32))
