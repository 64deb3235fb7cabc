"""Search speed and memory (run by `make bench`; `--quick` for a short check).

1. Cold and warm search on a 4096 x 4096 px raster (0.3 m, default tiling): tiles per second
   cold, seconds warm (medians of several warm runs), and their ratio (target: warm >= 20x faster).
2. Peak memory (ru_maxrss of a fresh process) of a whole-raster search on 4096^2 and 16384^2 px
   rasters with the same tiling: target within 20 %.
3. Stage-1 ranking over 1 million stored tile vectors (a memory-mapped float32 file, as in the
   index): median seconds (target < 1 s).

The model: --checkpoint, else the shipped default model when installed, else a small seeded
MLAGT made here (named in the output, since speed depends on it).

The tile pipeline alone (benchmarks/pipeline_speed.py): `--pipeline-only --raster R [--json]` times
read + resample + preprocess without a model, ours against the per-tile pipeline before it; with
`--device cuda` (or cpu), a whole cold search on that device instead. With --json the last line is
one JSON object (`tiles_per_s`, `workers`, `baseline_tiles_per_s`, ...).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

UTM = "EPSG:32611"


def write_raster(path: Path, size: int, seed: int = 0) -> Path:
    """A tiled 8-bit RGB GeoTIFF with texture at several scales, written in strips (bounded memory)."""
    import rasterio
    from affine import Affine

    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.tif")
    rng = np.random.default_rng(seed)
    strip = 512
    with rasterio.open(tmp, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=UTM,
                       transform=Affine(0.3, 0, 500000, 0, -0.3, 4100000), tiled=True, blockxsize=256,
                       blockysize=256) as dst:
        x = np.arange(size, dtype=np.float32)
        for r0 in range(0, size, strip):
            y = np.arange(r0, r0 + strip, dtype=np.float32)[:, None]
            base = 128 + 60 * np.sin(x / 37.0) * np.cos(y / 53.0) + 40 * np.sin((x + y) / 211.0)
            noise = rng.integers(-30, 30, (3, strip, size), dtype=np.int16)
            data = np.clip(base[None] + noise, 0, 255).astype(np.uint8)
            dst.write(data, window=rasterio.windows.Window(0, r0, size, strip))
    os.replace(tmp, path)
    return path


def make_model(workdir: Path, checkpoint: str | None) -> tuple[str, str]:
    from engine.runtime import default_model_path

    if checkpoint:
        return checkpoint, checkpoint
    if default_model_path().is_file():
        return str(default_model_path()), f"default model ({default_model_path().name})"
    import torch

    from engine.model import MLAGT, ModelConfig
    from engine.model.checkpoints import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(name="bench-small", img_size=64, patch_size=16, width=64, depth=2, heads=2, mlp_dim=128,
                      keep_rates=(1.0, 0.75), ca_heads=2, ca_ff_dim=128)
    path = save_checkpoint(MLAGT(cfg), workdir / "bench-small.safetensors", card={"name": "bench-small"})
    return str(path), "bench-small (seeded random MLAGT: img 64, width 64, depth 2; no default model installed)"


def sketch() -> np.ndarray:
    sk = np.full((128, 128, 3), 255, np.uint8)
    sk[20:108, 58:70] = 0
    sk[50:62, 10:118] = 0
    return sk


def cold_warm(raster: Path, ckpt: str, workdir: Path, warm_runs: int) -> dict:
    from engine.embedder import Embedder
    from engine.raster.rasterio_source import RasterioSource
    from engine.search import SearchOptions, run_search

    emb = Embedder.from_checkpoint(ckpt, "cpu")
    src = RasterioSource(raster)
    opts = SearchOptions(index_dir=workdir / "index-coldwarm", max_tiles=10**6)
    emb.embed_sketches([sketch()])  # load and warm the model up outside the timing
    cold = run_search(emb, sketch(), [src], options=opts)
    warm = [run_search(emb, sketch(), [src], options=opts) for _ in range(warm_runs)]
    assert all(w.computed == 0 for w in warm)
    warm_s = statistics.median(w.seconds for w in warm)
    return {"tiles": cold.computed + cold.skipped, "cold_s": cold.seconds, "tiles_per_s": cold.computed / cold.seconds,
            "warm_s": warm_s, "ratio": cold.seconds / warm_s}


CHILD = """
import json, resource, sys
import numpy as np
from engine.embedder import Embedder
from engine.raster.rasterio_source import RasterioSource
from engine.search import SearchOptions, run_search
raster, ckpt, index = sys.argv[1:4]
sk = np.full((128, 128, 3), 255, np.uint8); sk[20:108, 58:70] = 0; sk[50:62, 10:118] = 0
emb = Embedder.from_checkpoint(ckpt, "cpu")
res = run_search(emb, sk, [RasterioSource(raster)], options=SearchOptions(
    index_dir=index, tile_sizes_m=(307.2,), overlap=0.5, max_tiles=10**6))
