"""Refining a search with marked places, and search by example (engine/refine.py), on real imagery:
the sample's UC Merced mosaic (samples/), with the tiny model (fast) and, for quality, the default model."""
from __future__ import annotations

import time

import numpy as np
import pytest
import shapely
from shapely.geometry import box

from engine.raster.rasterio_source import RasterioSource
from engine.refine import (DEFAULT_SETTINGS, LIKE, UNLIKE, NoPlaceOverRaster, RefineSettings, place_vectors,
                           refined_vector)
from engine.search import Extent, SearchError, SearchOptions, plan, run_search
from engine.tiling import reproject
from tests.sample_data import SAMPLES

MOSAIC = SAMPLES / "ucm_mosaic.tif"
UTM = "EPSG:32611"
X0, Y1 = 500000.0, 4100000.0  # the mosaic's top-left corner
# A 300 m square of the mosaic: about 4 x 4 images, searched with 60 m tiles (10 x 10 tiles).
AREA = Extent(box(X0, Y1 - 300, X0 + 300, Y1), UTM)


@pytest.fixture(scope="module")
def mosaic():
    if not MOSAIC.is_file():
        pytest.skip("the repository's sample mosaic is missing")
    return RasterioSource(MOSAIC)


@pytest.fixture
def opts(tmp_path):
    return SearchOptions(index_dir=tmp_path / "idx", tile_sizes_m=(60.0,), top_k=100, candidates=100,
                         merge_iou=0.99, merge_containment=1.0)  # every tile a match: whole rankings compared


def _rank_of(matches, place) -> int | None:
    """Rank of the match whose polygon is the place (a tile), None when it is not among them."""
    for m in matches:
        if _same(m.geometry, place.geometry):
            return m.rank
    return None


def _same(a, b) -> bool:
    return a.symmetric_difference(b).area < 1e-6 * b.area


def _tile(result, rank: int) -> Extent:
    m = result.matches[rank - 1]
    return Extent(m.geometry, m.crs_wkt)


# ---- the query vector ------------------------------------------------------------------------------
def test_refined_vector_moves_toward_liked_and_away_from_unliked():
    rng = np.random.default_rng(0)

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    sketch, liked, unliked = unit(rng.normal(size=16)), unit(rng.normal(size=(3, 16))), unit(rng.normal(size=(2, 16)))
    q = refined_vector(sketch, liked, unliked)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-6)
    assert (liked @ q).mean() > (liked @ sketch).mean() and (unliked @ q).mean() < (unliked @ sketch).mean()
    # by example: the liked places alone; a background shared by every tile is taken off
    background = unit(rng.normal(size=16)) * 0.5
    q = refined_vector(None, liked[:1], np.zeros((0, 16)), background)
    assert q @ liked[0] > 0.8 and q @ background < liked[0] @ background
    with pytest.raises(SearchError, match="give a sketch or places"):
        refined_vector(None, np.zeros((0, 16)), unliked)
    with pytest.raises(SearchError, match="cancel each other"):
        refined_vector(None, liked[:1], liked[:1], settings=RefineSettings(like_weight=1.0, unlike_weight=1.0))


def test_a_marked_match_stands_for_its_own_tile(tmp_path, mosaic, emb, bar_sketch, opts):
    """The place of a match is exactly one tile (IoU 1): its vector is that tile's."""
    result = run_search(emb, bar_sketch, [mosaic], AREA, opts)
    layers, _ = plan(emb, [mosaic], AREA, opts)
    place = _tile(result, 7)
    (vec,), used = place_vectors(layers, [place], DEFAULT_SETTINGS.min_iou)
    tile = layers[0].tiles[layer_index(layers[0], place)]
    assert used == [0] and np.allclose(vec, layers[0].entry.cls[tile], atol=1e-6)


def layer_index(layer, place) -> int:
    polys = layer.grid.polygons(layer.tiles)
    return int(np.argmax(shapely.area(shapely.intersection(polys, place.geometry))))


