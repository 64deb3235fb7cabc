"""Ranking tiles against a sketch.

Stage 1: cosine similarity of the sketch's CLS vector with every stored tile vector, one matrix
product per chunk of rows (memory stays bounded for memory-mapped arrays of any length), and
argpartition to keep the best k without sorting everything.
Stage 2: the cross-attention module scores (sketch tokens, tile tokens) pairs for the best
candidates only.
Merging: a greedy non-maximum suppression in one CRS over all scales and rasters: a hit that
overlaps a better one (IoU, or containment of the smaller in the larger) joins that match.
"""
from __future__ import annotations

import numpy as np
import shapely

CHUNK_ROWS = 1 << 17  # 131072 rows x 512 dims x 4 B = 256 MiB at most per chunk


def stage1_topk(query: np.ndarray, vectors: np.ndarray, k: int, rows: np.ndarray | None = None,
                chunk_rows: int = CHUNK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Best k rows of `vectors` (N, D) for the L2-normalised `query` (D,), by cosine similarity.
    `rows`: restrict to these row numbers (sorted ascending reads memory-maps sequentially).
    Returns (row numbers, scores), best first."""
    query = np.asarray(query, np.float32)
    total = len(vectors) if rows is None else len(rows)
    best_rows, best_scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
    if k <= 0 or total == 0:
        return best_rows, best_scores
    for start in range(0, total, chunk_rows):
        if rows is None:
            ids = np.arange(start, min(start + chunk_rows, total), dtype=np.int64)
            block = vectors[start:start + chunk_rows]
        else:
            ids = np.asarray(rows[start:start + chunk_rows], np.int64)
            block = vectors[ids]
        scores = np.asarray(block, np.float32) @ query
        if len(scores) > k:
            keep = np.argpartition(-scores, k - 1)[:k]
            ids, scores = ids[keep], scores[keep]
        best_rows = np.concatenate([best_rows, ids])
        best_scores = np.concatenate([best_scores, scores])
        if len(best_scores) > k:
            keep = np.argpartition(-best_scores, k - 1)[:k]
            best_rows, best_scores = best_rows[keep], best_scores[keep]
    order = np.argsort(-best_scores, kind="stable")
    return best_rows[order], best_scores[order]


def stage2_scores(embedder, sketch_tokens, tile_tokens) -> np.ndarray:
    """Cross-attention scores of one sketch's tokens (N, D) against K tiles' tokens (K, N, D)
    (torch tensors or arrays). Stage 2 runs on the PyTorch path only, so torch is imported here."""
    import torch

    if not isinstance(tile_tokens, torch.Tensor):
        tile_tokens = torch.from_numpy(np.asarray(tile_tokens, np.float32))
    return embedder.pair_scores(sketch_tokens.float(), tile_tokens.float())


def merge_hits(polygons: np.ndarray, scores: np.ndarray, iou: float = 0.3, containment: float = 0.7,
               limit: int | None = None) -> list[list[int]]:
    """Greedy non-maximum suppression. Returns groups of hit indices, best group first; each group's
    first index is its best hit. A hit joins a better kept hit when their IoU exceeds `iou` or the
    smaller polygon lies more than `containment` inside the larger. Stops after `limit` groups."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    polygons = np.asarray(polygons, dtype=object)
    areas = shapely.area(polygons)
    tree = shapely.STRtree(polygons)
    assigned = np.full(len(polygons), -1, np.int64)
    groups: list[list[int]] = []
    for i in order:
        if assigned[i] >= 0:
            continue
        if limit is not None and len(groups) >= limit:
            break
        g = len(groups)
        groups.append([int(i)])
        assigned[i] = g
        near = tree.query(polygons[i], predicate="intersects")
        near = near[assigned[near] < 0]
        if len(near) == 0:
            continue
        inter = shapely.area(shapely.intersection(polygons[near], polygons[i]))
        union = areas[near] + areas[i] - inter
        smaller = np.minimum(areas[near], areas[i])
        joins = (inter / np.maximum(union, 1e-12) > iou) | (inter / np.maximum(smaller, 1e-12) > containment)
        for j in near[joins]:
            assigned[j] = g
            groups[g].append(int(j))
    # members of later groups may have been claimed in score order; keep members sorted by score
    return [sorted(grp, key=lambda j: -scores[j]) for grp in groups]
