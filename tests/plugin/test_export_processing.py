"""Export of a result layer (Shapefile, GeoPackage; never overwriting unasked) and the Processing
algorithm run through processing.run."""
from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsGraduatedSymbolRenderer, QgsVectorLayer
from sketch_search_plugin import export
from sketch_search_plugin.result_layer import build_result_layer
from sketch_search_plugin.sketch_canvas import SketchCanvas

from .conftest import plane_strokes

pytestmark = pytest.mark.qgis
UTM33 = ('PROJCS["WGS 84 / UTM zone 33N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
         'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],'
         'PROJECTION["Transverse_Mercator"],'
         'PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",15],PARAMETER["scale_factor",0.9996],'
         'PARAMETER["false_easting",500000],PARAMETER["false_northing",0],'
         'UNIT["metre",1],AUTHORITY["EPSG","32633"]]')


def square_wkt(x0: float, y0: float, side: float) -> str:
    return f"POLYGON(({x0} {y0},{x0 + side} {y0},{x0 + side} {y0 + side},{x0} {y0 + side},{x0} {y0}))"


def sample_layer():
    """Matches as the worker sends them (protocol dicts), made into the result layer."""
    matches = [{"wkt": square_wkt(500000 + 50 * i, 5000000, 60), "rank": i + 1, "score": 0.9 - 0.1 * i,
                "source": "scène ü", "scale": 60.0 * (1 + i % 2)} for i in range(4)]
    return build_result_layer(matches, UTM33, "Sketch matches 12:00:00 plane"), matches


@pytest.mark.parametrize("suffix", [".shp", ".gpkg"])
def test_export_reads_back(qgis_app, tmp_path, suffix):
    layer, matches = sample_layer()
    assert isinstance(layer.renderer(), QgsGraduatedSymbolRenderer)
    path = export.write_layer(layer, tmp_path / f"matches{suffix}")
    back = QgsVectorLayer(str(path), "back", "ogr")
    assert back.isValid() and back.featureCount() == 4
    assert back.crs().authid() == "EPSG:32633"
    names = [f.name() for f in back.fields()]
    assert all(n in names for n in ("rank", "score", "source", "scale"))
    rows = sorted(back.getFeatures(), key=lambda f: f["rank"])
    for f, m in zip(rows, matches):
        assert (f["rank"], f["source"], f["scale"]) == (m["rank"], m["source"], m["scale"])
        assert f["score"] == pytest.approx(m["score"])
        assert f.geometry().boundingBox().xMinimum() == pytest.approx(float(m["wkt"][9:15]))
        assert f.geometry().area() == pytest.approx(3600.0)


def test_export_never_overwrites_unasked(qgis_app, tmp_path, monkeypatch):
    layer, _ = sample_layer()
    target = tmp_path / "out.shp"
    export.write_layer(layer, target)
    stamp = target.stat().st_mtime_ns
    with pytest.raises(FileExistsError):
        export.write_layer(layer, target)
    with pytest.raises(export.ExportError, match="name it .gpkg"):
        export.write_layer(layer, tmp_path / "out.txt")
    # Through the dialog path: the file dialog (modal, cannot run in a test) answers with the
    # existing file; declining the question leaves the file untouched, accepting replaces it.
    monkeypatch.setattr(export.QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), "ESRI Shapefile (*.shp)")))
    asked = []
    assert export.export_with_dialog(layer, None, confirm=lambda p: asked.append(p) or False) is None
    assert asked == [target] and target.stat().st_mtime_ns == stamp
    assert export.export_with_dialog(layer, None, confirm=lambda p: True) == target
    assert QgsVectorLayer(str(target), "again", "ogr").featureCount() == 4


@pytest.fixture
def provider(qgis_app):
    from sketch_search_plugin.processing.provider import SketchSearchProvider

    provider = SketchSearchProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    yield provider
    QgsApplication.processingRegistry().removeProvider(provider)


def _plane_sketch(tmp_path: Path) -> Path:
    canvas = SketchCanvas()
    for stroke in plane_strokes():
        canvas.add_stroke(stroke, width=8)
    sketch = tmp_path / "plane.png"
    canvas.save_image(sketch)
    return sketch


def test_processing_algorithm_runs_through_processing_run(provider, tmp_path, geotiff, tiny_checkpoint):
    import processing

    sketch = _plane_sketch(tmp_path)
    out = tmp_path / "matches.gpkg"
    result = processing.run("sketchsearch:sketchsearch", {
        "SKETCH": str(sketch), "LAYERS": [str(geotiff)], "EXTENT": "500032,500224,5000032,5000224 [EPSG:32633]",
        "TOP_K": 3, "TILE_SIZES": "64", "STAGE2": True, "CHECKPOINT": str(tiny_checkpoint), "OUTPUT": str(out)})
    layer = QgsVectorLayer(result["OUTPUT"], "out", "ogr")
    assert Path(result["OUTPUT"].split("|")[0]) == out and layer.isValid()
    feats = sorted(layer.getFeatures(), key=lambda f: f["rank"])
    assert [f["rank"] for f in feats] == list(range(1, len(feats) + 1)) and 1 <= len(feats) <= 3
    assert all(f["scale"] == 64.0 and f["source"] == "scene" for f in feats)
    assert layer.crs().authid() == "EPSG:32633"
    for f in feats:  # inside the extent asked for (tiles may reach out by less than one tile)
        b = f.geometry().boundingBox()
        assert 500032 - 64 <= b.xMinimum() and b.xMaximum() <= 500224 + 64


