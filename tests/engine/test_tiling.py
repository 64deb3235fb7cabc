"""Tiles in ground units: sizes, overlap, extents, rotated and geographic rasters, reprojection."""
from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from affine import Affine
from shapely.geometry import box

from engine.raster.rasterio_source import RasterioSource
from engine.tiling import TilingError, area_in_pixels, make_grid, parse_crs, pixel_size_m, reproject


def test_grid_in_metres_with_overlap(rgb_tif):
    src = RasterioSource(rgb_tif)  # 800 x 600 px at 0.3 m = 240 m x 180 m
    g = make_grid(src, 60, 0.5)
    assert g.tile_c == pytest.approx(200) and g.stride_c == pytest.approx(100)
    assert (g.cols, g.rows) == (7, 5)
    polys = g.polygons(np.arange(g.count))
    assert np.allclose(shapely.area(polys), 3600)
    # neighbours share half a tile
    assert shapely.area(shapely.intersection(polys[0], polys[1])) == pytest.approx(1800)
    # the grid covers the raster
    assert shapely.union_all(polys).contains(box(500000, 4000000 - 180, 500240, 4000000))
    assert make_grid(src, 60, 0.0).count == 4 * 3
    assert make_grid(src, 3, 0.5) is None  # 10 px tiles: too fine for 0.3 m imagery
    with pytest.raises(TilingError):
        make_grid(src, 60, 1.0)


def test_rotated_transform_gives_rotated_tiles(make_tif, geo):
    rot = Affine(0.5, 0, 500000, 0, -0.5, 4000000) @ Affine.rotation(30)
    src = RasterioSource(make_tif("rot.tif", geo.pattern(400, 400), transform=rot))
    assert pixel_size_m(src.crs_wkt, src.transform, 400, 400) == pytest.approx((0.5, 0.5))
    g = make_grid(src, 50, 0.0)
    p = g.polygons(np.array([0]))[0]
    assert p.area == pytest.approx(2500)
    x, y = np.asarray(p.exterior.coords)[:2].T
    assert math.degrees(math.atan2(y[1] - y[0], x[1] - x[0])) == pytest.approx(-30)


def test_geographic_raster_tiles_in_metres(make_tif, geo):
    lat = 37.3
    deg = 0.3 / (111_320 * math.cos(math.radians(lat)))  # ~0.3 m columns
    src = RasterioSource(make_tif("ll.tif", geo.pattern(600, 600), crs="EPSG:4326",
                                  transform=Affine(deg, 0, -120.5, 0, -0.3 / 110_574, lat + 0.001)))
    pc, pr = pixel_size_m(src.crs_wkt, src.transform, 600, 600)
    assert pc == pytest.approx(0.3, rel=1e-3) and pr == pytest.approx(0.3, rel=1e-3)
    g = make_grid(src, 60, 0.5)
    assert g.tile_c == pytest.approx(200, rel=1e-3)
    # reprojected to UTM 10N the tile is about 60 m x 60 m
    utm = reproject(g.polygons(np.array([0])), src.crs_wkt, parse_crs("EPSG:32610").to_wkt())[0]
    assert utm.area == pytest.approx(3600, rel=0.01)


def test_extent_selects_tiles_in_any_crs(rgb_tif):
    src = RasterioSource(rgb_tif)
    g = make_grid(src, 60, 0.5)
    # the top-left 60 m x 60 m corner, given in UTM
    area = area_in_pixels(box(500000, 4000000 - 60, 500060, 4000000), "EPSG:32611", src)
    ids = g.select(area)
    assert 0 in ids and len(ids) == 4  # the tile itself plus the overlapping neighbours
    # the same area given in WGS 84
    ll = reproject(np.array([box(500001, 4000000 - 59, 500059, 3999999)]), src.crs_wkt, "EPSG:4326")[0]
    ids_ll = g.select(area_in_pixels(ll, "EPSG:4326", src))
    assert set(ids_ll) == set(ids)
    # outside the raster
    assert len(g.select(area_in_pixels(box(0, 0, 10, 10), "EPSG:32611", src))) == 0
    # a polygon extent: a thin diagonal strip selects fewer tiles than its bounding box
    strip = shapely.Polygon([(500000, 4000000), (500020, 4000000), (500240, 3999820), (500220, 3999820)])
    in_strip = g.select(area_in_pixels(strip, "EPSG:32611", src))
    in_box = g.select(area_in_pixels(box(*strip.bounds), "EPSG:32611", src))
    assert 0 < len(in_strip) < len(in_box)


def test_unknown_crs_is_a_clear_error():
    with pytest.raises(TilingError, match="unknown CRS"):
        parse_crs("EPSG:999999")
