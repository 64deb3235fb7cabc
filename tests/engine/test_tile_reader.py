"""The tile reader (engine/index/tile_reader.py): tiles cut from one block read equal one window
read per tile, bit for bit, on real GeoTIFFs of every kind the engine reads; batches in order;
the batch normalisation equals the per-image one; an index built with it equals one built tile by
tile."""
from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.enums import ColorInterp

from engine.index.tile_reader import BatchReader, block_order, output_stride, read_tiles
from engine.preprocess import normalise, normalise_batch
from engine.raster.rasterio_source import RasterioSource
from engine.tiling import make_grid


def per_tile(source, grid, tiles, size, min_valid):
    """The reference: one window read per tile, as RasterSource.read_rgb gives it."""
    images, kept, skipped = [], [], []
    for t in tiles:
        rgb, valid = source.read_rgb(grid.window(t), (size, size))
        share = valid.mean()
        (kept if share >= min_valid and share > 0 else skipped).append(t)
        if kept and kept[-1] == t:
            images.append(rgb)
    return np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8), kept, skipped


def assert_same_tiles(source, tile_m, size, overlap=0.5, min_valid=0.5, tiles=None, blockwise_expected=True):
    grid = make_grid(source, tile_m, overlap)
    tiles = np.arange(grid.count) if tiles is None else np.asarray(tiles)
    if blockwise_expected:
        assert output_stride(grid, size) is not None
    images, kept, skipped = read_tiles(source, grid, tiles, size, min_valid)
    ref_images, ref_kept, ref_skipped = per_tile(source, grid, tiles, size, min_valid)
    assert list(kept) == ref_kept and list(skipped) == ref_skipped
    np.testing.assert_array_equal(images, ref_images)
    return grid, kept


@pytest.fixture
def pat(geo):
    return geo.pattern(600, 800)


@pytest.mark.parametrize("pixel, size", [(0.3, 64),    # shrinking: GDAL's average
                                         (2.0, 64),    # enlarging: bilinear
                                         (0.5, 160)])  # about 1:1 at the default model's size
def test_block_reads_equal_tile_reads_8bit(make_tif, pat, pixel, size):
    tif = make_tif("a.tif", pat, transform=Affine(pixel, 0, 500000, 0, -pixel, 4000000))
    assert_same_tiles(RasterioSource(tif), 60, size)


def test_rotated_geographic_and_other_crs(make_tif, pat):
    rotated = make_tif("rot.tif", pat, transform=Affine(0.28, 0.1, 500000, 0.1, -0.28, 4000000))
    assert_same_tiles(RasterioSource(rotated), 60, 64)
    lonlat = make_tif("ll.tif", pat, transform=Affine(3e-6, 0, -120, 0, -3e-6, 37), crs="EPSG:4326")
    assert_same_tiles(RasterioSource(lonlat), 60, 64)
    lambert = make_tif("l93.tif", pat, transform=Affine(0.25, 0, 700000, 0, -0.25, 6600000), crs="EPSG:2154")
    assert_same_tiles(RasterioSource(lambert), 60, 64)


def test_nodata_alpha_and_masks(make_tif, pat):
    holes = pat.copy()
    holes[:, 100:300, 200:500] = 0
    grid, kept = assert_same_tiles(RasterioSource(make_tif("nd.tif", holes, nodata=0)), 60, 64)
    assert len(kept) < grid.count  # some tiles were mostly nodata and skipped
    alpha = np.concatenate([pat, np.full((1, 600, 800), 255, np.uint8)])
    alpha[3, 300:, :400] = 0
    tif = make_tif("alpha.tif", alpha, colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                                                    ColorInterp.alpha])
    assert_same_tiles(RasterioSource(tif), 60, 64)
    assert_same_tiles(RasterioSource(tif), 60, 64, min_valid=0.0)


def test_16bit_stretch_float_nan_and_grey(make_tif, pat):
    assert_same_tiles(RasterioSource(make_tif("u16.tif", pat.astype(np.uint16) * 40 + 1000)), 60, 64)
    floats = pat.astype(np.float32) / 7
    floats[:, 50:90, 60:400] = np.nan
    assert_same_tiles(RasterioSource(make_tif("f32.tif", floats)), 60, 64)
    assert_same_tiles(RasterioSource(make_tif("grey.tif", pat), bands=(2,)), 30, 64)


