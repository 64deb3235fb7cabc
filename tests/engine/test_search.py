"""The search API: several rasters in different CRSs, extents, limits, progress, output CRS."""
from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from shapely.geometry import box

from engine.preprocess import EmptySketchError
from engine.raster.rasterio_source import RasterioSource
from engine.search import Extent, SearchError, SearchOptions, TooManyTiles, estimate, run_search, search
from engine.tiling import parse_crs, reproject



def test_matches_follow_the_contract(tmp_path, rgb_tif, emb, bar_sketch):
    calls = []
    matches = search(emb, bar_sketch, [RasterioSource(rgb_tif)],
                     options=SearchOptions(index_dir=tmp_path, top_k=4), progress=lambda *a: calls.append(a))
    assert [m.rank for m in matches] == [1, 2, 3, 4]
    assert all(a.score >= b.score for a, b in zip(matches, matches[1:]))
    assert {m.source for m in matches} == {"rgb.tif"} and {m.scale for m in matches} <= {60.0, 120.0, 240.0}
    assert parse_crs(matches[0].crs_wkt).to_epsg() == 32611
    # merged: no two matches overlap by more than the merge thresholds
    for i, a in enumerate(matches):
        for b in matches[i + 1:]:
            inter = a.geometry.intersection(b.geometry).area
            assert inter / a.geometry.union(b.geometry).area <= 0.3
    assert calls[0][:2] == (0, 35 + 6 + 1) and calls[-1][0] == calls[-1][1]


def test_a_planted_copy_of_an_image_is_found_first(tmp_path, geo, emb, bar_sketch):
    """A tile-sized patch taken from elsewhere is placed in a raster; searching with the patch
    itself (as the 'sketch') must rank the tile holding it first, in stage 1 and stage 2."""
    img = geo.pattern(600, 600, seed=3)
    patch = geo.pattern(200, 200, seed=9)
    img[:, 200:400, 400:600] = patch  # exactly the tile at row 2, column 4 of the 60 m / 50 % grid
    src = RasterioSource(geo.write_tif(tmp_path / "planted.tif", img))
    target = box(500000 + 120, 4000000 - 120, 500000 + 180, 4000000 - 60)
    query = patch.transpose(1, 2, 0)
    cls = emb.embed_images(query[None]).cls[0]
    # compare with the tile vectors directly: the planted tile is the best by construction
    res = run_search(emb, bar_sketch, [src],
                     options=SearchOptions(index_dir=tmp_path / "i", tile_sizes_m=(60,), stage2=False, top_k=1))
    from engine.index import list_entries
    (entry,) = list_entries(tmp_path / "i")
    vecs = np.memmap(f"{entry['folder']}/cls.f32", np.float32, "r", shape=(entry["count"], entry["dim"]))
    assert int(np.argmax(vecs @ cls)) == 2 * 5 + 4
    from engine.tiling import make_grid
    assert make_grid(src, 60, 0.5).polygons(np.array([14]))[0].equals(target)
    assert res.matches


def test_several_rasters_in_different_crs(tmp_path, geo, emb, bar_sketch):
    a = RasterioSource(geo.write_tif(tmp_path / "a.tif", geo.pattern(400, 400)))
    # the second raster: 0.5 m pixels in WGS 84 / Pseudo-Mercator
    b = RasterioSource(geo.write_tif(tmp_path / "b.tif", geo.pattern(300, 300, seed=2), crs="EPSG:3857",
                                     transform=Affine(0.5, 0, -13_400_000, 0, -0.5, 4_480_000)))
    opts = SearchOptions(index_dir=tmp_path / "i", top_k=30, tile_sizes_m=(60,), stage2=False, merge_iou=0.99,
                         merge_containment=1.0)
    matches = search(emb, bar_sketch, [a, b], options=opts)
    assert {m.source for m in matches} == {"a.tif", "b.tif"}
    assert all(parse_crs(m.crs_wkt).to_epsg() == 32611 for m in matches)
    # b's tiles were reprojected to UTM: they lie far from a's, near b's location
    b_utm = reproject(np.array([box(-13_400_000, 4_480_000 - 150, -13_400_000 + 150, 4_480_000)]), b.crs_wkt,
                      a.crs_wkt)[0]
    for m in matches:
        if m.source == "b.tif":
            assert m.geometry.intersects(b_utm.buffer(100))
    # output CRS given
    out = search(emb, bar_sketch, [a, b], options=SearchOptions(**{**opts.__dict__, "output_crs": "EPSG:4326"}))
    assert parse_crs(out[0].crs_wkt).to_epsg() == 4326 and abs(out[0].geometry.centroid.x) < 180


def test_extent_limits_the_search_and_must_touch_a_raster(tmp_path, rgb_tif, emb, bar_sketch):
    src = RasterioSource(rgb_tif)
    opts = SearchOptions(index_dir=tmp_path / "i", top_k=10, tile_sizes_m=(60,), stage2=False)
    ext = Extent.from_bbox(500000, 4000000 - 90, 500090, 4000000, "EPSG:32611")
    res = run_search(emb, bar_sketch, [src], extent=ext, options=opts)
    assert res.computed == 9
    assert all(m.geometry.intersects(ext.geometry) for m in res.matches)
    with pytest.raises(SearchError, match="outside every raster"):
        search(emb, bar_sketch, [src], extent=Extent.from_bbox(0, 0, 10, 10, "EPSG:32611"), options=opts)
    with pytest.raises(SearchError, match="unknown CRS"):
        search(emb, bar_sketch, [src], extent=Extent.from_bbox(0, 0, 10, 10, "EPSG:999999"), options=opts)
    with pytest.raises(SearchError, match="empty bounding box"):
        Extent.from_bbox(5, 0, 1, 10, "EPSG:32611")


