"""RasterioSource on real GeoTIFFs of every kind the issue names."""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, Resampling

from engine.raster import RasterSource, Window
from engine.raster.rasterio_source import RasterError, RasterioSource, vrt_source_paths


def test_8bit_rgb_reads_pixels_unchanged(rgb_tif):
    src = RasterioSource(rgb_tif)
    assert isinstance(src, RasterSource)
    assert (src.width, src.height) == (800, 600)
    with rasterio.open(rgb_tif) as ds:
        truth = ds.read(window=rasterio.windows.Window(100, 50, 64, 64)).transpose(1, 2, 0)
    rgb, valid = src.read_rgb(Window(100, 50, 64, 64), (64, 64))
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    assert valid.all()
    np.testing.assert_array_equal(rgb, truth)


def test_window_over_the_edge_is_invalid_outside(rgb_tif):
    src = RasterioSource(rgb_tif)
    rgb, valid = src.read_rgb(Window(700, 500, 200, 200), (100, 100))  # half outside in both axes
    assert valid[:50, :50].all() and not valid[50:, :].any() and not valid[:, 50:].any()
    assert (rgb[60:, 60:] == 0).all()
    rgb, valid = src.read_rgb(Window(900, 0, 50, 50), (10, 10))  # wholly outside
    assert not valid.any()


def test_16bit_stretch_uses_whole_raster_statistics(make_tif, geo):
    base = geo.pattern(256, 256).astype(np.uint16) * 40 + 1000  # values 1000..11200
    path = make_tif("u16.tif", base)
    src = RasterioSource(path)
    # A dark tile and a bright tile keep their difference (no per-tile stretch).
    flat = np.full((3, 256, 256), 1000, np.uint16)
    flat[:, :, 128:] = 11000
    src2 = RasterioSource(make_tif("u16b.tif", np.concatenate([flat, base], axis=2)))
    dark, _ = src2.read_rgb(Window(0, 0, 64, 64), (32, 32))
    bright, _ = src2.read_rgb(Window(192, 0, 64, 64), (32, 32))
    assert dark.max() < 20 and bright.min() > 235
    rgb, valid = src.read_rgb(Window(0, 0, 256, 256), (128, 128))
    assert valid.all() and rgb.min() == 0 and rgb.max() == 255
    lo, hi = np.percentile(base[0], [2, 98])
    assert src._lut[0][0] == pytest.approx(lo, rel=0.02) and src._lut[0][1] == pytest.approx(hi, rel=0.02)


def test_float_with_nan_and_one_band_grey(make_tif, geo):
    data = geo.pattern(128, 128)[0].astype(np.float32) / 255.0
    data[:10, :] = np.nan
    src = RasterioSource(make_tif("f.tif", data))
    assert src.bands == (1, 1, 1)
    rgb, valid = src.read_rgb(Window(0, 0, 128, 128), (128, 128))
    assert not valid[:10].any() and valid[10:].all()
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert rgb[10:].std() > 20  # stretched to use the range


def test_four_bands_colour_interpretation_and_mapping(make_tif, geo):
    img = geo.pattern(64, 64)
    nir = np.full((1, 64, 64), 7, np.uint8)
    # Stored as NIR, B, G, R with colour interpretation saying so.
    data = np.concatenate([nir, img[2:3], img[1:2], img[0:1]])
    path = make_tif("bgrn.tif", data,
                    colorinterp=[ColorInterp.undefined, ColorInterp.blue, ColorInterp.green, ColorInterp.red])
    src = RasterioSource(path)
    assert src.bands == (4, 3, 2)
    rgb, _ = src.read_rgb(Window(0, 0, 64, 64), (64, 64))
    np.testing.assert_array_equal(rgb, img.transpose(1, 2, 0))
    plain = make_tif("plain4.tif", np.concatenate([img, nir]),
                     colorinterp=[ColorInterp.undefined] * 4)
    assert RasterioSource(plain).bands == (1, 2, 3)
    assert RasterioSource(plain, bands=(4,)).bands == (4, 4, 4)
    with pytest.raises(RasterError, match="band mapping"):
        RasterioSource(plain, bands=(1, 2, 5))


