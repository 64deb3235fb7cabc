"""Ranking tiles against a sketch.

Stage 1: cosine similarity of the sketch's CLS vector with every stored tile vector, one matrix
product per chunk of rows (memory stays bounded for memory-mapped arrays of any length), and
argpartition to keep the best k without sorting everything.
Stage 2: the cross-attention module scores (sketch tokens, tile tokens) pairs for the best
candidates only.
Merging: a greedy non-maximum suppression in one CRS over all scales and rasters: a hit that
overlaps a better one (IoU, or containment of the smaller in the larger) joins that match.

`stage1`, `stage2` and `merge` apply these to the layers of a search plan (engine/plan.py) and
pass hits along as `Hit`s; `distinct_best` gives the best hit of each of the first matches
(query expansion, engine/expansion.py).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import shapely

from .index.ann import entry_topk
from .index.build import tokens_for
from .index.store import EMBEDDED
from .search_types import Match, SearchOptions
from .tiling import parse_crs, reproject

# One chunk of float32 rows in memory at a time: 23,831 rows of the default model's 2816-d vectors.
CHUNK_BYTES = 256 << 20


class Hit(NamedTuple):
    """One tile's score: `layer` indexes the search's layers, `tile` that layer's grid."""
    score: float
    layer: int
    tile: int


def stage1_topk(query: np.ndarray, vectors: np.ndarray, k: int, rows: np.ndarray | None = None,
                chunk_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best k rows of `vectors` (N, D) for the L2-normalised `query` (D,), by cosine similarity.
    `rows`: restrict to these row numbers (sorted ascending reads memory-maps sequentially).
    `chunk_rows`: rows per matrix product (default: CHUNK_BYTES of float32).
    Returns (row numbers, scores), best first."""
    query = np.asarray(query, np.float32)
    chunk_rows = chunk_rows or max(1, CHUNK_BYTES // (4 * max(1, len(query))))
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


def stage1(query: np.ndarray, layers: Sequence, n: int) -> list[Hit]:
    """The n best hits over all layers by global-vector similarity."""
    hits = []
    for li, layer in enumerate(layers):
        rows = layer.tiles[layer.entry.state[layer.tiles] == EMBEDDED]
        ids, scores = entry_topk(query, layer.entry, rows, n)  # exact, or approximate + exact re-scoring when huge
        hits += [Hit(float(s), li, int(t)) for s, t in zip(scores, ids)]
    return sorted(hits, key=lambda h: -h.score)[:n]


def stage2(embedder, sketch_tokens, layers: Sequence, hits: Sequence[Hit], min_valid: float) -> list[Hit]:
    """The candidates re-scored by cross-attention on (sketch, tile) token pairs, best first."""
    rescored = []
    for li in sorted({h.layer for h in hits}):
        tiles = np.array([h.tile for h in hits if h.layer == li], np.int64)
        scores = stage2_scores(embedder, sketch_tokens, tokens_for(layers[li], tiles, embedder, min_valid))
        rescored += [Hit(float(s), li, int(t)) for s, t in zip(scores, tiles)]
    return sorted(rescored, key=lambda h: -h.score)


def _grouped(hits: Sequence[Hit], layers: Sequence, options: SearchOptions, limit: int):
    """The hits' polygons in the output CRS and their merge_hits groups (at most `limit`)."""
    out_wkt = parse_crs(options.output_crs or layers[0].source.crs_wkt).to_wkt()
    polys = np.empty(len(hits), dtype=object)
    for li in sorted({h.layer for h in hits}):
        idx = [i for i, h in enumerate(hits) if h.layer == li]
        layer = layers[li]
        geoms = layer.grid.polygons(np.array([hits[i].tile for i in idx], np.int64))
        polys[idx] = reproject(geoms, layer.source.crs_wkt, out_wkt)
    scores = np.array([h.score for h in hits], np.float32)
    return polys, out_wkt, merge_hits(polys, scores, options.merge_iou, options.merge_containment, limit=limit)


def distinct_best(hits: Sequence[Hit], layers: Sequence, options: SearchOptions, count: int) -> list[Hit]:
    """The best hit of each of the first `count` matches merging would make: different places, not
    the same place at three scales or in overlapping tiles."""
    if not hits:
        return []
    _, _, groups = _grouped(hits, layers, options, count)
    return [hits[group[0]] for group in groups]


def merge(hits: Sequence[Hit], layers: Sequence, options: SearchOptions, sources: Sequence = ()) -> list[Match]:
    """Polygons in the output CRS; overlapping hits across tiles, scales and rasters become one match.
    `sources`: the list the search was given, so each match can name its source's position."""
    if not hits:
        return []
    polys, out_wkt, groups = _grouped(hits, layers, options, options.top_k)
    # By object, not by name: two sources may share a name (the same file added twice).
    position = {id(s): i for i, s in enumerate(sources)}
    matches = []
    for rank, group in enumerate(groups, start=1):
        best = hits[group[0]]
        layer = layers[best.layer]
        matches.append(Match(polys[group[0]], out_wkt, rank, best.score, layer.source.name, layer.grid.tile_m,
                             len(group), source_index=position.get(id(layer.source), 0),
                             window=layer.grid.window(best.tile)))
    return matches