def test_estimate_and_tile_limit(tmp_path, rgb_tif, emb, bar_sketch):
    src = RasterioSource(rgb_tif)
    opts = SearchOptions(index_dir=tmp_path / "i", top_k=3, tile_sizes_m=(60, 120), max_tiles=20, stage2=False)
    est = estimate(emb, [src], options=opts)
    assert (est.tiles, est.cached, est.to_compute) == (35 + 6, 0, 41) and est.seconds > 0
    with pytest.raises(TooManyTiles, match="41 tiles .*limit of 20"):
        search(emb, bar_sketch, [src], options=opts)
    assert search(emb, bar_sketch, [src], options=SearchOptions(**{**opts.__dict__, "max_tiles": 41}))
    assert estimate(emb, [src], options=opts).to_compute == 0


def test_empty_sketch_and_no_sources(tmp_path, rgb_tif, emb, bar_sketch):
    with pytest.raises(EmptySketchError):
        search(emb, np.full((32, 32, 3), 255, np.uint8), [RasterioSource(rgb_tif)],
               options=SearchOptions(index_dir=tmp_path))
    with pytest.raises(SearchError, match="no raster"):
        search(emb, bar_sketch, [], options=SearchOptions(index_dir=tmp_path))


def test_index_and_raster_errors_reach_the_caller_as_search_errors(tmp_path, rgb_tif, emb, bar_sketch, monkeypatch):
    """The API's one error type: the plugin and the CLI show a SearchError's message as it is."""
    import engine.plan
    from engine.index import TileIndexError
    from engine.raster.rasterio_source import RasterError

    for error in (TileIndexError("index entry X: damaged"), RasterError("cannot read X")):
        def fail(*args, error=error):
            raise error

        monkeypatch.setattr(engine.plan, "open_entry", fail)
        opts = SearchOptions(index_dir=tmp_path)
        for call in (lambda: run_search(emb, bar_sketch, [RasterioSource(rgb_tif)], options=opts),
                     lambda: estimate(emb, [RasterioSource(rgb_tif)], options=opts)):
            with pytest.raises(SearchError, match=str(error)) as caught:
                call()
            assert type(caught.value) is SearchError


def test_hits_are_named(tmp_path, rgb_tif, emb, bar_sketch):
    from engine.plan import plan
    from engine.ranking import Hit, merge, stage1

    opts = SearchOptions(index_dir=tmp_path, tile_sizes_m=(60, 120), top_k=3)
    run_search(emb, bar_sketch, [RasterioSource(rgb_tif)], options=opts)  # fills the index
    layers, _ = plan(emb, [RasterioSource(rgb_tif)], None, opts)
    hits = stage1(emb.embed_sketches([bar_sketch]).cls[0], layers, 10)
    assert len(hits) == 10 and all(isinstance(h, Hit) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(0 <= h.layer < len(layers) and h.tile in layers[h.layer].tiles for h in hits)
    best = merge(hits, layers, opts)[0]
    assert (best.score, best.scale) == (hits[0].score, layers[hits[0].layer].grid.tile_m)


class ArraySource:
    """A second RasterSource implementation (pixels held in memory), standing in for the plugin's
    QGIS-provider source: the search must use nothing beyond the protocol."""

    def __init__(self, rgb: np.ndarray, transform: Affine, crs_wkt: str):
        self.rgb, self.transform, self.crs_wkt = rgb, transform, crs_wkt
        self.height, self.width = rgb.shape[:2]
        self.name, self.identity = "memory", f"memory:{hash(rgb.tobytes())}"

    def read_rgb(self, window, out_size):
        from PIL import Image
        c0, r0 = int(round(window.col_off)), int(round(window.row_off))
        c1, r1 = int(round(window.col_off + window.width)), int(round(window.row_off + window.height))
        canvas = np.zeros((r1 - r0, c1 - c0, 3), np.uint8)
        valid = np.zeros((r1 - r0, c1 - c0), bool)
        sub = self.rgb[max(r0, 0):r1, max(c0, 0):c1]
        canvas[max(-r0, 0):max(-r0, 0) + sub.shape[0], max(-c0, 0):max(-c0, 0) + sub.shape[1]] = sub
        valid[max(-r0, 0):max(-r0, 0) + sub.shape[0], max(-c0, 0):max(-c0, 0) + sub.shape[1]] = True
        rgb = np.asarray(Image.fromarray(canvas).resize(out_size[::-1], Image.BILINEAR))
        ok = np.asarray(Image.fromarray(valid).resize(out_size[::-1], Image.NEAREST))
        return rgb, ok


def test_any_raster_source_implementation_works(tmp_path, rgb_tif, geo, emb, bar_sketch):
    from engine.raster import RasterSource
    rio = RasterioSource(rgb_tif)
    mem = ArraySource(geo.pattern(600, 800).transpose(1, 2, 0), rio.transform, rio.crs_wkt)
    assert isinstance(mem, RasterSource)
    opts = SearchOptions(index_dir=tmp_path, top_k=5, tile_sizes_m=(60,))
    a = search(emb, bar_sketch, [mem], options=opts)
    b = search(emb, bar_sketch, [rio], options=opts)
    assert [m.geometry.wkt for m in a] == [m.geometry.wkt for m in b]  # same pixels, same answer