def test_nodata_and_alpha_give_invalid_pixels(make_tif, geo):
    img = geo.pattern(64, 64)
    img[:, :, :16] = 0
    src = RasterioSource(make_tif("nd.tif", img, nodata=0))
    _, valid = src.read_rgb(Window(0, 0, 64, 64), (64, 64))
    assert not valid[:, :16].any() and valid[:, 20:].mean() > 0.95
    alpha = np.full((1, 64, 64), 255, np.uint8)
    alpha[:, 32:] = 0
    src = RasterioSource(make_tif("alpha.tif", np.concatenate([geo.pattern(64, 64), alpha]),
                                  colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                                               ColorInterp.alpha]))
    _, valid = src.read_rgb(Window(0, 0, 64, 64), (64, 64))
    assert valid[32:].sum() == 0 and valid[:32].all()


def test_rotated_and_geographic_rasters_open(make_tif, geo):
    rot = Affine(0.3, 0, 500000, 0, -0.3, 4000000) @ Affine.rotation(30)
    src = RasterioSource(make_tif("rot.tif", geo.pattern(64, 64), transform=rot))
    assert src.transform == rot
    geo_src = RasterioSource(make_tif("ll.tif", geo.pattern(64, 64), crs="EPSG:4326",
                                      transform=Affine(3e-6, 0, -120.5, 0, -3e-6, 37.3)))
    assert "WGS 84" in geo_src.crs_wkt


