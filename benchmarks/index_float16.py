"""Does storing stage-1 vectors as float16 (half the disk) change what a search returns?

Builds the float32 index of the demo mosaic with the shipped model, copies every entry into a
float16 index (the same rows, rounded), then searches both with every real aeroplane sketch and
compares: the top-K matches (order and polygons), their scores, the stage-1 candidate lists, and
precision@K against the truth; then times stage 1 over 200 000 memory-mapped rows of each type.
Run: python -m benchmarks.index_float16 OUT_DIR (needs the sample data; a few minutes on a CPU).

Measured (2 CPU cores, shipped model, 804 tiles, 24 sketches): 23 of 24 top-10 lists identical (in
the other two matches with equal scores to 4 decimals swapped), largest score change 3e-5,
precision@10 0.6625 either way, 45 % less disk; but stage 1 took 1.2 s instead of 0.4 s over 200 000
1536-d rows, numpy's float16 -> float32 conversion being slow. So new entries stay float32; the
index reads both (meta.json records the type)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def convert(root32: Path, root16: Path) -> None:
    """Every float32 entry of root32 as a float16 entry (same key, state and rows) in root16."""
    from engine.index.store import EMBEDDED, SKIPPED, IndexEntry, list_entries

    for item in list_entries(root32):
        src = IndexEntry.open(root32, item["key"], item["count"], item["dim"], {})
        info = {k: v for k, v in item.items() if k in ("raster", "crs_wkt", "grid")}
        dst = IndexEntry.open(root16, item["key"], item["count"], item["dim"], info, "float16")
        done = np.flatnonzero(src.state == EMBEDDED)
        with dst.writing():
            dst.commit(done, np.asarray(src.cls[done]), np.flatnonzero(src.state == SKIPPED))


def stage1_speed(out: Path, dim: int, rows: int = 200_000) -> dict:
    """Best of two stage-1 passes over memory-mapped random unit vectors, float32 and float16."""
    from engine.ranking import stage1_topk

    rng = np.random.default_rng(0)
    v = rng.standard_normal((rows, dim), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q = v[7]
    times = {}
    for dtype in (np.float32, np.float16):
        path = out / f"speed.{np.dtype(dtype).name}"
        v.astype(dtype).tofile(path)
        mapped = np.memmap(path, dtype, "r", shape=(rows, dim))
        best = []
        for _ in range(2):
            t0 = time.perf_counter()
            stage1_topk(q, mapped, 100, np.arange(rows))
            best.append(time.perf_counter() - t0)
        times[np.dtype(dtype).name] = round(min(best), 3)
        del mapped
        path.unlink()
    return times


def main(out: Path) -> dict:
    from engine.cli import main as cli
    from engine.embedder import Embedder
    from engine.mosaic_eval import evaluate, list_sketches
    from engine.raster.rasterio_source import RasterioSource
    from engine.search import SearchOptions, build_index, run_search
    from engine.index.store import list_entries

    data = Path(os.environ.get("SKETCH_SEARCH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    out.mkdir(parents=True, exist_ok=True)
    mosaic, truth = out / "ucm_mosaic.tif", out / "ucm_truth.gpkg"
    if not mosaic.exists():
        assert cli(["mosaic", "build", "--images", str(data / "ucm10"), "--out", str(mosaic), "--truth", str(truth),
                    "--per-class", "10"]) == 0
    emb = Embedder.from_checkpoint(None, "cpu")
    src = RasterioSource(mosaic)
    t0 = time.perf_counter()
    built = build_index(emb, [src], options=SearchOptions(index_dir=out / "idx32"))
    build_s = time.perf_counter() - t0
    convert(out / "idx32", out / "idx16")
    sketches = list_sketches(data / "eoc_sketches" / "Aeroplane")
    report = {"tiles": built.computed + built.cached, "vector_dim": emb.vector_dim, "build_seconds": round(build_s, 1),
              "sketches": len(sketches)}
    same_top, same_candidates, score_diff, rank_moves = 0, 0, 0.0, 0
    for sketch in sketches:
        runs = {}
        for name in ("idx32", "idx16"):
            opts = SearchOptions(index_dir=out / name, top_k=10)
            res = run_search(emb, sketch, [src], options=opts)
            assert res.computed == 0
            runs[name] = res.matches
        a, b = runs["idx32"], runs["idx16"]
        same_top += [m.geometry.wkt for m in a] == [m.geometry.wkt for m in b]
        score_diff = max(score_diff, max(abs(x.score - y.score) for x, y in zip(a, b)))
        rank_moves += sum(x.geometry.wkt != y.geometry.wkt for x, y in zip(a, b))
        # the stage-1 candidates (before merging): the 100 best tiles of each entry
        q = emb.embed_sketches([sketch]).cls[0]
        for e32, e16 in zip(list_entries(out / "idx32"), list_entries(out / "idx16")):
            v32 = np.fromfile(Path(e32["folder"]) / "cls.f32", np.float32).reshape(e32["count"], -1)
            v16 = np.fromfile(Path(e16["folder"]) / "cls.f16", np.float16).reshape(e16["count"], -1)
            s32, s16 = v32 @ q, v16.astype(np.float32) @ q
            same_candidates += list(np.argsort(-s32)[:100]) == list(np.argsort(-s16)[:100])
    p = {}
    for name in ("idx32", "idx16"):
        r = evaluate(emb, mosaic, truth, sketches, "airplane", 10, options=SearchOptions(index_dir=out / name))
        p[name] = round(float(np.mean(r.precision)), 4)
    bytes_ = {n: sum(e["bytes"] for e in list_entries(out / n)) for n in ("idx32", "idx16")}
    report["stage1_seconds_200k_rows"] = stage1_speed(out, emb.vector_dim)
    report.update({"identical_top10_lists": f"{same_top}/{len(sketches)}",
                   "matches_that_moved": rank_moves, "max_score_difference": float(f"{score_diff:.2e}"),
                   "identical_stage1_top100_per_entry": f"{same_candidates}/{len(sketches) * 3}",
                   "precision_at_10": p, "disk_bytes": bytes_})
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/float16")), indent=1))
