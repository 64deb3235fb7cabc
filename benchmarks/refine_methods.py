"""How the refinement method was chosen (BENCHMARKS.md, "Refining a search"): methods compared on the
stage-1 vectors of a mosaic's warm index, in memory, on the dev classes only.

The protocol is benchmarks/refine_feedback.py's (precision@10 of the sketch alone, of the new finds
after one and two rounds of marks by the truth, of search by example from single truth cells), run on
arrays instead of through the API so that many settings can be compared in minutes: every tile of
every scale as one matrix, stage 1 as one product, the engine's own merging (engine.ranking.merge_hits)
and judging (engine.mosaic_eval.is_correct). The chosen row uses engine.refine.refined_vector itself.

Methods (`--methods`, default all):
- `rocchio:a,b,c[,g]`: q = a*sketch + b*mean(liked) - c*mean(unliked), unit; minus g * the mean tile
  vector (centering), unit again (engine.refine);
- `knn:a,b,c,kp,kn`: that Rocchio score plus kp * the best similarity to a liked place minus kn * the
  best similarity to an unliked one (a nearest-example term; needs a product per example);
- `logreg:temp,lam,wb,wp,wn`: logistic regression on the liked (+1), unliked and 1000 random tiles (-1,
  weight wb), started from and pulled toward temp * sketch (L2 weight lam), 300 gradient steps;
- `lda:a,b,c,eps`: the Rocchio target whitened by the tiles' covariance (rank 64 + eps * mean
  eigenvalue), as in exemplar LDA.

    python -m benchmarks.refine_methods [--raster runs/refine/ucm40.tif --truth runs/refine/ucm40_truth.gpkg]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import shapely

from benchmarks.refine_feedback import DEV_SKETCHES, ROOT, ensure_mosaic, sketch_files

DEFAULT_METHODS = ["rocchio:1,0.75,0.25", "rocchio:1,1.5,1.0", "rocchio:1,1.5,1.0,0.75", "rocchio:1,2,1.5,0.75",
                   "knn:1,1.5,0.25,1.0,0.5", "logreg:10,0.001,0.2,1,1", "logreg:5,0.0001,0.5,2,1",
                   "lda:1,1.5,0.5,1.0"]


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class Gallery:
    """Every embedded tile of a mosaic (all scales): vectors, polygons, and the truth."""

    def __init__(self, embedder, raster: Path, truth: Path, index_dir):
        from engine.index.store import EMBEDDED
        from engine.mosaic_eval import read_truth
        from engine.raster.rasterio_source import RasterioSource
        from engine.search import SearchOptions, build_index, plan

        source = RasterioSource(str(raster))
        options = SearchOptions(index_dir=index_dir)
        build_index(embedder, [source], options=options)
        layers, _ = plan(embedder, [source], None, options)
        vecs, polys = [], []
        for layer in layers:
            rows = layer.tiles[layer.entry.state[layer.tiles] == EMBEDDED]
            vecs.append(np.asarray(layer.entry.cls[rows], np.float32))
            polys.append(layer.grid.polygons(rows))
        self.V, self.P = np.concatenate(vecs), np.concatenate(polys)
        self.area = shapely.area(self.P)
        self.tree = shapely.STRtree(self.P)
        self.background = self.V.mean(0)
        self.truth = lambda cls: read_truth(truth, cls, source.crs_wkt)

    def search(self, scores: np.ndarray, top_k: int) -> list[int]:
        from engine.ranking import merge_hits

        n = min(len(scores) - 1, max(100, 10 * top_k))
        idx = np.argpartition(-scores, n)[:n]
        idx = idx[np.argsort(-scores[idx])]
        return [int(idx[g[0]]) for g in merge_hits(self.P[idx], scores[idx], 0.3, 0.7, limit=top_k)]

    def place_vector(self, place, min_iou: float = 0.5) -> np.ndarray:
        """As engine.refine.place_vectors: tiles with IoU >= min_iou weighted by it, else the best one."""
        near = self.tree.query(place, predicate="intersects")
        inter = shapely.area(shapely.intersection(self.P[near], place))
        iou = inter / (self.area[near] + place.area - inter)
        keep = iou >= min_iou
        if not keep.any():
            keep = iou == iou.max()
        return _unit((self.V[near[keep]] * iou[keep, None]).sum(0))


def scorer(method: str, g: Gallery, rng):
    """method text -> fn(sketch or None, liked (L, D), unliked (U, D)) -> scores of every tile."""
    from engine.refine import RefineSettings, refined_vector

    name, _, args = method.partition(":")
    p = [float(v) for v in args.split(",")] if args else []
    if name == "rocchio":
        settings = RefineSettings(sketch_weight=p[0], like_weight=p[1], unlike_weight=p[2],
                                  background_weight=p[3] if len(p) > 3 else 0.0)
        return lambda s, pos, neg: g.V @ refined_vector(s, pos, neg, g.background, settings)
    if name == "knn":
        base = RefineSettings(sketch_weight=p[0], like_weight=p[1], unlike_weight=p[2], background_weight=0.0)

        def knn(s, pos, neg):
            scores = g.V @ refined_vector(s, pos, neg, None, base)
            if len(pos):
                scores = scores + p[3] * (g.V @ pos.T).max(1)
            if len(neg):
                scores = scores - p[4] * (g.V @ neg.T).max(1)
            return scores
        return knn
    if name == "logreg":
        temp, lam, wb, wp, wn = p

        def logreg(s, pos, neg):
            bg = g.V[rng.choice(len(g.V), min(len(g.V), 1000), replace=False)]
            prior = _unit(s if s is not None else pos.mean(0))
            X = np.concatenate([pos, neg, bg])
            y = np.concatenate([np.ones(len(pos)), -np.ones(len(neg)), -np.ones(len(bg))])
            w_i = np.concatenate([np.full(len(pos), wp), np.full(len(neg), wn), np.full(len(bg), wb)])
            w_i /= w_i.sum()
            w0 = temp * prior
            w, b = w0.copy(), 0.0
            for _ in range(300):
                z = y * (X @ w + b)
                grad = -y * w_i / (1 + np.exp(z))
                w -= 20.0 * (X.T @ grad + lam * (w - w0))
                b -= 20.0 * grad.sum()
            return g.V @ _unit(w)
        return logreg
    if name == "lda":
        a, b, c, eps = p
        X = g.V - g.background
        _, sv, vt = np.linalg.svd(X[rng.choice(len(X), min(len(X), 2000), replace=False)], full_matrices=False)
        lam, W = (sv ** 2 / min(len(X), 2000))[:64], vt[:64]
        shrink = eps * lam.mean()

        def lda(s, pos, neg):
            t = a * (s - g.background) if s is not None else 0
            t = t + (b * (pos.mean(0) - g.background) if len(pos) else 0)
            t = t - (c * (neg.mean(0) - g.background) if len(neg) else 0)
            proj = W @ t
            return g.V @ _unit((t - W.T @ proj) / shrink + W.T @ (proj / (lam + shrink)))
        return lda
    raise ValueError(f"unknown method {method}")


def evaluate(g: Gallery, score, sketches: dict, cells: int, k: int = 10, rounds: int = 2) -> dict:
    from engine.mosaic_eval import is_correct

    out = {}
    for cls, vectors in sketches.items():
        targets = g.truth(cls)

        def right(i, targets=targets):
            return is_correct(g.P[i], targets, 0.5)

        def on(i, places):
            return any(is_correct(g.P[i], np.array([pl], dtype=object), 0.5) for pl in places)

        def prec(ids, right=right):
            return sum(right(i) for i in ids[:k]) / k
        per_sketch = []
        for s in vectors:
            shown = g.search(g.V @ s, k)
            row, liked, unliked = [prec(shown)], [], []
            for _ in range(rounds):
                for i in shown:
                    (liked if right(i) else unliked).append(g.P[i])
                pos = np.array([g.place_vector(pl) for pl in liked]).reshape(-1, g.V.shape[1])
                neg = np.array([g.place_vector(pl) for pl in unliked]).reshape(-1, g.V.shape[1])
                found = g.search(score(s, pos, neg), k + len(liked) + len(unliked) + 10)
                shown = [i for i in found if not on(i, liked + unliked)][:k]
                row.append(prec(shown))
            per_sketch.append(row)
        examples = []
        for cell in targets[:cells]:
            found = g.search(score(None, g.place_vector(cell)[None], np.zeros((0, g.V.shape[1]))), k + 5)
            examples.append(prec([i for i in found if not on(i, [cell])]))
        out[cls] = [round(float(v), 3) for v in np.mean(per_sketch, 0)] + [round(float(np.mean(examples)), 3)]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--raster", type=Path, default=ROOT / "runs/refine/ucm40.tif")
    ap.add_argument("--truth", type=Path, default=ROOT / "runs/refine/ucm40_truth.gpkg")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--index-dir")
    ap.add_argument("--example-cells", type=int, default=20)
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    args = ap.parse_args(argv)

    from engine.runtime import load_embedder

    ensure_mosaic(args.raster, args.truth, args.per_class)
    embedder = load_embedder(None)
    g = Gallery(embedder, args.raster, args.truth, args.index_dir)
    sketches = {cls: _unit(embedder.embed_sketches(sketch_files(folders)).cls)
                for cls, folders in DEV_SKETCHES.items() if sketch_files(folders)}
    print(f"{len(g.V)} tiles; sketches: {', '.join(f'{c} {len(v)}' for c, v in sketches.items())}", file=sys.stderr)
    print("| method | mean of the dev classes: sketch alone / new finds after 1 / 2 rounds / by example | per class |")
    print("| --- | --- | --- |")
    for method in args.methods:
        t0 = time.perf_counter()
        per_class = evaluate(g, scorer(method, g, np.random.default_rng(0)), sketches, args.example_cells)
        mean = np.mean(list(per_class.values()), 0)
        print(f"| `{method}` | {' / '.join(f'{v:.3f}' for v in mean)} | "
              f"{'; '.join(f'{c} ' + ' / '.join(f'{v:.2f}' for v in r) for c, r in per_class.items())} |", flush=True)
        print(json.dumps({"method": method, "per_class": per_class, "seconds": round(time.perf_counter() - t0, 1)}),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