print(json.dumps({"tiles": res.computed + res.skipped, "seconds": res.seconds,
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_memory(raster: Path, ckpt: str, workdir: Path) -> dict:
    """A whole-raster search in a fresh process; its own peak resident memory."""
    index = workdir / f"index-mem-{raster.stem}"
    out = subprocess.run([sys.executable, "-c", CHILD, str(raster), ckpt, str(index)], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def stage1_million(workdir: Path, dim: int, repeats: int = 5) -> dict:
    from engine.ranking import stage1_topk

    n = 1_000_000
    path = workdir / f"million-{dim}.f32"
    mm = np.memmap(path, np.float32, "w+", shape=(n, dim))
    rng = np.random.default_rng(0)
    for s in range(0, n, 100_000):
        v = rng.standard_normal((min(100_000, n - s), dim), dtype=np.float32)
        mm[s:s + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    mm.flush()
    del mm
    vecs = np.memmap(path, np.float32, "r", shape=(n, dim))
    q = rng.standard_normal(dim).astype(np.float32)
    q /= np.linalg.norm(q)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows, scores = stage1_topk(q, vecs, 1000)
        times.append(time.perf_counter() - t0)
    ref = np.argsort(-(np.asarray(vecs) @ q))[:1000]
    assert np.array_equal(np.sort(rows), np.sort(ref))
    return {"vectors": n, "dim": dim, "median_s": statistics.median(times), "min_s": min(times)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="model to time (default: the shipped model, else a small seeded one)")
    ap.add_argument("--workdir", help="folder for the test rasters and indexes (default: a temporary one)")
    ap.add_argument("--quick", action="store_true", help="1024/2048 px rasters and 100k vectors: a smoke run")
    ap.add_argument("--dim", type=int,
                    help="vector size for the stage-1 test (default: the model's stage-1 vector size)")
    ap.add_argument("--parts", nargs="+", choices=("coldwarm", "memory", "stage1"),
                    default=["coldwarm", "memory", "stage1"], help="which measurements (default: all)")
    ap.add_argument("--pipeline-only", action="store_true",
                    help="time the tile pipeline (read + resample + preprocess, no model) on --raster")
    ap.add_argument("--device", help="time a whole cold search of --raster on this device (cuda, cpu, ...)")
    ap.add_argument("--raster",
                    help="raster for --pipeline-only / --device (default: a 10240^2 px test GeoTIFF in --workdir)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of ours and the baseline (medians)")
    ap.add_argument("--workers", type=int, help="reader threads (default: the usable CPUs)")
    ap.add_argument("--tile-size", type=float, nargs="+", help="scales in metres (default 60 120 240)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the per-tile baseline")
    ap.add_argument("--uncached", action="store_true",
                    help="drop the raster from the page cache while the pipelines run (as for a raster larger than "
                         "memory; Linux) and report what each reads from storage")
    ap.add_argument("--batch", type=int,
                    help="--device: the embedder's batch size (default: 128 on a GPU, 32 on a CPU)")
    ap.add_argument("--varied-batches", action="store_true",
                    help="--device: short batches at their own size on a GPU too, not padded to one shape")
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="--device cuda: the model's forward replayed from CUDA graphs (an experiment)")
    ap.add_argument("--json", action="store_true", help="print the pipeline result as one JSON line, last")
    args = ap.parse_args()
    if args.pipeline_only or args.device:
        return pipeline_main(args)
    tmp = tempfile.TemporaryDirectory(prefix="sketch-bench-") if not args.workdir else None
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt, model_name = make_model(workdir, args.checkpoint)
    small, large = (1024, 2048) if args.quick else (4096, 16384)
    print(f"model: {model_name}; CPU threads: {__import__('torch').get_num_threads()}")

    if "coldwarm" in args.parts:
        coldwarm_report(workdir, small, ckpt)
    if "memory" in args.parts:
        memory_report(workdir, small, large, ckpt)
    if "stage1" in args.parts and not args.quick:
        from engine.embedder import Embedder
        dim = args.dim or Embedder.from_checkpoint(ckpt, device="cpu").vector_dim
        s1 = stage1_million(workdir, dim)
        print(f"[stage 1] {s1['vectors']:,} x {s1['dim']} float32 vectors (memory-mapped), top 1000: median "
              f"{s1['median_s']:.3f} s, best {s1['min_s']:.3f} s "
              f"(target < 1 s: {'PASS' if s1['median_s'] < 1 else 'FAIL'})")
    if tmp:
        tmp.cleanup()
    return 0


def pipeline_main(args) -> int:
    from benchmarks import pipeline_speed as ps

    raster = args.raster
    if not raster:
        workdir = Path(args.workdir or tempfile.gettempdir()) / "sketch-bench-pipeline"
        workdir.mkdir(parents=True, exist_ok=True)
        raster = str(write_raster(workdir / "r10240.tif", 10240))
    scales = tuple(args.tile_size or ps.DEFAULT_SCALES)
    if args.device:
        result = ps.end_to_end(raster, args.checkpoint, args.device, args.rounds, args.workers, scales,
                               baseline=not args.no_baseline, batch=args.batch,
                               varied_batches=args.varied_batches, cuda_graphs=args.cuda_graphs)
    else:
        result = ps.pipeline_only(raster, args.checkpoint, args.rounds, args.workers, scales,
                                  baseline=not args.no_baseline, uncached=args.uncached)
    ps.report(result, args.json)
    return 0


def coldwarm_report(workdir: Path, small: int, ckpt: str) -> None:
    r = write_raster(workdir / f"r{small}.tif", small)
    index = workdir / "index-coldwarm"
    if index.exists():  # a cold run needs an empty index
        import shutil
        shutil.rmtree(index)
    cw = cold_warm(r, ckpt, workdir, warm_runs=5)
    print(f"[cold/warm] {small}x{small} px, default tiling (60/120/240 m, 50 % overlap): {cw['tiles']} tiles; "
          f"cold {cw['cold_s']:.1f} s = {cw['tiles_per_s']:.1f} tiles/s; warm median {cw['warm_s']:.3f} s; "
          f"warm is {cw['ratio']:.0f}x faster (target >= 20x: {'PASS' if cw['ratio'] >= 20 else 'FAIL'})")


def memory_report(workdir: Path, small: int, large: int, ckpt: str) -> None:
    import shutil
    for old in workdir.glob("index-mem-*"):
        shutil.rmtree(old)
    mem = {}
    for size in (small, large):
        mem[size] = peak_memory(write_raster(workdir / f"r{size}.tif", size), ckpt, workdir)
        print(f"[memory] {size}x{size} px, 307.2 m tiles: {mem[size]['tiles']} tiles in {mem[size]['seconds']:.1f} s, "
              f"peak RSS {mem[size]['maxrss_mib']:.0f} MiB")
    ratio = mem[large]["maxrss_mib"] / mem[small]["maxrss_mib"]
    print(f"[memory] peak ratio {large}^2 / {small}^2 = {ratio:.2f} "
          f"(target <= 1.20: {'PASS' if ratio <= 1.2 else 'FAIL'})")


if __name__ == "__main__":
    sys.exit(main())