# ---- ranking on the real mosaic ---------------------------------------------------------------------
def test_refining_moves_the_ranking_toward_liked_and_away_from_unliked(mosaic, emb, bar_sketch, opts):
    before = run_search(emb, bar_sketch, [mosaic], AREA, opts)
    assert len(before.matches) == 100
    liked, unliked = _tile(before, 40), _tile(before, 1)
    after = run_search(emb, bar_sketch, [mosaic], AREA, opts, like=[liked], unlike=[unliked])
    assert after.computed == 0  # everything came from the index
    assert _rank_of(after.matches, liked) == 1
    assert _rank_of(after.matches, unliked) > 40
    marks = {m.rank: m.mark for m in after.matches}
    assert marks[1] == LIKE and marks[_rank_of(after.matches, unliked)] == UNLIKE
    for m in after.matches:  # marked: the match shares half its area (or more) with a marked place
        shared = {label: m.geometry.intersection(p.geometry).area / m.geometry.area
                  for label, p in ((LIKE, liked), (UNLIKE, unliked))}
        assert m.mark == (LIKE if shared[LIKE] >= 0.5 else UNLIKE if shared[UNLIKE] >= 0.5 else None)
    # the tiles most like the liked one rise with it: its nearest neighbours by vector
    layers, _ = plan(emb, [mosaic], AREA, opts)
    vecs = layers[0].entry.cls[layers[0].tiles]
    near = np.argsort(-(vecs @ vecs[layer_index(layers[0], liked)]))[1:6]
    polys = layers[0].grid.polygons(layers[0].tiles[near])

    def ranks(res):
        return np.mean([_rank_of(res.matches, Extent(p, mosaic.crs_wkt)) for p in polys])

    assert ranks(after) < ranks(before)


def test_search_by_example_finds_the_example_first(mosaic, emb, opts):
    place = Extent(box(X0 + 90, Y1 - 150, X0 + 150, Y1 - 90), UTM)  # exactly one 60 m tile
    result = run_search(emb, None, [mosaic], AREA, opts, like=[place])
    assert _same(result.matches[0].geometry, place.geometry) and result.matches[0].mark == LIKE
    scores = [m.score for m in result.matches]
    assert scores == sorted(scores, reverse=True) and -1.0 <= scores[-1] <= scores[0] <= 1.0


def test_places_in_another_crs_and_outside_the_extent(tmp_path, mosaic, emb, bar_sketch, opts):
    """A liked place given in WGS 84, lying outside the searched extent: its tiles are computed too
    (and only those), and it acts as the same place in UTM would."""
    utm = Extent(box(X0 + 450, Y1 - 510, X0 + 510, Y1 - 450), UTM)  # one tile, outside AREA
    (wgs,) = reproject(np.array([utm.geometry], dtype=object), UTM, "EPSG:4326")
    first = run_search(emb, bar_sketch, [mosaic], AREA, opts, like=[Extent(wgs, "EPSG:4326")])
    # the area's tiles and those under the place (3 x 3 in UTM; a few more meet its reprojected edges)
    assert 100 + 9 <= first.computed <= 100 + 25
    second = run_search(emb, bar_sketch, [mosaic], AREA, opts, like=[utm])
    assert second.computed == 0
    assert [m.rank for m in first.matches] == [m.rank for m in second.matches]
    assert np.allclose([m.score for m in first.matches], [m.score for m in second.matches], atol=1e-4)
    assert all(AREA.geometry.intersects(m.geometry) for m in first.matches)
    assert all(m.mark is None for m in first.matches)  # the place is outside: no match lies on it


def test_bad_places_are_one_line_errors(mosaic, emb, bar_sketch, opts):
    far = Extent(box(0, 0, 100, 100), UTM)
    with pytest.raises(NoPlaceOverRaster, match="none of the marked places lies over a searched raster"):
        run_search(emb, bar_sketch, [mosaic], AREA, opts, like=[far])
    with pytest.raises(SearchError, match="nothing to search for"):
        run_search(emb, None, [mosaic], AREA, opts)
    with pytest.raises(SearchError, match="nothing to search for"):
        run_search(emb, None, [mosaic], AREA, opts, unlike=[AREA])
    with pytest.raises(SearchError, match="a marked place: .*CRS"):
        run_search(emb, bar_sketch, [mosaic], AREA, opts, like=[Extent(AREA.geometry, "EPSG:999999")])


def test_refined_search_is_fast_on_a_warm_index(mosaic, emb, bar_sketch, opts):
    first = run_search(emb, bar_sketch, [mosaic], AREA, opts)
    like = [_tile(first, r) for r in (2, 5, 9)]
    unlike = [_tile(first, r) for r in (1, 3, 4, 6, 7, 8, 10)]
    run_search(emb, bar_sketch, [mosaic], AREA, opts, like=like, unlike=unlike)
    t0 = time.perf_counter()
    run_search(emb, bar_sketch, [mosaic], AREA, opts, like=like, unlike=unlike)
    assert time.perf_counter() - t0 < 1.0


# ---- the default model on the whole sample mosaic -----------------------------------------------------
@pytest.mark.slow
def test_default_model_search_by_example_finds_aeroplanes(tmp_path, mosaic):
    """From each aeroplane cell of the sample alone, search by example finds other aeroplane cells far
    above chance (about 0.11): measured 0.71 on average (0.2 to 1.0 per cell) with the shipped model."""
    from engine.mosaic_eval import is_correct, read_truth
    from engine.runtime import load_embedder

    embedder = load_embedder(None)
    cells = read_truth(SAMPLES / "ucm_truth.geojson", "airplane", mosaic.crs_wkt)
    options = SearchOptions(index_dir=tmp_path / "idx", top_k=15)
    precision = []
    for cell in cells:
        result = run_search(embedder, None, [mosaic], None, options, like=[Extent(cell, mosaic.crs_wkt)])
        new = [m for m in result.matches if m.mark is None][:10]  # the example's own cell left out
        precision.append(sum(is_correct(m.geometry, cells, 0.5) for m in new) / 10)
    assert np.mean(precision) >= 0.5, precision


