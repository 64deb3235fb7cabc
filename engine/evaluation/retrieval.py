"""Ranking a gallery for each query (stage 1, optionally stage 2) and scoring the rankings."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

from ..datasets import Item
from ..query_update import expanded_vector
from .metrics import average_precision, precision_at, ranking


class Encoder(Protocol):
    """What evaluation needs from a model: the Embedder API (the baseline implements it too)."""
    def embed_sketches(self, sketches, with_tokens: bool = False): ...
    def embed_images(self, images, with_tokens: bool = False): ...


def class_matcher(query_classes: list[str], gallery_classes: list[str], mapping: dict[str, str]) -> dict[str, str]:
    """Query class -> gallery class: --map entries first, otherwise the same name (case-insensitive)."""
    by_lower = {g.lower(): g for g in gallery_classes}
    lowered_map = {k.lower(): v for k, v in mapping.items()}
    unknown = set(lowered_map) - {q.lower() for q in query_classes}
    if unknown:
        raise ValueError(f"--map names query classes that are not among the queries: {', '.join(sorted(unknown))}")
    out = {}
    for q in query_classes:
        target = lowered_map.get(q.lower(), q)
        if target.lower() not in by_lower:
            raise ValueError(f"query class {q!r} matches no gallery class (give --map {q}=GALLERYCLASS)")
        out[q] = by_lower[target.lower()]
    return out


def rerank_stage2(order: np.ndarray, pair_scores: Callable[[np.ndarray], np.ndarray], top: int) -> np.ndarray:
    """Re-order the first `top` entries of a stage-1 ranking by their stage-2 scores; the rest stay."""
    head = order[:top]
    scores = pair_scores(head)
    return np.concatenate([head[ranking(scores)], order[top:]])


@dataclass
class Result:
    per_query_ap: np.ndarray
    per_query_p10: np.ndarray
    per_query_p100: np.ndarray
    summary: dict


def evaluate(encoder: Encoder, queries: list[Item], gallery: list[Item], mapping: dict[str, str],
             stage2: bool = False, stage2_top: int = 100, gallery_cls: np.ndarray | None = None,
             progress: Callable[[str], None] | None = None, expansion: int = 0) -> Result:
    """Rank the whole gallery for every query and compute mAP, P@10, P@100 overall and per class.
    `expansion`: rank again with each query moved toward its best `expansion` gallery images, as a
    search does with the card's query_expansion (engine/expansion.py; the gallery is the background)."""
    match = class_matcher(sorted({q.label for q in queries}), sorted({g.label for g in gallery}), mapping)
    gallery_labels = np.array([g.label for g in gallery])
    say = progress or (lambda msg: None)
    say(f"embedding {len(queries)} queries")
    q_emb = encoder.embed_sketches([q.path for q in queries], with_tokens=stage2)
    g_tokens = None
    if gallery_cls is None or stage2:
        say(f"embedding {len(gallery)} gallery images")
        g_emb = encoder.embed_images([g.path for g in gallery], with_tokens=stage2)
        gallery_cls, g_tokens = g_emb.cls, g_emb.tokens
    scores = q_emb.cls @ gallery_cls.T
    background = gallery_cls.mean(0) if expansion else None
    aps, p10s, p100s, tops = [], [], [], []
    for qi, query in enumerate(queries):
        order = ranking(scores[qi])
        if expansion:
            order = ranking(gallery_cls @ expanded_vector(q_emb.cls[qi], gallery_cls[order[:expansion]], background))
        if stage2:
            pair = lambda idx: encoder.pair_scores(q_emb.tokens[qi], g_tokens[torch.from_numpy(idx)])  # noqa: E731
            order = rerank_stage2(order, pair, stage2_top)
        relevant = gallery_labels[order] == match[query.label]
        aps.append(average_precision(relevant))
        p10s.append(precision_at(relevant, 10))
        p100s.append(precision_at(relevant, 100))
        tops.append(Counter(gallery_labels[order[:10]].tolist()))
    aps, p10s, p100s = map(np.array, (aps, p10s, p100s))
    per_class = {}
    q_labels = np.array([q.label for q in queries])
    for c in sorted(match):
        sel = q_labels == c
        top10 = sum((tops[i] for i in np.flatnonzero(sel)), Counter())
        per_class[c] = {"gallery_class": match[c], "queries": int(sel.sum()),
                        "relevant": int((gallery_labels == match[c]).sum()),
                        "mAP": round(float(aps[sel].mean()), 4), "P@10": round(float(p10s[sel].mean()), 4),
                        "P@100": round(float(p100s[sel].mean()), 4),
                        "top10_classes": dict(top10.most_common())}
    summary = {"mAP": round(float(aps.mean()), 4), "P@10": round(float(p10s.mean()), 4),
               "P@100": round(float(p100s.mean()), 4), "queries": len(queries), "gallery": len(gallery),
               "stage2": stage2, "expansion": expansion, "per_class": per_class}
    if stage2:
        summary["stage2_top"] = stage2_top
    return Result(aps, p10s, p100s, summary)
