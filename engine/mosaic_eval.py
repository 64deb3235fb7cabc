"""Precision of the top-K search matches on a mosaic with ground truth.

A match is correct when at least `min_overlap` of its area lies on cells of the sketch's class
(the cells of one class may touch, so the union of that class's polygons is used). Chance level is
the share of the searched area the class covers, so a figure can be read against it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import shape

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass
class EvalReport:
    cls: str
    top_k: int
    sketches: list[str]
    precision: list[float]                  # per sketch
    chance: float                           # class area / mosaic area
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
    """Union of the class's truth polygons and of all polygons, reprojected to crs_wkt."""
    import fiona

    from .tiling import reproject

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
    return shapely.union_all(geoms[mask]), shapely.union_all(geoms)


def list_sketches(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    files = sorted((p for p in path.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: (len(p.stem), p.stem))
    if not files:
        raise ValueError(f"no sketch images in {path}")
    return files


def evaluate(embedder, raster_path, truth_path, sketches, cls: str, top_k: int = 10, min_overlap: float = 0.5,
             options=None, progress=None) -> EvalReport:
    """Search the mosaic with each sketch; precision of the top-K matches against the truth."""
    import time
    from dataclasses import replace

    from .raster.rasterio_source import RasterioSource
    from .search import SearchOptions, search

    source = RasterioSource(raster_path)
    options = replace(options or SearchOptions(), top_k=top_k)
    target, everything = read_truth(truth_path, cls, source.crs_wkt)
    t0 = time.perf_counter()
    precision, details, names = [], [], []
    for i, sketch in enumerate(sketches):
        matches = search(embedder, Path(sketch), [source], options=options)
        hits = [m.geometry.intersection(target).area / m.geometry.area >= min_overlap for m in matches]
        precision.append(sum(hits) / top_k)  # missing matches count as wrong
        details.append(hits)
        names.append(Path(sketch).name)
        if progress:
            progress(i + 1, len(sketches), Path(sketch).name)
    return EvalReport(cls, top_k, names, precision, target.area / everything.area, options.stage2,
                      embedder.name, time.perf_counter() - t0, details)