# ---- the command line: sketch-search search --like/--unlike FILE -------------------------------------
def _write_polygons(path, geoms, crs: str):
    import fiona
    from fiona.crs import CRS
    from shapely.geometry import mapping

    schema = {"geometry": "Polygon", "properties": {"note": "str"}}
    driver = "GeoJSON" if str(path).endswith(".geojson") else "GPKG"
    with fiona.open(path, "w", driver=driver, schema=schema, crs=CRS.from_user_input(crs)) as layer:
        for g in geoms:
            layer.write({"geometry": mapping(g), "properties": {"note": "marked"}})
    return path


@pytest.fixture
def cli(tmp_path, mosaic, tiny_checkpoint, capsys):
    """cli(*args) -> (exit code, stdout, stderr) of `sketch-search search` on the sample's 300 m square."""
    from engine.cli import main

    def run(*args):
        base = ["search", "--raster", str(MOSAIC), "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
                "--index-dir", str(tmp_path / "idx"), "--tile-size", "60", "--bbox", str(X0), str(Y1 - 300),
                str(X0 + 300), str(Y1), "--top-k", "5"]
        code = main(base + [str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def _read(path):
    import fiona
    from shapely.geometry import shape

    with fiona.open(path) as layer:
        return [(f["properties"]["rank"], shape(f["geometry"])) for f in layer]


def test_cli_search_by_example_with_a_file_in_another_crs(tmp_path, cli):
    place = box(X0 + 90, Y1 - 150, X0 + 150, Y1 - 90)
    (wgs,) = reproject(np.array([place], dtype=object), UTM, "EPSG:4326")
    like = _write_polygons(tmp_path / "like.gpkg", [wgs], "EPSG:4326")
    code, out, err = cli("--like", like, "--out", tmp_path / "by_example.gpkg")
    assert code == 0, err
    assert "wrote 5 matches" in out
    rank, first = _read(tmp_path / "by_example.gpkg")[0]
    assert rank == 1 and first.intersection(place).area > 0.9 * place.area


def test_cli_refines_a_sketch_search_with_liked_and_unliked_files(tmp_path, cli, bar_sketch):
    from PIL import Image

    sketch = tmp_path / "bar.png"
    Image.fromarray(np.ascontiguousarray(bar_sketch)).save(sketch)
    assert cli("--sketch", sketch, "--out", tmp_path / "first.gpkg")[0] == 0
    first = _read(tmp_path / "first.gpkg")
    like = _write_polygons(tmp_path / "right.gpkg", [first[3][1]], UTM)
    unlike = _write_polygons(tmp_path / "wrong.geojson", [first[0][1]], UTM)  # another format
    code, _, err = cli("--sketch", sketch, "--like", like, "--unlike", unlike, "--out", tmp_path / "second.gpkg")
    assert code == 0, err
    second = _read(tmp_path / "second.gpkg")
    # the liked place first (merged with a neighbour sharing half of it, when that one scores higher)
    assert second[0][1].intersection(first[3][1]).area >= 0.5 * first[3][1].area
    assert second[0][1].intersection(first[0][1]).area < 0.5 * first[0][1].area  # the unliked one is no longer first


def test_cli_errors_are_one_line(tmp_path, cli, bar_sketch):
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    far = _write_polygons(tmp_path / "far.gpkg", [box(0, 0, 100, 100)], UTM)
    points = tmp_path / "points.geojson"
    points.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
                      '"geometry": {"type": "Point", "coordinates": [-119.0, 37.0]}}]}')
    cases = [
        ((), "give --sketch, or --like"),
        (("--unlike", far), "give --sketch, or --like"),
        (("--like", empty), f"--like {empty} holds no polygons"),
        (("--like", points), "holds no polygons"),
        (("--like", tmp_path / "missing.gpkg"), "--like file not found"),
        (("--like", far), "none of the marked places lies over a searched raster"),
    ]
    for args, message in cases:
        out = tmp_path / "never.gpkg"
        code, _, err = cli(*args, "--out", out)
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
        assert err.startswith("sketch-search search: error: ") and not out.exists()


# ---- the worker protocol: `search` with like / unlike, the sketch optional ----------------------------
@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    from tests.engine.test_worker import Worker

    folder = tmp_path_factory.mktemp("worker")
    w = Worker(folder / "worker.log", {"SKETCH_SEARCH_INDEX": str(folder / "default-index")})
    yield w
    w.close()


def assert_same(reply: dict, result) -> None:
    """The worker's matches are the engine's (geometry, rank, score, mark)."""
    got, want = reply["matches"], result.matches
    assert [m["rank"] for m in got] == [m.rank for m in want]
    assert [m["mark"] for m in got] == [m.mark for m in want]
    assert np.allclose([m["score"] for m in got], [m.score for m in want], atol=1e-5)
    assert all(_same(shapely.from_wkt(g["wkt"]), w.geometry) for g, w in zip(got, want))


def test_worker_refines_and_searches_by_example(tmp_path, worker, mosaic, emb, bar_sketch, tiny_checkpoint):
    from tests.engine.test_worker import png_base64, source_json

    options = {"top_k": 10, "tile_sizes_m": [60], "index_dir": str(tmp_path / "i")}
    area = {"wkt": AREA.geometry.wkt, "crs": UTM}
    params = {"sources": [source_json(MOSAIC)], "extent": area, "options": options,
              "checkpoint": str(tiny_checkpoint), "device": "cpu", "thumbnail": 0}
    sketch = {"png_base64": png_base64(np.array(bar_sketch))}
    first = worker.call("search", sketch=sketch, **params)
    assert all(m["mark"] is None for m in first["matches"])  # a plain search marks nothing

    def place(m):
        return {"wkt": m["wkt"], "crs": first["crs_wkt"]}

    like, unlike = [place(first["matches"][3])], [place(first["matches"][0])]
    refined = worker.call("search", sketch=sketch, like=like, unlike=unlike, **params)
    # the same as the engine in this process, marks included
    opts = SearchOptions(top_k=10, tile_sizes_m=(60.0,), index_dir=tmp_path / "i")

    def places(marked):
        return [Extent(shapely.from_wkt(p["wkt"]), p["crs"]) for p in marked]

    mine = run_search(emb, bar_sketch, [mosaic], AREA, opts, like=places(like), unlike=places(unlike))
    assert_same(refined, mine)
    assert LIKE in [m["mark"] for m in refined["matches"]] and refined["computed"] == 0
    # by example: no sketch (null or left out)
    by_example = worker.call("search", sketch=None, like=like, **params)
    by_example_here = run_search(emb, None, [mosaic], AREA, opts, like=places(like))
    assert_same(by_example, by_example_here)
    assert_same(worker.call("search", like=like, **params), by_example_here)
    # one-line user errors
    for extra, message in [({}, "give a sketch, or places"),
                           ({"like": "x"}, "like must be null or a list"),
                           ({"like": [{"wkt": "POINT (1 2)", "crs": UTM}]}, "like[0] must be a polygon"),
                           ({"unlike": [{"wkt": "POLYGON ((", "crs": UTM}], "sketch": sketch},
                            "unlike[0] is not valid WKT"),
                           ({"like": [{"wkt": box(0, 0, 10, 10).wkt, "crs": UTM}]},
                            "none of the marked places lies over a searched raster")]:
        _, reply = worker.reply(worker.send("search", **{**params, **extra}))
        assert reply["type"] == "error" and reply["kind"] == "user" and message in reply["message"], (extra, reply)
        assert "\n" not in reply["message"]


def test_refined_search_runs_without_torch(tmp_path):
    """The CPU install has no PyTorch: a refined search by example on ONNX Runtime, torch unimportable."""
    import json

    from engine.runtime import default_model_path
    from tests.engine.test_onnx import _run_without_torch

    if not default_model_path().with_suffix(".onnx").is_file():
        pytest.skip("the default model's ONNX export is missing (scripts/setup.sh makes it)")
    code = f"""
        import json
        from shapely.geometry import box
        from engine.runtime import load_embedder, runtime_name
        from engine.raster.rasterio_source import RasterioSource
        from engine.search import Extent, SearchOptions, run_search
        emb = load_embedder(None, "cpu")
        area = Extent(box({X0}, {Y1 - 300}, {X0 + 300}, {Y1}), "EPSG:32611")
        like = Extent(box({X0 + 90}, {Y1 - 150}, {X0 + 150}, {Y1 - 90}), "EPSG:32611")
        result = run_search(emb, None, [RasterioSource({str(MOSAIC)!r})], area,
                            SearchOptions(top_k=5, tile_sizes_m=(60.0,), index_dir={str(tmp_path / "i")!r}),
                            like=[like])
        leaked = [m for m in ("torch", "timm", "torchvision") if m in sys.modules]
        print(json.dumps({{"runtime": runtime_name(), "leaked": leaked, "marks": [m.mark for m in result.matches]}}))
        """
    proc = _run_without_torch(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["runtime"] == "onnx" and out["leaked"] == [] and out["marks"][0] == LIKE
