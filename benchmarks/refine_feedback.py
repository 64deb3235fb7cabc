"""Refining a search by marks, measured on a mosaic with truth (BENCHMARKS.md, "Refining a search").

For each sketch of each class: precision@K of the sketch alone; then the top K are marked right or
wrong by the truth, the search is refined (engine.search.run_search with like/unlike), and the
precision@K of the *new finds* (matches not on a marked place) is measured; the new finds' top K
are marked in turn for a second round. And search by example: for truth cells of each class, the
cell alone is the query (no sketch), judged on the matches beside that cell.

Two judgements of a new find: "new finds" (the issue's: correct when it lies on a cell of the class,
as `sketch-search mosaic eval` judges) and "new objects" (stricter: correct only when it lies on a
cell of the class that no match marked right before lies on, so finding the same object again at
another scale or offset does not count).

Everything goes through the public API on a warm index, so the timings are what a user waits for
(the sketch's embedding included). Usage (the mosaic is built when missing):

    python -m benchmarks.refine_feedback --raster runs/refine/ucm40.tif --truth runs/refine/ucm40_truth.gpkg \\
        --per-class 40 [--index-dir DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SKETCH_SEARCH_DATA") or ROOT.parent / "shared" / "data")
SAMPLES = ROOT / "samples" / "sketches"
# Dev classes and their sketches (the held-back real sketches of other classes are never used
# here): the real Earth-on-Canvas aeroplanes and our own sample sketches.
DEV_SKETCHES = {
    "airplane": [DATA / "eoc_sketches" / "Aeroplane", SAMPLES / "airplane"],
    "harbor": [SAMPLES / "harbor"],
    "freeway": [SAMPLES / "freeway"],
    "parkinglot": [SAMPLES / "parkinglot"],
}
SKETCH_SUFFIXES = {".png", ".jpg", ".jpeg"}


def sketch_files(folders) -> list[Path]:
    out = []
    for folder in folders:
        if Path(folder).is_dir():
            out += sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in SKETCH_SUFFIXES),
                          key=lambda p: (len(p.stem), p.stem))
    return out


class Judge:
    """Truth cells of one class: which matches are right, and which cells they lie on."""

    def __init__(self, cells: np.ndarray, min_overlap: float = 0.5):
        self.cells, self.min_overlap = cells, min_overlap
        self.areas = shapely.area(cells)

    def hits(self, geometry) -> set[int]:
        inter = shapely.area(shapely.intersection(self.cells, geometry))
        ok = (inter >= self.min_overlap * np.minimum(self.areas, geometry.area)) & (inter > 0)
        return set(np.flatnonzero(ok).tolist())

    def right(self, match) -> bool:
        return bool(self.hits(match.geometry))


def precision(flags: list[bool], k: int) -> float:
    return sum(flags[:k]) / k  # missing matches count as wrong


def feedback_rounds(embedder, sketch, source, judge: Judge, options, rounds: int, k: int) -> dict:
    """P@k of the sketch alone, then of new finds / new objects after each round of marks."""
    from dataclasses import replace

    from engine.search import Extent, run_search

    t0 = time.perf_counter()
    result = run_search(embedder, sketch, [source], options=replace(options, top_k=k))
    plain = time.perf_counter() - t0
    shown = result.matches
    out = {"sketch": precision([judge.right(m) for m in shown], k), "new_finds": [], "new_objects": [],
           "seconds": [], "plain_seconds": plain, "liked": []}
    like, unlike, found = [], [], set()
    for _ in range(rounds):
        for m in shown:
            cells = judge.hits(m.geometry)
            (like if cells else unlike).append(Extent(m.geometry, m.crs_wkt))
            found |= cells
        out["liked"].append(len(like))
        t0 = time.perf_counter()
        wanted = replace(options, top_k=k + len(like) + len(unlike) + 10)
        result = run_search(embedder, sketch, [source], options=wanted, like=like, unlike=unlike)
        out["seconds"].append(time.perf_counter() - t0)
        shown = [m for m in result.matches if m.mark is None][:k]
        out["new_finds"].append(precision([judge.right(m) for m in shown], k))
        out["new_objects"].append(precision([bool(judge.hits(m.geometry) - found) for m in shown], k))
    return out


def by_example(embedder, source, judge: Judge, options, cells: int, k: int) -> dict:
    """P@k of search by example from single truth cells (the matches on that cell left out)."""
    from dataclasses import replace

    from engine.search import Extent, run_search

    crs = source.crs_wkt
    scores, seconds = [], []
    for i in range(min(cells, len(judge.cells))):
        t0 = time.perf_counter()
        result = run_search(embedder, None, [source], options=replace(options, top_k=k + 5),
                            like=[Extent(judge.cells[i], crs)])
        seconds.append(time.perf_counter() - t0)
        shown = [m for m in result.matches if m.mark is None][:k]
        scores.append(precision([judge.right(m) for m in shown], k))
    return {"precision": scores, "seconds": seconds}


def ensure_mosaic(raster: Path, truth: Path, per_class: int) -> None:
    if raster.exists() and truth.exists():
        return
    from engine.mosaic import MosaicSpec, build_mosaic

    raster.parent.mkdir(parents=True, exist_ok=True)
    build_mosaic(DATA / "ucm10", raster, truth, MosaicSpec(per_class=per_class))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--raster", type=Path, default=ROOT / "runs/refine/ucm40.tif")
    ap.add_argument("--truth", type=Path, default=ROOT / "runs/refine/ucm40_truth.gpkg")
    ap.add_argument("--per-class", type=int, default=40, help="images per class when the mosaic is built here")
    ap.add_argument("--classes", nargs="+", default=list(DEV_SKETCHES), help="dev classes (default: %(default)s)")
    ap.add_argument("--example-classes", nargs="+", help="classes for search by example (default: --classes)")
    ap.add_argument("--example-cells", type=int, default=20, help="truth cells per class used as examples")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--index-dir", help="tile index folder (default: the user's)")
    ap.add_argument("--checkpoint")
    ap.add_argument("--sketch-set", choices=("dev", "validation"), default="dev",
                    help="dev: the dev classes' sketches (default); validation: our 6 validation sketches of "
                         "each class (benchmarks/validation_sketches; pass --classes for more than the dev ones)")
    ap.add_argument("--no-centering", action="store_true", help="without the model card's sketch centering")
    ap.add_argument("--json", type=Path, help="write every figure as JSON")
    args = ap.parse_args(argv)
    folders = DEV_SKETCHES if args.sketch_set == "dev" else \
        {cls: [ROOT / "benchmarks" / "validation_sketches" / cls] for cls in args.classes}

    from engine.mosaic_eval import read_truth
    from engine.raster.rasterio_source import RasterioSource
    from engine.runtime import load_embedder, runtime_name
    from engine.search import SearchOptions, build_index

    ensure_mosaic(args.raster, args.truth, args.per_class)
    embedder = load_embedder(args.checkpoint)
    if args.no_centering:
        embedder.centering = None
    source = RasterioSource(str(args.raster))
    options = SearchOptions(index_dir=args.index_dir)
    built = build_index(embedder, [source], options=options)  # warm the index first (timings are warm)
    print(f"mosaic {args.raster.name}: {built.computed + built.cached} tiles ({built.computed} computed now); "
          f"model {embedder.name} on {runtime_name()}", file=sys.stderr)

    report = {"raster": str(args.raster), "model": embedder.name, "runtime": runtime_name(), "top_k": args.top_k,
              "sketch_set": args.sketch_set, "sketch_centering": embedder.centering is not None, "classes": {}}
    times, plain_times, example_times = [], [], []
    for cls in args.classes:
        judge = Judge(read_truth(args.truth, cls, source.crs_wkt))
        runs = [feedback_rounds(embedder, s, source, judge, options, args.rounds, args.top_k)
                for s in sketch_files(folders.get(cls, []))]
        entry = {"sketches": len(runs)}
        if runs:
            entry["sketch"] = float(np.mean([r["sketch"] for r in runs]))
            entry["new_finds"] = [float(np.mean([r["new_finds"][i] for r in runs])) for i in range(args.rounds)]
            entry["new_objects"] = [float(np.mean([r["new_objects"][i] for r in runs])) for i in range(args.rounds)]
            entry["liked_after_round_1"] = float(np.mean([r["liked"][0] for r in runs]))
            times += [t for r in runs for t in r["seconds"]]
            plain_times += [r["plain_seconds"] for r in runs]
        report["classes"][cls] = entry
    for cls in args.example_classes or args.classes:
        judge = Judge(read_truth(args.truth, cls, source.crs_wkt))
        ex = by_example(embedder, source, judge, options, args.example_cells, args.top_k)
        report["classes"].setdefault(cls, {})["example"] = float(np.mean(ex["precision"]))
        example_times += ex["seconds"]
    report["seconds"] = {name: {"median": statistics.median(ts), "max": max(ts), "n": len(ts)}
                         for name, ts in (("sketch_alone", plain_times), ("refined", times),
                                          ("by_example", example_times)) if ts}

    k = args.top_k
    print(f"| class | sketches | sketch alone P@{k} | new finds after 1 / 2 rounds | new objects after 1 / 2 rounds "
          f"| by example P@{k} |")
    print("| --- | --- | --- | --- | --- | --- |")
    for cls, e in report["classes"].items():
        fb = (f"{e['sketch']:.3f} | {' / '.join(f'{v:.3f}' for v in e['new_finds'])} | "
              f"{' / '.join(f'{v:.3f}' for v in e['new_objects'])}") if e.get("sketches") else "– | – | –"
        print(f"| {cls} | {e.get('sketches', 0)} | {fb} | {e.get('example', float('nan')):.3f} |")
    for name, t in report["seconds"].items():
        print(f"{name.replace('_', ' ')} search on the warm index: median {t['median']:.3f} s, "
              f"max {t['max']:.3f} s over {t['n']} searches")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
