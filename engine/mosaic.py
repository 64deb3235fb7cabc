"""A georeferenced test mosaic from a folder of labelled images (one sub-folder per class), with
the ground-truth polygon of every image: real imagery with known answers for end-to-end checks.

Images are placed in a shuffled grid of equal square cells (resized to `cell_px`), at `gsd`
metres per pixel in a projected CRS (default UTM 11N, where UC Merced's imagery lies, 0.3 m).
"""
from __future__ import annotations

import math
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from shapely.geometry import box

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


class MosaicError(ValueError):
    """Bad input for the mosaic builder; one-line message for the user."""


@dataclass
class MosaicSpec:
    per_class: int = 10          # images per class (fewer where a class has fewer)
    cell_px: int = 256
    gsd: float = 0.3             # metres per pixel
    crs: str = "EPSG:32611"
    origin: tuple[float, float] = (500000.0, 4100000.0)  # top-left corner
    seed: int = 0
    classes: tuple[str, ...] = ()  # default: every sub-folder


def collect(folder: Path, spec: MosaicSpec) -> list[tuple[str, Path]]:
    """(class, image path) pairs: a seeded sample of per_class images of each class, shuffled."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MosaicError(f"image folder not found: {folder}")
    classes = spec.classes or tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    rng = random.Random(spec.seed)
    items = []
    for cls in classes:
        files = sorted(p for p in (folder / cls).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MosaicError(f"no images for class {cls!r} in {folder / cls}")
        items += [(cls, p) for p in rng.sample(files, min(spec.per_class, len(files)))]
    if not items:
        raise MosaicError(f"no class sub-folders with images in {folder}")
    rng.shuffle(items)
    return items


def build_mosaic(folder: str | os.PathLike, out_tif: str | os.PathLike, out_truth: str | os.PathLike,
                 spec: MosaicSpec | None = None, overwrite: bool = False) -> tuple[Path, Path]:
    """Write the mosaic GeoTIFF (tiled, with overviews) and the truth polygons (.gpkg/.geojson/.shp,
    fields: class, image). Written under temporary names and renamed, so no partial output."""
    from .export import check_output, write_polygons

    spec = spec or MosaicSpec()
    out_tif, out_truth = Path(out_tif), Path(out_truth)
    if out_tif.suffix.lower() not in (".tif", ".tiff"):
        raise MosaicError(f"mosaic output must be a .tif: {out_tif}")
    if out_tif.exists() and not overwrite:
        raise MosaicError(f"{out_tif} exists (use --overwrite to replace it)")
    if not out_tif.parent.is_dir():
        raise MosaicError(f"output folder does not exist: {out_tif.parent}")
    check_output(out_truth, overwrite)
    items = collect(Path(folder), spec)
    cols = math.ceil(math.sqrt(len(items)))
    rows = math.ceil(len(items) / cols)
    size = spec.cell_px
    transform = Affine(spec.gsd, 0, spec.origin[0], 0, -spec.gsd, spec.origin[1])
    fd, tmp = tempfile.mkstemp(prefix=".mosaic-", suffix=".tif", dir=out_tif.parent)
    os.close(fd)
    try:
        profile = dict(driver="GTiff", width=cols * size, height=rows * size, count=3, dtype="uint8",
                       crs=spec.crs, transform=transform, tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate", photometric="RGB")
        polys, names, images = [], [], []
        with rasterio.open(tmp, "w", **profile) as dst:
            for i, (cls, path) in enumerate(items):
                r, c = divmod(i, cols)
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
                dst.write(arr.transpose(2, 0, 1), window=rasterio.windows.Window(c * size, r * size, size, size))
                left, top = spec.origin[0] + c * size * spec.gsd, spec.origin[1] - r * size * spec.gsd
                polys.append(box(left, top - size * spec.gsd, left + size * spec.gsd, top))
                names.append(cls)
                images.append(path.name)
        with rasterio.open(tmp, "r+") as dst:
            dst.build_overviews([2, 4, 8], rasterio.enums.Resampling.average)
        write_polygons(out_truth, polys, {"class": np.array(names, object), "image": np.array(images, object)},
                       rasterio.crs.CRS.from_user_input(spec.crs).to_wkt(), overwrite=overwrite, layer="truth")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private; give it ordinary permissions
        os.replace(tmp, out_tif)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_tif, out_truth