def test_processing_writes_geojson_in_wgs84(provider, tmp_path, geotiff, tiny_checkpoint):
    """GeoJSON output is longitude/latitude in WGS 84 (RFC 7946), at the place the tiles are."""
    import json

    import processing
    from rasterio.warp import transform

    sketch = _plane_sketch(tmp_path)
    out = tmp_path / "matches.geojson"
    processing.run("sketchsearch:sketchsearch", {
        "SKETCH": str(sketch), "LAYERS": [str(geotiff)], "EXTENT": "500032,500224,5000032,5000224 [EPSG:32633]",
        "TOP_K": 3, "TILE_SIZES": "64", "STAGE2": False, "CHECKPOINT": str(tiny_checkpoint), "OUTPUT": str(out)})
    features = json.loads(out.read_text())["features"]
    assert 1 <= len(features) <= 3
    (lon0, lon1), (lat0, lat1) = transform("EPSG:32633", "EPSG:4326", [500032 - 64, 500224 + 64],
                                           [5000032 - 64, 5000224 + 64])
    for f in features:
        for lon, lat in f["geometry"]["coordinates"][0]:
            assert min(lon0, lon1) - 1e-6 <= lon <= max(lon0, lon1) + 1e-6
            assert min(lat0, lat1) - 1e-6 <= lat <= max(lat0, lat1) + 1e-6


def test_processing_reports_plain_errors(provider, tmp_path, geotiff, tiny_checkpoint):
    import processing
    from qgis.core import QgsProcessingException

    blank = tmp_path / "blank.png"
    SketchCanvas().save_image(blank)
    with pytest.raises(QgsProcessingException, match="sketch is empty"):
        processing.run("sketchsearch:sketchsearch", {
            "SKETCH": str(blank), "LAYERS": [str(geotiff)], "TOP_K": 3, "TILE_SIZES": "64",
            "CHECKPOINT": str(tiny_checkpoint), "OUTPUT": "memory:"})


def test_algorithm_works_inside_a_processing_model(provider, tmp_path, geotiff, tiny_checkpoint):
    """What the model designer builds: a model whose child is Sketch search, fed by model inputs."""
    import processing
    from qgis.core import (QgsProcessingAlgorithm, QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                           QgsProcessingModelChildParameterSource, QgsProcessingModelOutput,
                           QgsProcessingModelParameter, QgsProcessingParameterFile,
                           QgsProcessingParameterMultipleLayers, QgsProcessing)

    alg = QgsApplication.processingRegistry().algorithmById("sketchsearch:sketchsearch")
    assert not alg.flags() & QgsProcessingAlgorithm.FlagHideFromModeler
    model = QgsProcessingModelAlgorithm("find planes", "tests")
    model.addModelParameter(QgsProcessingParameterFile("sketch", "sketch"), QgsProcessingModelParameter("sketch"))
    model.addModelParameter(QgsProcessingParameterMultipleLayers("rasters", "rasters", QgsProcessing.TypeRaster),
                            QgsProcessingModelParameter("rasters"))
    child = QgsProcessingModelChildAlgorithm("sketchsearch:sketchsearch")
    child.setChildId("search")
    child.addParameterSources("SKETCH", [QgsProcessingModelChildParameterSource.fromModelParameter("sketch")])
    child.addParameterSources("LAYERS", [QgsProcessingModelChildParameterSource.fromModelParameter("rasters")])
    for name, value in (("TOP_K", 2), ("TILE_SIZES", "64"), ("STAGE2", False), ("CHECKPOINT", str(tiny_checkpoint))):
        child.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    output = QgsProcessingModelOutput("matches", "matches")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"matches": output})
    model.addChildAlgorithm(child)
    model.updateDestinationParameters()

    sketch = _plane_sketch(tmp_path)
    out = tmp_path / "from_model.gpkg"
    result = processing.run(model, {"sketch": str(sketch), "rasters": [str(geotiff)],
                                    "search:matches": str(out)})
    layer = QgsVectorLayer(result["search:matches"], "m", "ogr")
    assert layer.isValid() and 1 <= layer.featureCount() <= 2
    assert sorted(f["rank"] for f in layer.getFeatures()) == list(range(1, layer.featureCount() + 1))
