"""The `sketch-search search` and `index` command-line contract: exit codes, messages, outputs."""
from __future__ import annotations

import subprocess
import sys

import fiona
import numpy as np
import pytest
from PIL import Image
from shapely.geometry import shape

from engine.cli import main


@pytest.fixture
def sketch(tmp_path):
    arr = np.full((128, 128, 3), 255, np.uint8)
    arr[30:100, 60:68] = 0
    arr[55:65, 20:108] = 0
    path = tmp_path / "plane.png"
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def base(tmp_path, rgb_tif, sketch, tiny_checkpoint):
    return ["search", "--raster", str(rgb_tif), "--sketch", str(sketch), "--checkpoint", str(tiny_checkpoint),
            "--device", "cpu", "--index-dir", str(tmp_path / "idx"), "--tile-size", "60", "120"]


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_search_writes_a_shapefile_and_refuses_to_overwrite(tmp_path, base, capsys):
    out = tmp_path / "planes.shp"
    code, stdout, err = _run(base + ["--top-k", "5", "--out", str(out)], capsys)
    assert code == 0, err
    assert "wrote 5 matches" in stdout and err == ""  # no progress bar off a terminal
    assert out.with_suffix(".prj").is_file()
    with fiona.open(out) as layer:
        names = list(layer.schema["properties"])
        feats = list(layer)
    assert all(len(n) <= 10 for n in names) and {"rank", "score", "source", "scale"} <= set(names)
    assert [f["properties"]["rank"] for f in feats] == [1, 2, 3, 4, 5]
    scores = [f["properties"]["score"] for f in feats]
    assert scores == sorted(scores, reverse=True)
    before = out.stat().st_mtime_ns
    code, _, err = _run(base + ["--top-k", "3", "--out", str(out)], capsys)
    assert code == 2 and "exists (use --overwrite" in err and err.count("\n") == 1
    assert out.stat().st_mtime_ns == before
    code, stdout, _ = _run(base + ["--top-k", "3", "--out", str(out), "--overwrite", "--no-stage2"], capsys)
    assert code == 0 and "0 tiles computed" in stdout
    with fiona.open(out) as layer:
        assert len(layer) == 3


@pytest.mark.parametrize("case,needle", [
    ("missing_raster", "raster not found"),
    ("bad_raster", "cannot read raster"),
    ("empty_sketch", "sketch is empty"),
    ("missing_sketch", "not found"),
    ("outside", "outside every raster"),
    ("unknown_crs", "unknown CRS"),
    ("bad_out_dir", "does not exist"),
    ("bad_format", "unknown output format"),
    ("too_many", "more than the limit"),
])
def test_bad_input_one_line_and_no_output(tmp_path, base, capsys, case, needle):
    out = tmp_path / "out.gpkg"
    argv = base + ["--out", str(out)]
    if case == "missing_raster":
        argv[2] = str(tmp_path / "nope.tif")
    elif case == "bad_raster":
        (tmp_path / "bad.tif").write_text("garbage")
        argv[2] = str(tmp_path / "bad.tif")
    elif case == "empty_sketch":
        Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(tmp_path / "blank.png")
        argv[4] = str(tmp_path / "blank.png")
    elif case == "missing_sketch":
        argv[4] = str(tmp_path / "nope.png")
    elif case == "outside":
        argv += ["--bbox", "0", "0", "10", "10"]
    elif case == "unknown_crs":
        argv += ["--bbox", "0", "0", "10", "10", "--bbox-crs", "EPSG:999999"]
    elif case == "bad_out_dir":
        argv[argv.index("--out") + 1] = str(tmp_path / "no" / "out.gpkg")
    elif case == "bad_format":
        argv[argv.index("--out") + 1] = str(tmp_path / "out.txt")
    elif case == "too_many":
        argv += ["--max-tiles", "5"]
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert needle in err and err.startswith("sketch-search search: error:") and err.count("\n") == 1
    assert [p for p in tmp_path.iterdir() if p.suffix in (".gpkg", ".txt") or p.name.startswith(".")] == []


