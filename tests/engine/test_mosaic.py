"""The test mosaic (real UC Merced images) and the precision evaluation on it."""
from __future__ import annotations

import json
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
from PIL import Image
from shapely.geometry import shape

from engine.cli import main
from engine.embedder import Embedder
from engine.mosaic import MosaicError, MosaicSpec, build_mosaic
from engine.mosaic_eval import evaluate, list_sketches
from engine.runtime import default_model_path
from engine.search import SearchOptions

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_mosaic_pixels_and_truth_agree(tmp_path, data_dir):
    spec = MosaicSpec(per_class=3, classes=("airplane", "beach", "forest"), seed=1)
    tif, truth = build_mosaic(data_dir / "ucm10", tmp_path / "m.tif", tmp_path / "t.gpkg", spec)
    with fiona.open(truth) as layer:
        feats = list(layer)
        assert layer.crs.to_epsg() == 32611
    assert sorted(f["properties"]["class"] for f in feats) == ["airplane"] * 3 + ["beach"] * 3 + ["forest"] * 3
    with rasterio.open(tif) as ds:
        assert (ds.width, ds.height) == (3 * 256, 3 * 256) and ds.res == (0.3, 0.3) and ds.overviews(1)
        for f in feats:
            minx, miny, maxx, maxy = shape(f["geometry"]).bounds
            assert maxx - minx == pytest.approx(76.8)
            win = rasterio.windows.from_bounds(minx, miny, maxx, maxy, ds.transform)
            cell = ds.read(window=win).transpose(1, 2, 0)
            name = f["properties"]["image"]
            with Image.open(data_dir / "ucm10" / f["properties"]["class"] / name) as im:
                want = np.asarray(im.convert("RGB").resize((256, 256), Image.BILINEAR))
            np.testing.assert_array_equal(cell, want)
    with pytest.raises(MosaicError, match="exists"):
        build_mosaic(data_dir / "ucm10", tif, tmp_path / "t2.gpkg", spec)


def test_bad_folder_is_a_clear_error(tmp_path):
    with pytest.raises(MosaicError, match="not found"):
        build_mosaic(tmp_path / "none", tmp_path / "m.tif", tmp_path / "t.gpkg")
    (tmp_path / "imgs" / "empty").mkdir(parents=True)
    with pytest.raises(MosaicError, match="no images for class"):
        build_mosaic(tmp_path / "imgs", tmp_path / "m.tif", tmp_path / "t.gpkg")
    assert not (tmp_path / "m.tif").exists() and not (tmp_path / "t.gpkg").exists()


def _synthetic_classes(root):
    """Two classes of real image files: bright squares on dark ('target') and plain noise ('other')."""
    rng = np.random.default_rng(0)
    for i in range(8):
        (root / "target").mkdir(parents=True, exist_ok=True)
        (root / "other").mkdir(parents=True, exist_ok=True)
        t = np.full((256, 256, 3), 30, np.uint8)
        t[64:192, 64:192] = 230
        Image.fromarray(t).save(root / "target" / f"t{i}.png")
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(root / "other" / f"o{i}.png")


def test_precision_counts_matches_on_the_class(tmp_path, tiny_checkpoint):
    """Each match's verdict (on a cell of the class or not) and the precision follow from the truth
    polygons; with one tile per cell, chance is the class's share of the cells."""
    _synthetic_classes(tmp_path / "imgs")
    tif, truth = build_mosaic(tmp_path / "imgs", tmp_path / "m.tif", tmp_path / "t.gpkg", MosaicSpec(per_class=8))
    emb = Embedder.from_checkpoint(tiny_checkpoint, "cpu")
    sketch = tmp_path / "square.png"
    sk = np.full((256, 256, 3), 255, np.uint8)
    sk[64:192, 64:192] = 0
    Image.fromarray(sk).save(sketch)
    opts = SearchOptions(index_dir=tmp_path / "idx", tile_sizes_m=(76.8,), overlap=0.0, stage2=False)
    report = evaluate(emb, tif, truth, [sketch], "target", top_k=4, options=opts)
    assert report.chance == pytest.approx(0.5)
    assert len(report.details[0]) == 4
    # cross-check each verdict by hand against the truth polygons
    with fiona.open(truth) as layer:
        cells = {(round(shape(f["geometry"]).centroid.x, 1), round(shape(f["geometry"]).centroid.y, 1)):
                 f["properties"]["class"] for f in layer}
    from engine.raster.rasterio_source import RasterioSource
    from engine.search import search
    matches = search(emb, sketch, [RasterioSource(tif)], options=SearchOptions(**{**opts.__dict__, "top_k": 4}))
    verdicts = [cells[(round(m.geometry.centroid.x, 1), round(m.geometry.centroid.y, 1))] == "target" for m in matches]
    assert verdicts == report.details[0] and report.precision[0] == sum(verdicts) / 4


