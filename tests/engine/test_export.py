"""Writing matches as .shp / .gpkg / .geojson, reading them back with GDAL (fiona)."""
from __future__ import annotations

import fiona
import pytest
from shapely.geometry import box, shape

from engine.export import ExportError, check_output, write_matches
from engine.search import Match
from engine.tiling import parse_crs

WKT = parse_crs("EPSG:32611").to_wkt()


def _matches():
    return [Match(box(500000, 4000000, 500060, 4000060), WKT, 1, 0.91, "städte.tif", 60.0, 3),
            Match(box(500100, 4000000, 500220, 4000120), WKT, 2, 0.5, "b.tif", 120.0, 1)]


@pytest.mark.parametrize("ext", [".shp", ".gpkg", ".geojson"])
def test_formats_read_back(tmp_path, ext):
    path = write_matches(tmp_path / f"out{ext}", _matches())
    with fiona.open(path) as layer:
        assert layer.crs.to_epsg() == 32611
        assert list(layer.schema["properties"]) == ["rank", "score", "source", "scale", "merged"]
        feats = list(layer)
    assert [f["properties"]["rank"] for f in feats] == [1, 2]
    assert feats[0]["properties"]["score"] == pytest.approx(0.91)
    assert feats[0]["properties"]["source"] == "städte.tif"
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