def test_vrt_cog_with_overviews(tmp_path, geo, pat):
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.shutil import copy as rio_copy

    tif = geo.write_tif(tmp_path / "src.tif", np.tile(pat, (1, 2, 2)), tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(tif, "r+") as ds:
        ds.build_overviews([2, 4], Resampling.average)
    assert_same_tiles(RasterioSource(geo.write_vrt(tmp_path / "m.vrt", tif)), 120, 64)
    cog = tmp_path / "cog.tif"
    rio_copy(tif, cog, driver="COG", compress="DEFLATE")
    assert_same_tiles(RasterioSource(cog), 240, 64)  # 800 px tiles at 64 px: overviews are used


def test_edge_tiles_sparse_sets_and_fractional_strides(make_tif, pat):
    src = RasterioSource(make_tif("a.tif", pat))
    grid = make_grid(src, 60, 0.5)
    rng = np.random.default_rng(3)
    assert_same_tiles(src, 60, 64, tiles=np.sort(rng.choice(grid.count, 9, replace=False)))
    # 64 px tiles at 30 % overlap: a stride of 44.8 px, so every tile is read on its own
    assert output_stride(make_grid(src, 60, 0.3), 64) is None
    assert_same_tiles(src, 60, 64, overlap=0.3, blockwise_expected=False)


def test_reads_of_fine_imagery_stay_bounded(make_tif, pat, monkeypatch):
    import engine.index.tile_reader as tr

    calls = []
    src = RasterioSource(make_tif("a.tif", pat))
    real = src.read_rgb
    monkeypatch.setattr(src, "read_rgb", lambda w, out: calls.append(w.width * w.height) or real(w, out))
    monkeypatch.setattr(tr, "MAX_BLOCK_PX", 300 * 300)  # fewer source pixels than two 200 px tiles take
    assert_same_tiles(src, 60, 64)
    assert max(calls) <= 300 * 300


def test_block_order_makes_compact_batches():
    from types import SimpleNamespace

    grid = SimpleNamespace(cols=100)
    tiles = np.arange(100 * 40)
    ordered = block_order(grid, tiles, 32)
    assert sorted(ordered) == list(tiles)
    rows, cols = np.divmod(ordered[:32], 100)
    assert np.ptp(rows) + 1 == 4 and np.ptp(cols) + 1 == 8  # one 4 x 8 block


def test_batch_reader_threads_give_the_batches_in_order(make_tif, pat):
    src = RasterioSource(make_tif("a.tif", pat, transform=Affine(0.1, 0, 500000, 0, -0.1, 4000000)))
    grid = make_grid(src, 20, 0.5)
    todo = np.arange(grid.count)
    seen = []
    for threads in (1, 3):
        reader = BatchReader(src, grid, todo, 8, 32, 0.5, read_tiles, threads=threads)
        got = list(reader)
        assert [list(t) for t, *_ in got] == [list(b) for b in reader.batches]
        assert sorted(np.concatenate([t for t, *_ in got])) == list(todo)
        for tiles, images, kept, skipped in got:
            assert len(images) == len(kept) and sorted(list(kept) + list(skipped)) == sorted(tiles)
            ref, ref_kept, _ = per_tile(src, grid, tiles, 32, 0.5)
            assert list(kept) == ref_kept
            np.testing.assert_array_equal(images, ref)
        seen.append(np.concatenate([i for _, i, *_ in got]))
    np.testing.assert_array_equal(seen[0], seen[1])


def test_normalise_batch_equals_normalise(pat):
    tiles = np.stack([pat[:, :64, i:i + 64].transpose(1, 2, 0) for i in range(0, 320, 64)])
    for mean, std in (((0.5,) * 3, (0.5,) * 3), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
        ref = np.stack([normalise(t, mean, std) for t in tiles])
        np.testing.assert_array_equal(normalise_batch(tiles, mean, std), ref)
        np.testing.assert_array_equal(normalise_batch(tiles, mean, std, channels_last=True).transpose(0, 3, 1, 2), ref)


def test_embedder_batch_path_equals_per_image_path(emb, pat, monkeypatch):
    import torch

    tiles = np.ascontiguousarray(np.stack([pat[:, :64, i:i + 64].transpose(1, 2, 0) for i in range(0, 640, 64)]))
    slow = emb.embed_images(list(tiles)).cls  # a list: each image prepared on its own
    np.testing.assert_allclose(emb.embed_prepared(emb.prepare_batch(tiles)).cls, slow, atol=1e-6)
    np.testing.assert_allclose(emb.embed_images(tiles).cls, slow, atol=1e-6)
    # a CNN trunk gets its channels-last layout without a copy
    monkeypatch.setattr(emb, "channels_last", True)
    prepared = emb.prepare_batch(tiles)
    assert prepared.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(emb.embed_prepared(prepared).cls, slow, atol=1e-5)
    # the CUDA path's normalisation (uint8 tiles looked up on the device), run here on the CPU
    on_device = emb._normalise_on_device(torch.from_numpy(tiles))
    np.testing.assert_array_equal(on_device.numpy(), normalise_batch(tiles, emb.cfg.mean, emb.cfg.std))


def test_index_built_with_block_reads_equals_one_built_tile_by_tile(tmp_path, make_tif, pat, emb, monkeypatch):
    """The same vectors as before the tile reader: a whole build against one whose reads go tile by
    tile through RasterSource.read_rgb (the old pipeline)."""
    import engine.index.build as build
    from engine.index import list_entries
    from engine.search import SearchOptions, build_index

    holes = pat.copy()
    holes[:, 350:, 500:] = 0
    src = RasterioSource(make_tif("a.tif", holes, nodata=0, transform=Affine(0.28, 0.05, 500000, 0.05, -0.28, 4000000)))
    opts = dict(tile_sizes_m=(30, 60), stage2=False)
    build_index(emb, [src], options=SearchOptions(index_dir=tmp_path / "blocks", **opts))
    def tile_by_tile(source, grid, tiles, size, min_valid):
        images, kept, skipped = per_tile(source, grid, tiles, size, min_valid)
        return images, np.asarray(kept, np.int64), np.asarray(skipped, np.int64)

    monkeypatch.setattr(build, "read_tiles", tile_by_tile)
    build_index(emb, [src], options=SearchOptions(index_dir=tmp_path / "tiles", **opts))
    blocks, tiles = list_entries(tmp_path / "blocks"), list_entries(tmp_path / "tiles")
    assert len(blocks) == len(tiles) == 2
    for a, b in zip(sorted(blocks, key=lambda e: e["key"]["tile_m"]), sorted(tiles, key=lambda e: e["key"]["tile_m"])):
        assert a["embedded"] == b["embedded"] > 0
        va = np.fromfile(f"{a['folder']}/cls.f32", np.float32)
        vb = np.fromfile(f"{b['folder']}/cls.f32", np.float32)
        np.testing.assert_allclose(va, vb, atol=1e-6)


@pytest.mark.parametrize("name, pixel, crs, size, scales", [
    ("utm.tif", 0.3, "EPSG:32611", 64, (30, 60)),      # shrinking: average
    ("enl.tif", 2.0, "EPSG:32611", 64, (120, 240)),    # enlarging: bilinear
    ("one.tif", 0.3, "EPSG:32611", 160, (30, 60)),     # about 1:1: bilinear
    ("ll.tif", 3e-6, "EPSG:4326", 64, (30, 60)),       # fractional windows
    ("l93.tif", 0.25, "EPSG:2154", 64, (30, 60))])
def test_regions_decoded_once_give_the_tiles_of_per_scale_reads(make_tif, pat, name, pixel, crs, size, scales):
    """Every scale cut from one decoding of each region (RegionReader, small regions so tiles cross
    their borders) against each scale's own block reads of the file: the same tiles, kept and
    skipped alike; pixels equal but for rare +-1 roundings of GDAL's resampling at other absolute
    offsets (under 1e-4 of the values)."""
    from engine.index.tile_reader import RegionReader

    x0, y0 = (-120, 37) if crs == "EPSG:4326" else (500000, 4000000)
    src = RasterioSource(make_tif(name, pat, crs=crs, transform=Affine(pixel, 0, x0, 0, -pixel, y0)))
    assert src.region_reads
    parts = [(g, np.arange(g.count)) for g in (make_grid(src, m, 0.5) for m in scales)]
    reader = RegionReader(src, parts, 8, size, 0.5, read_tiles, side=int(parts[0][0].tile_c * 1.25), threads=2)
    assert len(reader.plan) > 4
    got = {0: [], 1: []}
    for pi, tiles, images, kept, skipped in reader:
        got[pi].append((tiles, images, kept, skipped))
    for pi, (grid, tiles) in enumerate(parts):
        assert sorted(np.concatenate([t for t, *_ in got[pi]])) == list(tiles)
        kept = np.concatenate([k for *_, k, _ in got[pi]])
        images = np.concatenate([i for _, i, _, _ in got[pi]])[np.argsort(kept)]
        ref, ref_kept, ref_skipped = read_tiles(src, grid, tiles, size, 0.5)
        assert list(np.sort(kept)) == list(ref_kept)
        assert sorted(np.concatenate([s for *_, s in got[pi]])) == list(ref_skipped)
        diff = np.abs(images.astype(np.int16) - ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


def test_regions_only_where_they_resample_as_the_file(make_tif, pat, tmp_path):
    import rasterio
    from rasterio.enums import Resampling

    from engine.index.tile_reader import region_side

    plain = RasterioSource(make_tif("a.tif", pat))
    grids = [make_grid(plain, m, 0.5) for m in (30, 60)]
    assert plain.region_reads and region_side(plain, grids) is not None
    assert region_side(plain, grids[:1]) is None  # one scale: nothing to share
    holes = RasterioSource(make_tif("nd.tif", pat, nodata=0))
    assert not holes.region_reads  # GDAL's averages weigh the mask
    tif = make_tif("ovr.tif", pat)
    with rasterio.open(tif, "r+") as ds:
        ds.build_overviews([2], Resampling.average)
    assert not RasterioSource(tif).region_reads  # coarse scales read the overviews
    from engine.index.tile_reader import RegionReader

    side = region_side(plain, grids)
    whole = RegionReader(plain, [(g, np.arange(g.count)) for g in grids], 8, 64, 0.5, read_tiles, side)
    leftovers = RegionReader(plain, [(g, np.arange(0, g.count, 9)) for g in grids], 8, 64, 0.5, read_tiles, side)
    assert whole.worthwhile and not leftovers.worthwhile  # a sparse set is read scale by scale
    view = plain.region(grids[0].window(3)).open()
    with pytest.raises(TypeError):
        view.clone()
    view.close()


def test_index_built_from_regions_equals_one_built_scale_by_scale(tmp_path, make_tif, pat, emb, monkeypatch):
    """A build whose scales share decoded regions against one where each scale reads the file:
    the same tiles kept and skipped, vectors within float tolerance; regions stay within
    REGION_SIDE^2 source pixels."""
    import engine.index.build as build
    import engine.index.tile_reader as tr
    from engine.index import list_entries
    from engine.search import SearchOptions, build_index

    src = RasterioSource(make_tif("a.tif", pat, transform=Affine(0.28, 0.05, 500000, 0.05, -0.28, 4000000)))
    opts = dict(tile_sizes_m=(20, 30, 60), stage2=False)
    monkeypatch.setattr(tr, "REGION_SIDE", 700)  # several regions in a small raster
    windows = []
    real_region = RasterioSource.region
    monkeypatch.setattr(RasterioSource, "region", lambda self, w, **kw: windows.append(w) or real_region(self, w, **kw))
    build_index(emb, [src], options=SearchOptions(index_dir=tmp_path / "regions", **opts))
    assert len(windows) > 2 and max(w.width * w.height for w in windows) <= 700 ** 2
    monkeypatch.setattr(build, "region_side", lambda source, grids: None)
    build_index(emb, [src], options=SearchOptions(index_dir=tmp_path / "scales", **opts))
    a, b = (sorted(list_entries(tmp_path / d), key=lambda e: e["key"]["tile_m"]) for d in ("regions", "scales"))
    assert len(a) == len(b) == 3
    for ea, eb in zip(a, b):
        assert ea["embedded"] == eb["embedded"] > 0 and ea["skipped"] == eb["skipped"]
        np.testing.assert_allclose(np.fromfile(f"{ea['folder']}/cls.f32", np.float32),
                                   np.fromfile(f"{eb['folder']}/cls.f32", np.float32), atol=1e-5)


@pytest.mark.parametrize("bands", [(2,), (3, 2, 1)])
def test_regions_keep_the_band_mapping(make_tif, pat, bands):
    """Grey and reordered bands: a region holds each band once and reads them as the file does."""
    from engine.index.tile_reader import RegionReader

    src = RasterioSource(make_tif("a.tif", pat), bands=bands)
    parts = [(g, np.arange(g.count)) for g in (make_grid(src, m, 0.5) for m in (30, 60))]
    got = {0: [], 1: []}
    for pi, _tiles, images, kept, _skipped in RegionReader(src, parts, 8, 64, 0.5, read_tiles, side=125, threads=2):
        got[pi].append((kept, images))
    for pi, (grid, tiles) in enumerate(parts):
        kept = np.concatenate([k for k, _ in got[pi]])
        ref, ref_kept, _ = read_tiles(src, grid, tiles, 64, 0.5)
        assert list(np.sort(kept)) == list(ref_kept)
        np.testing.assert_array_equal(np.concatenate([i for _, i in got[pi]])[np.argsort(kept)], ref)
