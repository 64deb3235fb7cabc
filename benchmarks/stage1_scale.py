"""Stage 1 over very many tiles: the approximate index of engine/index/ann.py against exact search.

    python -m benchmarks.stage1_scale --vectors 10000000 [--dim 2816] [--queries 20] [--json]

prints, as its last line, one JSON object with `vectors`, `seconds_per_query` (median, index in
memory as in the engine's worker: candidates from the ANN index, re-scored exactly) and
`recall_at_100` (mean share of the exact top 100 found), plus build time and sizes.

Synthetic vectors, because 10^7 float32 vectors of 2816-d are 113 GB (float16: 56 GB), more than
this machine's 20 GB of disk. They are shaped like real tile vectors: the principal-axis spectrum
(variance per axis, and the length of the mean vector) of 1,608 real UC Merced tile vectors of the
default model (the demo and sample mosaics) is stored in benchmarks/tile_vector_spectrum.npz
(`--measure-spectrum INDEX_DIR` makes it from any index), and the synthetic set follows it on random
axes: x_i = normalise(C[k_i] + G z_i), 1,000 vectors per cluster, centres C drawn with 70 % of the
spectrum's variance around the mean vector, the within-cluster part G z_i (30 %) through a fixed map
G of a 128-d latent z_i stored as float16 (so a row's exact vector is computed from 256 bytes
instead of read from 11 KB). A query is a centre, its own variation and noise of the same spectrum.
Exact search over all rows is computed from the same representation (scores = C[k] . q + z . (G^T
q), divided by the norms).
Real indexes differ: measure recall on one before trusting these figures for it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

LATENT = 128
PER_CLUSTER = 1000
CHUNK = 1 << 18


SPECTRUM_FILE = Path(__file__).with_name("tile_vector_spectrum.npz")
BETWEEN, WITHIN, QUERY_NOISE = 0.7, 0.3, 2.0  # shares of the spectrum's variance


def measure_spectrum(index_dir: str, out: Path = SPECTRUM_FILE) -> dict:
    """Variance per principal axis (largest first, summing to 1), the mean vector's squared length
    and the total variance of the stage-1 vectors stored in an index folder."""
    from engine.index import list_entries

    rows = []
    for e in list_entries(index_dir, check=False):
        if e.get("broken"):
            continue
        state = np.load(Path(e["folder"]) / "commit.npz")["state"]
        cls = np.fromfile(Path(e["folder"]) / "cls.f32", np.float32).reshape(e["count"], e["dim"])
        rows.append(cls[state == 1])
    x = np.concatenate(rows).astype(np.float64)
    mean = x.mean(0)
    var = np.linalg.svd(x - mean, compute_uv=False) ** 2 / len(x)
    var = np.pad(var, (0, max(0, x.shape[1] - len(var))))
    result = {"share": var / var.sum(), "mean_norm2": float(mean @ mean), "total_var": float(var.sum()),
              "vectors": len(x)}
    np.savez(out, **result)
    return result


class SyntheticVectors:
    """N unit vectors of `dim`, stored as (cluster, float16 latent) per row in `folder`, shaped by
    the spectrum of real tile vectors (SPECTRUM_FILE)."""

    def __init__(self, folder: Path, n: int, dim: int, seed: int = 0):
        self.n, self.dim = n, dim
        rng = np.random.default_rng(seed)
        spec = np.load(SPECTRUM_FILE)
        share = np.asarray(spec["share"], np.float64)
        share = np.interp(np.linspace(0, len(share) - 1, dim), np.arange(len(share)), share)
        var = share / share.sum() * float(spec["total_var"])          # variance per principal axis
        axes = np.linalg.qr(rng.standard_normal((dim, dim)))[0]       # random principal axes
        mean = axes[:, -1] * np.sqrt(float(spec["mean_norm2"]))        # the common part of all vectors
        self.scale_axes = (axes * np.sqrt(var)).astype(np.float32)    # unit normal -> that spectrum
        k = max(16, n // PER_CLUSTER)
        self.centres = (mean + np.sqrt(BETWEEN) * rng.standard_normal((k, dim)) @ self.scale_axes.T).astype(np.float32)
        mix = rng.standard_normal((dim, LATENT)) / np.sqrt(LATENT)    # E|G z|^2 = WITHIN x total variance
        self.g = (np.sqrt(WITHIN) * self.scale_axes @ mix).astype(np.float32)
        tag = f"{n}-{dim}-{seed}-spectrum"
        paths = [folder / f"synthetic-{tag}.{s}" for s in ("cluster", "latent", "norm")]
        if not all(p.exists() for p in paths):
            self._write(paths, k, rng)
        self.cluster = np.memmap(paths[0], np.int32, "r", shape=(n,))
        self.latent = np.memmap(paths[1], np.float16, "r", shape=(n, LATENT))
        self.norm = np.memmap(paths[2], np.float32, "r", shape=(n,))

    def _write(self, paths, k, rng) -> None:
        tmp = [p.with_name(p.name + ".tmp") for p in paths]
        cluster = np.memmap(tmp[0], np.int32, "w+", shape=(self.n,))
        latent = np.memmap(tmp[1], np.float16, "w+", shape=(self.n, LATENT))
        norm = np.memmap(tmp[2], np.float32, "w+", shape=(self.n,))
        for s in range(0, self.n, CHUNK):
            m = min(CHUNK, self.n - s)
            cluster[s:s + m] = rng.integers(0, k, m)
            latent[s:s + m] = rng.standard_normal((m, LATENT), dtype=np.float32)
            raw = self.centres[cluster[s:s + m]] + latent[s:s + m].astype(np.float32) @ self.g.T
            norm[s:s + m] = np.linalg.norm(raw, axis=1)
        for arr in (cluster, latent, norm):
            arr.flush()
        del cluster, latent, norm
        for a, b in zip(tmp, paths):
            a.replace(b)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The exact unit vectors of rows `ids` (float32, (len, dim))."""
        ids = np.asarray(ids, np.int64)
        raw = self.centres[self.cluster[ids]] + np.asarray(self.latent[ids], np.float32) @ self.g.T
        return raw / self.norm[ids, None]

    def exact_topk(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Exact best k rows per query (Q, k), over all N rows."""
        gq = queries @ self.g             # (Q, LATENT)
        cq = self.centres @ queries.T     # (K, Q)
        best_ids = np.zeros((len(queries), 0), np.int64)
        best = np.zeros((len(queries), 0), np.float32)
        for s in range(0, self.n, CHUNK):
            sl = slice(s, min(s + CHUNK, self.n))
            scores = (cq[self.cluster[sl]] + np.asarray(self.latent[sl], np.float32) @ gq.T) / self.norm[sl, None]
            ids = np.broadcast_to(np.arange(sl.start, sl.stop), scores.T.shape)
            best = np.concatenate([best, scores.T], axis=1)
            best_ids = np.concatenate([best_ids, ids], axis=1)
            keep = np.argpartition(-best, k - 1, axis=1)[:, :k]
            best, best_ids = np.take_along_axis(best, keep, 1), np.take_along_axis(best_ids, keep, 1)
        order = np.argsort(-best, axis=1)
        return np.take_along_axis(best_ids, order, 1)

    def queries(self, q: int, seed: int = 1) -> np.ndarray:
        rng = np.random.default_rng(seed)
        raw = (self.centres[rng.integers(0, len(self.centres), q)]
               + rng.standard_normal((q, LATENT), dtype=np.float32) @ self.g.T
               + np.sqrt(QUERY_NOISE) * rng.standard_normal((q, self.dim), dtype=np.float32) @ self.scale_axes.T)
        return (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)


def run(n: int, dim: int, n_queries: int, workdir: Path, k: int = 100) -> dict:
    from engine.index import ann

    t0 = time.perf_counter()
    data = SyntheticVectors(workdir, n, dim)
    made_s = time.perf_counter() - t0
    index_path = workdir / f"ann-{n}-{dim}-spectrum.faiss"
    ids = np.arange(n, dtype=np.int64)
    t0 = time.perf_counter()
    if index_path.exists():
        import faiss
        index = faiss.read_index(str(index_path))
        build_s = None
    else:
        index = ann.build(data.rows, ids, dim)
        build_s = time.perf_counter() - t0
        import faiss
        faiss.write_index(index, str(index_path) + ".tmp")
        Path(str(index_path) + ".tmp").replace(index_path)
    handle = ann.AnnIndex(index, np.ones(n, bool))
    queries = data.queries(n_queries)
    t0 = time.perf_counter()
    truth = data.exact_topk(queries, k)
    exact_s = (time.perf_counter() - t0) / n_queries
    times, recalls = [], []
    no_rest = lambda rows, m: (np.zeros(0, np.int64), np.zeros(0, np.float32))  # noqa: E731
    ann.topk(queries[0], handle, data.rows, ids, k, no_rest)  # warm-up
    for q, want in zip(queries, truth):
        t0 = time.perf_counter()
        got, _ = ann.topk(q, handle, data.rows, ids, k, no_rest)
        times.append(time.perf_counter() - t0)
        recalls.append(len(np.intersect1d(got, want)) / k)
    sweep = []  # other settings, for the record: lists probed, candidates re-scored per hit
    default = (handle.nprobe, ann.CANDIDATES_PER_HIT)
    for share, per_hit in ((1 / 8, default[1]), (1 / 2, default[1]), (1 / 4, 10), (1 / 4, 20)):
        handle.nprobe, ann.CANDIDATES_PER_HIT = max(1, round(handle.nlist * share)), per_hit
        t0 = time.perf_counter()
        got = [ann.topk(q, handle, data.rows, ids, k, no_rest)[0] for q in queries]
        sweep.append({"nprobe": handle.nprobe, "candidates": max(per_hit * k, ann.MIN_CANDIDATES),
                      "seconds_per_query": (time.perf_counter() - t0) / n_queries,
                      "recall_at_100": float(np.mean([len(np.intersect1d(g, w)) / k for g, w in zip(got, truth)]))})
    handle.nprobe, ann.CANDIDATES_PER_HIT = default
    import faiss
    return {"vectors": n, "dim": dim, "queries": n_queries, "seconds_per_query": statistics.median(times),
            "max_seconds_per_query": max(times), "recall_at_100": float(np.mean(recalls)),
            "min_recall_at_100": float(np.min(recalls)), "factory": ann.factory_for(n, dim),
            "nprobe": handle.nprobe, "candidates": max(ann.CANDIDATES_PER_HIT * k, ann.MIN_CANDIDATES),
            "build_s": build_s, "make_vectors_s": made_s, "exact_from_latent_s_per_query": exact_s,
            "index_bytes": index_path.stat().st_size, "threads": faiss.omp_get_max_threads(), "sweep": sweep}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=2816, help="vector size (the default model's: 2816)")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--workdir",
                    help="folder for the vectors and the index (kept for reruns; default: a temporary one)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--measure-spectrum", metavar="INDEX_DIR",
                    help=f"write the spectrum of the vectors of an index to {SPECTRUM_FILE.name}, then stop")
    args = ap.parse_args()
    if args.measure_spectrum:
        r = measure_spectrum(args.measure_spectrum)
        top = np.cumsum(r["share"])
        print(f"{r['vectors']} vectors: mean vector length^2 {r['mean_norm2']:.3f}, variance {r['total_var']:.3f}; "
              f"top 64/256/512 axes hold {top[63]:.2f}/{top[255]:.2f}/{top[511]:.2f} of it -> {SPECTRUM_FILE}")
        return 0
    tmp = tempfile.TemporaryDirectory(prefix="sketch-stage1-") if not args.workdir else None
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    r = run(args.vectors, args.dim, args.queries, workdir)
    print(f"[stage 1] {r['vectors']:,} x {r['dim']} vectors, {r['factory']} (nprobe {r['nprobe']}, "
          f"{r['candidates']} candidates re-scored exactly): median {r['seconds_per_query']:.3f} s per query, "
          f"recall@100 {r['recall_at_100']:.3f} (min {r['min_recall_at_100']:.2f}) against exact search; "
          f"index {r['index_bytes'] / 2**20:.0f} MiB" + (f", built in {r['build_s']:.0f} s" if r["build_s"] else ""))
    if args.json:
        print(json.dumps(r))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
