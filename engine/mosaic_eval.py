"""Precision of the top-K search matches on a mosaic with ground truth.

A match is correct when it and one truth polygon of the sketch's class overlap by at least
`min_overlap` of the smaller of the two: a small tile mostly inside the object's cell, or a large
tile holding most of the cell (tiles of 120 or 240 m can never lie mostly on one 77 m cell, so
judging by the match's area alone would count every coarse hit wrong). Chance level is the
precision of tiles drawn at random from the same tiling (every scale), judged the same way.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import fiona
import numpy as np
import shapely
from shapely.geometry import shape

from .raster.rasterio_source import RasterioSource
from .search import SearchOptions, search
from .tiling import make_grid, reproject

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass
class EvalReport:
    cls: str
    top_k: int
    sketches: list[str]
    precision: list[float]                  # per sketch
    chance: float                           # precision of randomly drawn tiles of the same tiling
    stage2: bool
    model: str
    seconds: float
    details: list[list[bool]] = field(default_factory=list)

    @property
    def mean_precision(self) -> float:
        return float(np.mean(self.precision)) if self.precision else 0.0

    def describe(self) -> str:
        p = np.asarray(self.precision)
        return (f"class {self.cls}: mean precision@{self.top_k} = {self.mean_precision:.3f} over {len(p)} sketches "
                f"(median {np.median(p):.3f}, min {p.min():.3f}, max {p.max():.3f}); chance {self.chance:.3f}; "
                f"stage 2 {'on' if self.stage2 else 'off'}; model {self.model}; {self.seconds:.0f} s")


def read_truth(path: str | os.PathLike, cls: str, crs_wkt: str):
    """The class's truth polygons (array), reprojected to crs_wkt."""
    with fiona.open(path) as layer:
        feats = list(layer)
        src_wkt = layer.crs_wkt
    if not feats:
        raise ValueError(f"no polygons in {path}")
    classes = {f["properties"]["class"] for f in feats}
    if cls not in classes:
        raise ValueError(f"class {cls!r} not in {path} (has: {', '.join(sorted(classes))})")
    geoms = np.array([shape(f["geometry"]) for f in feats], dtype=object)
    geoms = reproject(geoms, src_wkt, crs_wkt)
    mask = np.array([f["properties"]["class"] == cls for f in feats])
    return geoms[mask]


def is_correct(match_geom, targets: np.ndarray, min_overlap: float) -> bool:
    """Whether the match overlaps one target by at least min_overlap of the smaller of the two."""
    inter = shapely.area(shapely.intersection(targets, match_geom))
    smaller = np.minimum(shapely.area(targets), match_geom.area)
    return bool((inter >= min_overlap * smaller).any() and inter.max() > 0)


def list_sketches(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    files = sorted((p for p in path.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: (len(p.stem), p.stem))
    if not files:
        raise ValueError(f"no sketch images in {path}")
    return files


def chance_level(source, targets: np.ndarray, options, min_overlap: float) -> float:
    """Share of all tiles of the search's tiling (all scales) that would count as correct."""
    verdicts = []
    for tile_m in options.tile_sizes_m:
        grid = make_grid(source, tile_m, options.overlap)
        if grid is not None:
            verdicts += [is_correct(p, targets, min_overlap) for p in grid.polygons(np.arange(grid.count))]
    return float(np.mean(verdicts)) if verdicts else 0.0


def evaluate(embedder, raster_path, truth_path, sketches, cls: str, top_k: int = 10, min_overlap: float = 0.5,
             options=None, progress=None) -> EvalReport:
    """Search the mosaic with each sketch; precision of the top-K matches against the truth."""
    source = RasterioSource(raster_path)
    options = replace(options or SearchOptions(), top_k=top_k)
    targets = read_truth(truth_path, cls, source.crs_wkt)
    t0 = time.perf_counter()
    precision, details, names = [], [], []
    for i, sketch in enumerate(sketches):
        matches = search(embedder, Path(sketch), [source], options=options)
        hits = [is_correct(m.geometry, targets, min_overlap) for m in matches]
        precision.append(sum(hits) / top_k)  # missing matches count as wrong
        details.append(hits)
        names.append(Path(sketch).name)
        if progress:
            progress(i + 1, len(sketches), Path(sketch).name)
    chance = chance_level(source, targets, options, min_overlap)
    return EvalReport(cls, top_k, names, precision, chance, options.stage2,
                      embedder.name, time.perf_counter() - t0, details)
