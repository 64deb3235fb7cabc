"""How a query vector is moved: the one update behind refining a search with marked places
(engine/refine.py) and query expansion with a sketch's own best matches (engine/expansion.py).

Rocchio's update: q = a*sketch + b*mean(like) - c*mean(unlike), unit length; then the mean vector of
the searched tiles is taken off it (weight g), so what every aerial tile shares stops counting.
Vectors in, a vector out, and the searched tiles' mean vector read from a sample of index rows;
nothing here imports torch (the ONNX Runtime path uses it too).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .index.store import EMBEDDED
from .search_types import SearchError


@dataclass(frozen=True)
class RefineSettings:
    """How marks move the query (defaults chosen on the dev classes by benchmarks/refine_feedback.py)."""
    sketch_weight: float = 1.0     # a: the sketch's vector
    like_weight: float = 2.0       # b: the mean vector of the liked places
    unlike_weight: float = 1.5     # c: the mean vector of the unliked places
    background_weight: float = 0.75  # g: the mean vector of the searched tiles, taken off the unit query
    min_iou: float = 0.5           # tiles under a place: those overlapping it by this IoU (else the best one)
    mark_overlap: float = 0.5      # a match lies on a marked place when they share this much of the smaller


DEFAULT_SETTINGS = RefineSettings()


def unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 1e-12 else v.astype(np.float32)


def refined_vector(sketch: np.ndarray | None, like: np.ndarray, unlike: np.ndarray,
                   background: np.ndarray | None = None, settings: RefineSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """The query vector from a sketch (D,) or None, liked (L, D) and unliked (U, D) place vectors (all
    unit length) and the mean vector of the searched tiles (D,) or None. Unit length, so scores stay
    cosine similarities (with the refined query)."""
    if sketch is None and len(like) == 0:
        raise SearchError("nothing to search for: give a sketch or places like the ones wanted")
    q = np.zeros(like.shape[1] if sketch is None else len(sketch), np.float64)
    if sketch is not None:
        q += settings.sketch_weight * np.asarray(sketch, np.float64)
    if len(like):
        q += settings.like_weight * np.asarray(like, np.float64).mean(0)
    if len(unlike):
        q -= settings.unlike_weight * np.asarray(unlike, np.float64).mean(0)
    if not np.linalg.norm(q) > 1e-9:
        raise SearchError("the liked and unliked places cancel each other out: mark different places")
    q = unit(q).astype(np.float64)
    if background is not None and settings.background_weight:
        q -= settings.background_weight * np.asarray(background, np.float64)
    return unit(q)


# Rows read together when sampling an index: a memory map reads ahead, so scattered single rows cost a
# run of pages each (4,096 of them from a 6 GB entry: 4.7 s cold, against 0.18 s as 16 runs of 256;
# BENCHMARKS.md, "Query expansion").
RUN_ROWS = 256


def spread_runs(rows: np.ndarray, n: int) -> np.ndarray:
    """At most n of the (sorted) row numbers `rows`: all of them, or runs of consecutive entries
    spread evenly from the first to the last."""
    if len(rows) <= n:
        return rows
    run = max(1, min(RUN_ROWS, n))
    starts = np.linspace(0, len(rows) - run, max(1, n // run)).astype(np.int64)
    return np.concatenate([rows[s:s + run] for s in np.unique(starts)])


def background_vector(layers, max_rows: int = 4096) -> np.ndarray | None:
    """The mean stage-1 vector of the searched tiles: exact up to max_rows tiles, else from about
    max_rows of them in runs spread over every layer in proportion to its tiles (a full pass would
    cost as much as stage 1 itself on a large index)."""
    rows = [layer.tiles[layer.entry.state[layer.tiles] == EMBEDDED] for layer in layers]
    total = sum(len(r) for r in rows)
    if total == 0:
        return None
    acc, n = np.zeros(layers[0].entry.dim, np.float64), 0
    for layer, r in zip(layers, rows):
        picked = spread_runs(r, -(-max_rows * len(r) // total))
        if len(picked):
            acc += np.asarray(layer.entry.cls[picked], np.float64).sum(0)
            n += len(picked)
    return (acc / max(n, 1)).astype(np.float32)


def expanded_vector(sketch: np.ndarray, best: np.ndarray, background: np.ndarray | None = None,
                    settings: RefineSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """Query expansion: the sketch's vector (D,) moved toward the vectors of its own best matches
    (B, D), as if the analyst had liked them: the same update and weights as refining a search."""
    return refined_vector(sketch, best, np.zeros((0, len(sketch)), np.float32), background, settings)