def test_index_build_info_clear(tmp_path, rgb_tif, tiny_checkpoint, capsys):
    idx = str(tmp_path / "idx")
    code, out, err = _run(["index", "build", "--raster", str(rgb_tif), "--checkpoint", str(tiny_checkpoint),
                           "--device", "cpu", "--index-dir", idx, "--tile-size", "60", "120"], capsys)
    assert code == 0, err
    assert "41 tiles computed" in out
    code, out, _ = _run(["index", "info", "--index-dir", idx], capsys)
    assert code == 0 and "2 entries" in out and "rgb.tif at 60 m" in out and "35 of 35 tiles embedded" in out
    code, out, _ = _run(["index", "clear", "--index-dir", idx, "--raster", str(tmp_path / "other.tif")], capsys)
    assert "removed 0" in out
    code, out, _ = _run(["index", "clear", "--index-dir", idx, "--raster", str(rgb_tif)], capsys)
    assert code == 0 and "removed 2" in out
    code, out, _ = _run(["index", "info", "--index-dir", idx], capsys)
    assert "0 entries" in out


def test_help_is_complete():
    res = subprocess.run([sys.executable, "-m", "engine.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "search" in res.stdout and "index" in res.stdout
    for cmd in (["search"], ["index"], ["index", "build"], ["index", "info"], ["index", "clear"]):
        res = subprocess.run([sys.executable, "-m", "engine.cli", *cmd, "--help"], capture_output=True, text=True)
        assert res.returncode == 0 and "usage:" in res.stdout


def test_within_polygon_file_limits_the_search(tmp_path, base, capsys):
    from shapely.geometry import box

    from engine.export import write_polygons
    from engine.tiling import parse_crs, reproject

    area = tmp_path / "area.geojson"
    write_polygons(area, [box(500000, 4000000 - 60, 500060, 4000000)], {"id": np.array([1])},
                   parse_crs("EPSG:32611").to_wkt())
    out = tmp_path / "m.geojson"
    code, stdout, err = _run(base + ["--within", str(area), "--out", str(out), "--top-k", "2"], capsys)
    assert code == 0, err
    with fiona.open(out) as layer:
        assert layer.crs.to_epsg() == 4326  # GeoJSON: WGS 84 lon/lat (RFC 7946)
        found = reproject(np.array([shape(f["geometry"]) for f in layer]), layer.crs_wkt,
                          parse_crs("EPSG:32611").to_wkt())
    assert len(found) > 0 and all(box(500000, 4000000 - 60, 500060, 4000000).intersects(g) for g in found)
    assert "5 tiles computed" in stdout  # 4 tiles of 60 m and 1 of 120 m touch the square


def test_unusable_within_files_are_one_line_each(tmp_path, base, capsys):
    points = tmp_path / "points.geojson"
    points.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
                      '"geometry": {"type": "Point", "coordinates": [0, 0]}}]}')
    for path, words in ((tmp_path / "missing.gpkg", "--within file not found"), (points, "holds no polygons")):
        code, _, err = _run(base + ["--within", str(path), "--out", str(tmp_path / "m.gpkg")], capsys)
        assert code == 2 and words in err and "--within" in err and len(err.strip().splitlines()) == 1


def test_estimate_prints_counts_and_writes_nothing(tmp_path, base, capsys):
    out = tmp_path / "never.gpkg"
    code, stdout, err = _run(base + ["--out", str(out), "--estimate"], capsys)
    assert code == 0, err
    assert stdout.startswith("41 tiles (0 in the index, 41 to compute, about ") and not out.exists()
    code, stdout, _ = _run(base + ["--out", str(out), "--estimate", "--tile-size", "4", "60"], capsys)
    assert "note: rgb.tif: 4 m tiles are too small" in stdout


def test_unusable_index_folder_is_one_line(tmp_path, base, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    argv = base + ["--out", str(tmp_path / "o.gpkg")]
    argv[argv.index("--index-dir") + 1] = str(blocker / "idx")
    code, _, err = _run(argv, capsys)
    assert code == 2 and "cannot use the tile index folder" in err and err.count("\n") == 1
    assert not (tmp_path / "o.gpkg").exists()


def test_options_left_out_take_the_engines_defaults(rgb_tif):
    """The command line has no defaults of its own: what it leaves out is SearchOptions()'s."""
    from engine.cli import build_parser
    from engine.cli.search import open_inputs
    from engine.search import SearchOptions

    args = build_parser().parse_args(["search", "--raster", str(rgb_tif), "--sketch", "s.png", "--out", "o.gpkg"])
    _, _, options = open_inputs(args)
    assert options == SearchOptions()
    args = build_parser().parse_args(["index", "build", "--raster", str(rgb_tif)])
    _, _, options = open_inputs(args)
    assert options == SearchOptions()
