"""Writing matches as .shp / .gpkg / .geojson, reading them back with GDAL (fiona)."""
from __future__ import annotations

import json

import fiona
import numpy as np
import pytest
from rasterio.warp import transform
from shapely.geometry import box, shape

from engine.export import ExportError, check_output, write_matches
from engine.search import Match
from engine.tiling import parse_crs, reproject

WKT = parse_crs("EPSG:32611").to_wkt()


def _matches():
    return [Match(box(500000, 4000000, 500060, 4000060), WKT, 1, 0.91, "städte.tif", 60.0, 3),
            Match(box(500100, 4000000, 500220, 4000120), WKT, 2, 0.5, "b.tif", 120.0, 1)]


@pytest.mark.parametrize("ext", [".shp", ".gpkg", ".geojson"])
def test_formats_read_back(tmp_path, ext):
    path = write_matches(tmp_path / f"out{ext}", _matches())
    with fiona.open(path) as layer:
        # GeoJSON is always WGS 84 lon/lat (RFC 7946); the others keep the matches' CRS
        assert layer.crs.to_epsg() == (4326 if ext == ".geojson" else 32611)
        assert list(layer.schema["properties"]) == ["rank", "score", "source", "scale", "merged"]
        feats = list(layer)
    assert [f["properties"]["rank"] for f in feats] == [1, 2]
    assert feats[0]["properties"]["score"] == pytest.approx(0.91)
    assert feats[0]["properties"]["source"] == "städte.tif"
    if ext == ".geojson":
        back = reproject(np.array([shape(feats[1]["geometry"])]), "EPSG:4326", WKT)[0]
        assert back.hausdorff_distance(box(500100, 4000000, 500220, 4000120)) < 0.02  # m; 7-decimal rounding
    else:
        assert shape(feats[1]["geometry"]).equals(box(500100, 4000000, 500220, 4000120))
    if ext == ".shp":
        assert (tmp_path / "out.prj").read_text().startswith("PROJCS")
        assert (tmp_path / "out.dbf").is_file() and (tmp_path / "out.shx").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_never_overwrites_unless_asked(tmp_path):
    path = write_matches(tmp_path / "out.shp", _matches())
    (tmp_path / "out.shp").unlink()  # even a leftover part of a shapefile counts
    with pytest.raises(ExportError, match="out.shx exists"):
        write_matches(path, _matches())
    write_matches(path, _matches()[:1], overwrite=True)
    with fiona.open(path) as layer:
        assert len(layer) == 1


def test_bad_outputs_fail_before_any_work(tmp_path):
    with pytest.raises(ExportError, match="unknown output format"):
        check_output(tmp_path / "out.csv")
    with pytest.raises(ExportError, match="does not exist"):
        check_output(tmp_path / "nope" / "out.gpkg")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(ExportError, match="not writable"):
            check_output(ro / "out.gpkg")
    finally:
        ro.chmod(0o700)


def test_empty_result_writes_an_empty_layer(tmp_path):
    path = write_matches(tmp_path / "none.gpkg", [], crs_wkt=WKT)
    with fiona.open(path) as layer:
        assert len(layer) == 0


@pytest.mark.parametrize("ext", [".geojson", ".json"])
def test_geojson_is_written_in_wgs84_lon_lat(tmp_path, ext):
    """RFC 7946: a GeoJSON from a projected CRS (UTM 31N) holds longitude/latitude in degrees, at
    the place the projected corners are (computed independently with GDAL's point transform)."""
    utm = parse_crs("EPSG:32631").to_wkt()
    x0, y0, x1, y1 = 500000.0, 5000000.0, 500060.0, 5000060.0  # near 3° E, 45.15° N
    path = write_matches(tmp_path / f"out{ext}", [Match(box(x0, y0, x1, y1), utm, 1, 0.9, "a.tif", 60.0, 1)])
    doc = json.loads(path.read_text())
    assert "crs" not in doc  # RFC 7946 has no crs member: WGS 84 lon/lat is implied
    ring = np.array(doc["features"][0]["geometry"]["coordinates"][0])
    lons, lats = transform("EPSG:32631", "EPSG:4326", [x0, x1, x1, x0], [y0, y0, y1, y1])
    expected = np.column_stack([lons, lats])
    assert 2.99 < ring[:, 0].min() < 3.01 and 45.1 < ring[:, 1].min() < 45.2  # degrees, lon first
    for corner in expected:  # every projected corner is a vertex of the written ring (1e-7° ≈ 1 cm)
        assert np.abs(ring - corner).max(axis=1).min() < 2e-7
    with fiona.open(path) as layer:
        assert layer.crs.to_epsg() == 4326


def test_shapefile_and_geopackage_keep_a_projected_crs(tmp_path):
    utm = parse_crs("EPSG:32631").to_wkt()
    match = Match(box(500000, 5000000, 500060, 5000060), utm, 1, 0.9, "a.tif", 60.0, 1)
    for name in ("out.shp", "out.gpkg"):
        with fiona.open(write_matches(tmp_path / name, [match])) as layer:
            assert layer.crs.to_epsg() == 32631
            assert shape(next(iter(layer))["geometry"]).equals(match.geometry)


def test_geojson_already_in_wgs84_is_written_unchanged(tmp_path):
    wgs = parse_crs("EPSG:4326").to_wkt()
    geom = box(3.0, 45.0, 3.001, 45.001)
    path = write_matches(tmp_path / "out.geojson", [Match(geom, wgs, 1, 0.9, "a.tif", 60.0, 1)])
    ring = np.array(json.loads(path.read_text())["features"][0]["geometry"]["coordinates"][0])
    assert sorted(map(tuple, ring[:-1].round(7))) == sorted(map(tuple, np.array(geom.exterior.coords)[:-1]))
