"""Retrieval metrics over a fully ranked gallery.

P@K is the standard precision at K: relevant items among the first K, divided by K (by the
gallery size when it is smaller than K). The published MLAGT code divides by min(K, relevant
items) instead; that is not what is reported here.
"""
from __future__ import annotations

import numpy as np


def average_precision(relevant: np.ndarray) -> float:
    """AP of one ranking; `relevant` is a bool array in ranked order. Needs at least one relevant item."""
    relevant = np.asarray(relevant, bool)
    hits = np.flatnonzero(relevant)
    if len(hits) == 0:
        raise ValueError("average precision is undefined without relevant items")
    return float(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))


def precision_at(relevant: np.ndarray, k: int) -> float:
    if k < 1:
        raise ValueError(f"K must be at least 1, got {k}")
    relevant = np.asarray(relevant, bool)
    k = min(k, len(relevant))
    return float(relevant[:k].sum() / k) if k else 0.0


def ranking(scores: np.ndarray) -> np.ndarray:
    """Gallery indices by decreasing score; ties keep gallery order (stable)."""
    return np.argsort(-np.asarray(scores, np.float64), kind="stable")