def test_eval_cli_with_the_tiny_model(tmp_path, data_dir, tiny_checkpoint, capsys):
    """The command builds and judges a mosaic of real images; its JSON figures agree with each other."""
    code = main(["mosaic", "build", "--images", str(data_dir / "ucm10"), "--out", str(tmp_path / "u.tif"),
                 "--truth", str(tmp_path / "u.gpkg"), "--per-class", "2"])
    assert code == 0
    sketches = list_sketches(data_dir / "eoc_sketches" / "Aeroplane")[:2]
    code = main(["mosaic", "eval", "--raster", str(tmp_path / "u.tif"), "--truth", str(tmp_path / "u.gpkg"),
                 "--sketches", str(sketches[0]), "--class", "airplane", "--top-k", "5", "--tile-size", "60",
                 "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--index-dir", str(tmp_path / "idx"),
                 "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 0 and "mean precision@5" in out
    r = json.loads((tmp_path / "r.json").read_text())
    assert len(r["details"]) == 1 and len(r["details"][0]) == 5
    assert r["precision"] == [sum(r["details"][0]) / 5] and r["mean_precision"] == r["precision"][0]
    # 2 of 20 cells are aeroplanes; 60 m tiles at half overlap mostly on one: chance near 2/20
    assert 0.03 < r["chance"] < 0.2


# What the shipped model gives on the UC Merced mosaics (samples/README.md, BENCHMARKS.md), with
# room for last-digit differences between machines.
TOLERANCE = 0.02


def test_default_model_on_the_sample_mosaic(tmp_path, capsys):
    """The repository's sample mosaic and our 8 aeroplane sketches, through the command line:
    precision@10 0.887 against chance 0.109 (samples/README.md)."""
    if not default_model_path().is_file():
        pytest.skip("the default model is not installed")
    code = main(["mosaic", "eval", "--raster", str(SAMPLES / "ucm_mosaic.tif"),
                 "--truth", str(SAMPLES / "ucm_truth.geojson"), "--sketches", str(SAMPLES / "sketches" / "airplane"),
                 "--class", "airplane", "--top-k", "10", "--device", "cpu", "--index-dir", str(tmp_path / "idx"),
                 "--json", str(tmp_path / "r.json")])
    assert code == 0, capsys.readouterr().err
    r = json.loads((tmp_path / "r.json").read_text())
    assert len(r["precision"]) == 8
    assert r["mean_precision"] == pytest.approx(0.887, abs=TOLERANCE)
    assert r["chance"] == pytest.approx(0.109, abs=0.002)


@pytest.mark.slow
def test_default_model_finds_aeroplanes_on_ucm(tmp_path, real_data_dir):
    """The shipped model on the 24 real Earth-on-Canvas aeroplane sketches over the mosaic that
    `scripts/demo.sh` builds from the shared UC Merced images: precision@10 0.954, chance 0.109
    (BENCHMARKS.md)."""
    if not default_model_path().is_file():
        pytest.skip("the default model is not installed")
    tif, truth = build_mosaic(real_data_dir / "ucm10", tmp_path / "u.tif", tmp_path / "u.gpkg",
                              MosaicSpec(per_class=10))
    emb = Embedder.from_checkpoint(None)
    report = evaluate(emb, tif, truth, list_sketches(real_data_dir / "eoc_sketches" / "Aeroplane"), "airplane",
                      top_k=10, options=SearchOptions(index_dir=tmp_path / "idx"))
    print(report.describe())
    assert len(report.precision) == 24
    assert report.mean_precision == pytest.approx(0.954, abs=TOLERANCE)
    assert report.chance == pytest.approx(0.109, abs=0.002)


def test_correct_means_overlapping_most_of_the_smaller_shape():
    from shapely.geometry import box

    from engine.mosaic_eval import is_correct
    cells = np.array([box(0, 0, 76.8, 76.8), box(153.6, 0, 230.4, 76.8)], dtype=object)
    assert is_correct(box(10, 10, 70, 70), cells, 0.5)            # a 60 m tile inside a cell
    assert not is_correct(box(50, 0, 110, 60), cells, 0.5)        # mostly on the next (other) cell
    assert is_correct(box(-20, -20, 100, 100), cells, 0.5)        # a 120 m tile holding a whole cell
    assert not is_correct(box(50, 50, 170, 170), cells, 0.5)      # a 120 m tile clipping two corners
    assert not is_correct(box(300, 0, 360, 60), cells, 0.5)       # elsewhere
