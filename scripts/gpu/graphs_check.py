"""The default model's stage-1 pass alone on the GPU: tiles/s eager and replayed from CUDA graphs
(Embedder.cuda_graphs), at batch 128 and 256, and whether both give the same vectors.

    python scripts/gpu/graphs_check.py [--device cuda] [--batches 20] [--sizes 128 256] [--check 300]

Prints one JSON line. Random uint8 tiles at the model's input size, already pinned (as the tile
reader hands them over), so this is the model's ceiling for the end-to-end search."""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from engine.runtime import load_embedder


def rate(embedder, tiles: np.ndarray, batches: int) -> float:
    """Median tiles/s over `batches` calls of one batch each, after two warm-up calls."""
    prepared = embedder.prepare_batch(tiles)
    for _ in range(2):
        embedder.embed_prepared(prepared)
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        embedder.embed_prepared(prepared)  # ends with copies to the host: synchronised
        times.append(time.perf_counter() - t0)
    return len(tiles) / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", type=int, default=20, help="timed calls per batch size and path")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="batch sizes to time")
    ap.add_argument("--check", type=int, default=300, help="tiles whose vectors both paths compute")
    args = ap.parse_args()
    embedder = load_embedder(None, args.device)
    size = embedder.cfg.img_size
    rng = np.random.default_rng(0)
    out = {"model": embedder.name, "device": embedder.device_description}
    check = rng.integers(0, 256, (args.check, size, size, 3), dtype=np.uint8)  # 300: 2 batches of 128, a padded one
    eager = embedder.embed_images(check).cls
    embedder.cuda_graphs = True
    graphed = embedder.embed_images(check).cls
    out["graphs_captured"] = len(embedder._graphed.graphs)  # 0 on a CPU, or where capture failed
    out["max_abs_diff"] = float(np.abs(eager - graphed).max())
    out["min_cosine"] = float((eager * graphed).sum(1).min())
    for batch in args.sizes:
        embedder.batch_size = batch
        tiles = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        for graphs in (False, True):
            embedder.cuda_graphs = graphs
            out[f"tiles_per_s_b{batch}_{'graphs' if graphs else 'eager'}"] = round(rate(embedder, tiles, args.batches))
    if torch.cuda.is_available():
        out["max_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
