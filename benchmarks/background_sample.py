"""How long the searched tiles' mean vector (query expansion and refining, engine/query_update.py)
takes to read from a large index entry with a cold page cache: 4,096 rows picked one by one at an
even stride (how it was read first) against the same number in runs of consecutive rows (how it is
read now: `spread_runs`). A memory map reads ahead, so each scattered row costs a run of pages.

    .venv/bin/python -m benchmarks.background_sample [--rows 1000000] [--dir /tmp] [--repeats 3]

Writes a float32 file of ROWS x 1536 (6 GB for a million rows) and removes it afterwards. The page
cache is dropped before each read when run as root; otherwise the figures are warm and say so.
The last line is one JSON object: seconds (median) of each way and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.query_update import spread_runs

DIM = 1536  # the stage-1 vector of the default model when this was measured (2816 since the Lite2 partner)


def write_vectors(path: Path, rows: int) -> None:
    out = np.memmap(path, np.float32, "w+", shape=(rows, DIM))
    rng = np.random.default_rng(0)
    for start in range(0, rows, 50_000):
        out[start:start + 50_000] = rng.standard_normal((min(50_000, rows - start), DIM), dtype=np.float32)
    out.flush()
    del out


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def strided(rows: np.ndarray, n: int) -> np.ndarray:
    return rows[::max(1, -(-len(rows) // n))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary vector file goes")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sample", type=int, default=4096)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "cls.f32"
        write_vectors(path, args.rows)
        rows = np.arange(args.rows, dtype=np.int64)
        ways = {"strided": strided(rows, args.sample), "runs": spread_runs(rows, args.sample)}
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        cold = True
        for _ in range(args.repeats):
            for name, picked in ways.items():
                cold = drop_page_cache() and cold
                vectors = np.memmap(path, np.float32, "r", shape=(args.rows, DIM))
                t0 = time.perf_counter()
                np.asarray(vectors[picked], np.float64).mean(0)
                seconds[name].append(time.perf_counter() - t0)
                del vectors
    med = {name: statistics.median(values) for name, values in seconds.items()}
    for name, picked in ways.items():
        print(f"{name:8s} {len(picked)} rows: {med[name]:.3f} s (median of {args.repeats}, "
              f"{'cold' if cold else 'warm: not root, page cache kept'})")
    print(json.dumps({"rows": args.rows, "sampled": {k: int(len(v)) for k, v in ways.items()}, "cold": cold,
                      "seconds": {k: round(v, 4) for k, v in med.items()},
                      "strided_over_runs": round(med["strided"] / max(med["runs"], 1e-9), 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
