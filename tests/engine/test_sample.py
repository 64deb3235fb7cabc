"""The sample that ships in samples/: a georeferenced mosaic whose truth polygons fall on its cells,
sketches stored both as strokes and as PNGs, all small; and the stand-in data folder made from it."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
from fiona.transform import transform_geom
from shapely.geometry import shape

from engine.preprocess import ink_mask, sketch_canvas, sketch_on_white
from tests.sample_data import SAMPLES, build_stand_in

MOSAIC, TRUTH, SKETCHES = SAMPLES / "ucm_mosaic.tif", SAMPLES / "ucm_truth.geojson", SAMPLES / "sketches"
UCM_CLASSES = {"agricultural", "airplane", "beach", "buildings", "chaparral", "forest", "freeway", "harbor",
               "parkinglot", "river"}


def test_the_sample_stays_small():
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert MOSAIC.stat().st_size < 2_000_000 and total < 3_000_000, total


def test_mosaic_is_a_georeferenced_jpeg_cog():
    with rasterio.open(MOSAIC) as ds:
        assert ds.crs.to_epsg() == 32611 and ds.res == (0.3, 0.3) and (ds.width, ds.height) == (2560, 2560)
        assert ds.count == 3 and ds.dtypes == ("uint8",) * 3 and ds.overviews(1) == [2, 4, 8]
        assert ds.compression.name.lower() == "jpeg" and ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        pixels = ds.read(out_shape=(3, 256, 256))
    assert pixels.std() > 20  # imagery, not a blank


def test_truth_polygons_are_the_mosaic_cells():
    with fiona.open(TRUTH) as layer, rasterio.open(MOSAIC) as ds:
        feats = list(layer)
        cells = set()
        for f in feats:
            minx, miny, maxx, maxy = shape(transform_geom(layer.crs, ds.crs.to_wkt(), f["geometry"])).bounds
            col, row = (minx - ds.bounds.left) / 76.8, (ds.bounds.top - maxy) / 76.8
            assert abs(col - round(col)) < 1e-3 and abs(row - round(row)) < 1e-3
            # GeoJSON keeps 7 decimals of a degree: about 1 cm
            assert maxx - minx == pytest.approx(76.8, abs=0.03) and maxy - miny == pytest.approx(76.8, abs=0.03)
            cells.add((round(col), round(row)))
            assert f["properties"]["image"].startswith(f["properties"]["class"] + "_")
    assert len(cells) == len(feats) == 100  # every cell once
    assert Counter(f["properties"]["class"] for f in feats) == {c: 10 for c in UCM_CLASSES}


def _sketch_files() -> list[Path]:
    return sorted(SKETCHES.glob("*/*.json"))


def test_every_sketch_has_strokes_and_a_png_the_engine_reads():
    files = _sketch_files()
    assert len(files) >= 12 and len(list(SKETCHES.glob("airplane/*.json"))) >= 6
    for path in files:
        doc = json.loads(path.read_text())
        assert doc["class"] == path.parent.name and doc["shows"] and doc["logical_size"] == 512
        points = np.concatenate([np.asarray(s["points"], float) for s in doc["strokes"]])
        assert points.min() >= 0 and points.max() <= 512 and all(s["width"] > 0 for s in doc["strokes"])
        png = path.with_suffix(".png")
        rgb = sketch_on_white(png)
        assert rgb.shape == (512, 512, 3)
        assert 0.005 < ink_mask(rgb).mean() < 0.25, path  # strokes, on mostly white paper
        assert sketch_canvas(png).shape == (224, 224, 3)
    assert not set(SKETCHES.glob("*/*.png")) - {p.with_suffix(".png") for p in files}  # no PNG without strokes


def test_sketch_classes_with_truth_are_mosaic_classes():
    drawn = {p.name for p in SKETCHES.iterdir() if p.is_dir()}
    assert {"airplane", "harbor", "freeway", "parkinglot"} <= drawn & UCM_CLASSES


def test_stand_in_has_the_shared_data_layout(tmp_path):
    root = build_stand_in(tmp_path / "data")
    images = sorted((root / "ucm10").glob("*/*.jpg"))
    assert len(images) == 100 and {p.parent.name for p in images} == UCM_CLASSES
    planes = sorted((root / "eoc_sketches" / "Aeroplane").glob("*.jpg"))
    assert {"0.jpg", "3.jpg"} <= {p.name for p in planes}  # what the real-application tests open
    with rasterio.open(MOSAIC) as ds, fiona.open(TRUTH) as layer:
        f = next(iter(layer))
        window = rasterio.windows.from_bounds(
            *shape(transform_geom(layer.crs, ds.crs.to_wkt(), f["geometry"])).bounds, ds.transform)
        cell = ds.read(window=window.round_offsets().round_lengths()).transpose(1, 2, 0).astype(int)
    from PIL import Image

    with Image.open(root / "ucm10" / f["properties"]["class"] / f["properties"]["image"]) as im:
        cut = np.asarray(im.convert("RGB")).astype(int)
    assert cut.shape == (256, 256, 3) and np.abs(cut - cell).mean() < 3  # the same pixels (JPEG again)