def test_overviews_used_and_cog_and_vrt(tmp_path, geo):
    path = geo.write_tif(tmp_path / "big.tif", geo.pattern(1024, 1024), tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([4], Resampling.average)
    src = RasterioSource(path)
    rgb, valid = src.read_rgb(Window(0, 0, 1024, 1024), (256, 256))
    with rasterio.open(path) as ds:
        ovr = ds.read(out_shape=(3, 256, 256), resampling=Resampling.average).transpose(1, 2, 0)
    assert valid.all() and np.abs(rgb.astype(int) - ovr.astype(int)).mean() < 1.0
    cog = tmp_path / "cog.tif"
    with rasterio.open(path) as ds:
        profile = ds.profile | {"driver": "COG"}
        profile.pop("blockxsize"), profile.pop("blockysize"), profile.pop("tiled"), profile.pop("interleave", None)
        with rasterio.open(cog, "w", **profile) as dst:
            dst.write(ds.read())
    rgb_cog, _ = RasterioSource(cog).read_rgb(Window(10, 20, 64, 64), (64, 64))
    rgb_tif, _ = src.read_rgb(Window(10, 20, 64, 64), (64, 64))
    np.testing.assert_array_equal(rgb_cog, rgb_tif)
    vrt = geo.write_vrt(tmp_path / "mosaic.vrt", path, relative=False)
    rgb_vrt, _ = RasterioSource(vrt).read_rgb(Window(10, 20, 64, 64), (64, 64))
    np.testing.assert_array_equal(rgb_vrt, rgb_tif)


def test_identity_changes_with_file_and_bands(rgb_tif, geo):
    a = RasterioSource(rgb_tif).identity
    assert RasterioSource(rgb_tif, bands=(3, 2, 1)).identity != a
    st = os.stat(rgb_tif)
    geo.write_tif(rgb_tif, geo.pattern(600, 800, seed=1))
    os.utime(rgb_tif, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert RasterioSource(rgb_tif).identity != a


def _rewrite(path, geo, seed):
    """New pixels in the same file, with a later mtime (even on coarse-clock filesystems)."""
    st = os.stat(path)
    geo.write_tif(path, geo.pattern(64, 96, seed=seed))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_vrt_identity_follows_its_source_files(tmp_path, geo, monkeypatch):
    """A .vrt holds no pixels: rewriting or touching its source GeoTIFF must change its identity
    (the index key) although the .vrt file itself is untouched. The source is named relative to the
    VRT, and the working directory is elsewhere, so it must be resolved against the VRT's folder."""
    data = tmp_path / "data"
    data.mkdir()
    tif = geo.write_tif(data / "src.tif", geo.pattern(64, 96, seed=0))
    vrt = geo.write_vrt(data / "m.vrt", tif)  # <SourceFilename relativeToVRT="1">src.tif</SourceFilename>
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert vrt_source_paths(vrt) == [str(tif.resolve())] * 3
    a = RasterioSource(vrt)
    assert RasterioSource(vrt).identity == a.identity  # stable while nothing changes
    win = Window(0, 0, 96, 64)
    before = a.read_rgb(win, (64, 96))[0]
    vrt_stat = os.stat(vrt)
    _rewrite(tif, geo, seed=1)
    assert (os.stat(vrt).st_size, os.stat(vrt).st_mtime_ns) == (vrt_stat.st_size, vrt_stat.st_mtime_ns)
    b = RasterioSource(vrt)
    assert b.identity != a.identity
    assert not np.array_equal(before, b.read_rgb(win, (64, 96))[0])  # the pixels did change
    # touching alone (same bytes, new mtime) counts too, as for a plain file
    st = os.stat(tif)
    os.utime(tif, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert RasterioSource(vrt).identity != b.identity
    # the VRT's own path stays the prefix that `index clear` matches on
    assert b.identity.startswith(str(vrt.resolve()) + "|")


def test_nested_and_absolute_vrt_sources_count(tmp_path, geo):
    tif = geo.write_tif(tmp_path / "src.tif", geo.pattern(64, 96, seed=0))
    inner = geo.write_vrt(tmp_path / "inner.vrt", tif, relative=False)  # absolute path
    outer = geo.write_vrt(tmp_path / "outer.vrt", inner)  # relative: inner.vrt
    a_inner, a_outer = RasterioSource(inner).identity, RasterioSource(outer).identity
    _rewrite(tif, geo, seed=2)
    assert RasterioSource(inner).identity != a_inner
    assert RasterioSource(outer).identity != a_outer  # through the inner VRT to the GeoTIFF


@pytest.mark.skipif(not (shutil.which("gdalbuildvrt") and shutil.which("gdalwarp")),
                    reason="GDAL command-line tools absent")
def test_vrts_written_by_gdal_tools_follow_their_sources(tmp_path, geo):
    """What gdalbuildvrt (SourceFilename, relativeToVRT="1") and gdalwarp -of VRT (SourceDataset)
    write, not only our hand-written XML."""
    a = geo.write_tif(tmp_path / "a.tif", geo.pattern(64, 96, seed=0))
    b = geo.write_tif(tmp_path / "b.tif", geo.pattern(64, 96, seed=1),
                      transform=Affine(0.3, 0, 500000 + 96 * 0.3, 0, -0.3, 4000000))
    subprocess.run(["gdalbuildvrt", "-q", "mosaic.vrt", "a.tif", "b.tif"], cwd=tmp_path, check=True)
    subprocess.run(["gdalwarp", "-q", "-of", "VRT", "-t_srs", "EPSG:4326", "b.tif", "warped.vrt"],
                   cwd=tmp_path, check=True)
    assert sorted(set(vrt_source_paths(tmp_path / "mosaic.vrt"))) == [str(a.resolve()), str(b.resolve())]
    assert vrt_source_paths(tmp_path / "warped.vrt") == [str(b.resolve())]
    before = {v: RasterioSource(tmp_path / v).identity for v in ("mosaic.vrt", "warped.vrt")}
    _rewrite(b, geo, seed=3)
    assert all(RasterioSource(tmp_path / v).identity != before[v] for v in before)


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(RasterError, match="not found"):
        RasterioSource(tmp_path / "missing.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all")
    with pytest.raises(RasterError, match="cannot read raster"):
        RasterioSource(bad)
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(RasterError, match="coordinate reference system"):
        RasterioSource(plain)
