"""Marking matches right or wrong in the dock (rows, or features selected on the map), Refine, More like
this and search by example with a rectangle, each a new ranked layer through the engine worker; a
result layer keeps its query and marks in the project, so it can be refined after reopening it."""
from __future__ import annotations

import json

import pytest
from qgis.core import QgsProject, QgsRectangle, QgsVectorLayer

from sketch_search_plugin import export
from sketch_search_plugin.refine import FEEDBACK_OF, MARKS, QUERY, RIGHT, WRONG, marks_of, query_of

from .conftest import wait_for
from .test_export_processing import _plane_sketch
from .test_search import make_dock, run_to_end

pytestmark = pytest.mark.qgis


def finish(dock, task, timeout=120):
    """Waits for a search started by the refine panel; returns its result layer."""
    assert task is not None, dock.run_panel.status.text()
    assert wait_for(lambda: dock.flow.task is None, timeout), "the search did not finish in time"
    search = dock.flow.search_task
    assert search is not None and search.error is None, (search and search.error, dock.run_panel.status.text())
    return search.outcome.layer


def rows(dock) -> list:
    return [dock.results_panel.list.item(i) for i in range(dock.results_panel.list.count())]


def labels(layer) -> list:
    """The first four label texts the layer's style gives."""
    from qgis.core import QgsExpression, QgsExpressionContext, QgsExpressionContextUtils

    expression = QgsExpression(layer.labeling().settings().fieldName)
    context = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer))
    out = []
    for f in sorted(layer.getFeatures(), key=lambda f: f["rank"])[:4]:
        context.setFeature(f)
        out.append(expression.evaluate(context))
    return out


def feedback(layer) -> dict:
    """{rank: feedback} of the marked features."""
    return {f["rank"]: f["feedback"] for f in layer.getFeatures() if f["feedback"]}


def test_mark_rows_and_features_then_refine(iface, geotiff, tiny_checkpoint, tmp_path):
    dock, _ = make_dock(iface, geotiff, tiny_checkpoint)
    dock.options_panel.tile_sizes.setText("64, 96")
    dock.options_panel.top_k.setValue(6)
    first = run_to_end(dock).outcome.layer
    panel = dock.results_panel.refine_panel
    query = query_of(first)
    assert query["sketch_png"] and query["like"] == [] and query["sources"][0]["path"] == str(geotiff)
    assert len(rows(dock)) >= 4 and all(r.flags() & 0x10 for r in rows(dock))  # a check per row (ItemIsUserCheckable)

    # a tick marks a row right; Wrong marks the selected rows wrong
    from qgis.PyQt.QtCore import Qt

    rows(dock)[1].setCheckState(Qt.CheckState.Checked)
    dock.results_panel.list.clearSelection()
    rows(dock)[0].setSelected(True)
    assert panel.mark(WRONG) == 1
    assert {r: m["mark"] for r, m in marks_of(first).items()} == {1: WRONG, 2: RIGHT}
    assert rows(dock)[0].text().startswith("✗ wrong") and rows(dock)[1].text().startswith("✓ right")
    # features selected on the map (the active layer), with no row selected
    dock.results_panel.list.clearSelection()
    iface.active_layer = first
    first.selectByExpression('"rank" = 3')
    assert panel.mark(RIGHT) == 1
    assert marks_of(first)[3]["mark"] == RIGHT and rows(dock)[2].checkState() == Qt.CheckState.Checked
    # unticking clears a right mark
    rows(dock)[2].setCheckState(Qt.CheckState.Unchecked)
    assert 3 not in marks_of(first)
    first.selectByExpression('"rank" = 3')
    panel.mark(RIGHT)
    # the marks are the layer's feedback field too, so they go into exported files
    assert feedback(first) == {1: "unlike", 2: "like", 3: "like"}
    assert labels(first) == ["1 ✗", "2 ✓", "3 ✓", "4"]  # the style's labels show them
    for name in ("marks.gpkg", "marks.shp"):
        written = export.write_layer(first, tmp_path / name)
        assert feedback(QgsVectorLayer(str(written), "exported", "ogr")) == {1: "unlike", 2: "like", 3: "like"}
    dock.results_panel.list.clearSelection()
    rows(dock)[0].setSelected(True)
    panel.mark(None)
    assert feedback(first) == {2: "like", 3: "like"}
    rows(dock)[0].setSelected(True)
    panel.mark(WRONG)

    before = set(QgsProject.instance().mapLayers())
    refined = finish(dock, panel.refine())
    assert set(QgsProject.instance().mapLayers()) - before == {refined.id()}
    assert refined.name().endswith("plane refined")
    rq = query_of(refined)
    assert len(rq["like"]) == 2 and len(rq["unlike"]) == 1 and rq["sketch_png"] == query["sketch_png"]
    # matches lying on the places marked before come back marked
    carried = {m["mark"] for m in marks_of(refined).values()}
    assert RIGHT in carried
    assert set(feedback(refined).values()) == {FEEDBACK_OF[m] for m in carried}
    assert any(r.text().startswith("✓ right") for r in rows(dock))

    # More like this: the selected match is the example, over what the search covered; no sketch
    dock.results_panel.list.clearSelection()
    rows(dock)[0].setSelected(True)
    example = finish(dock, panel.more_like_this())
    eq = query_of(example)
    assert eq["sketch_png"] is None and len(eq["like"]) == 1 and eq["unlike"] == []
    assert example.name().endswith("like #1")
    assert example.featureCount() >= 1
    dock.cleanup()


def test_search_by_example_with_a_rectangle_needs_no_sketch(iface, geotiff, tiny_checkpoint):
    dock, raster = make_dock(iface, geotiff, tiny_checkpoint)
    dock.sketch_panel.canvas.clear()  # no sketch at all
    dock.options_panel.tile_sizes.setText("64")
    dock.options_panel.top_k.setValue(3)
    assert dock.start_search() is None  # a plain search still needs one
    centre = raster.extent().center()
    canvas_crs = iface.canvas.mapSettings().destinationCrs()
    from qgis.core import QgsCoordinateTransform

    to_canvas = QgsCoordinateTransform(raster.crs(), canvas_crs, QgsProject.instance())
    rect = to_canvas.transformBoundingBox(QgsRectangle(centre.x() - 32, centre.y() - 32, centre.x() + 32,
                                                       centre.y() + 32))
    layer = finish(dock, dock.results_panel.refine_panel.search_by_example(rect))
    q = query_of(layer)
    assert q["sketch_png"] is None and len(q["like"]) == 1 and layer.featureCount() == 3
    assert layer.name().endswith(" example")
    dock.cleanup()


def test_refine_after_saving_and_reopening_the_project(iface, geotiff, tiny_checkpoint, tmp_path):
    dock, _ = make_dock(iface, geotiff, tiny_checkpoint)
    dock.options_panel.tile_sizes.setText("64")
    dock.options_panel.top_k.setValue(4)
    first = run_to_end(dock).outcome.layer
    dock.results_panel.list.clearSelection()
    dock.results_panel.list.item(1).setSelected(True)
    dock.results_panel.refine_panel.mark(RIGHT)
    dock.results_panel.list.clearSelection()
    dock.results_panel.list.item(0).setSelected(True)
    dock.results_panel.refine_panel.mark(WRONG)
    name, saved_query, saved_marks = first.name(), first.customProperty(QUERY), first.customProperty(MARKS)
    project = tmp_path / "refine.qgs"
    assert QgsProject.instance().write(str(project))
    dock.cleanup()

    QgsProject.instance().clear()
    assert QgsProject.instance().read(str(project))
    (reopened,) = QgsProject.instance().mapLayersByName(name)
    assert reopened.customProperty(QUERY) == saved_query and reopened.customProperty(MARKS) == saved_marks
    assert set(json.loads(saved_marks)) == {"1", "2"}
    # a new dock (as after restarting QGIS); the reopened result layer is the active layer
    dock2, _ = make_dock(iface, geotiff, tiny_checkpoint)
    iface.active_layer = reopened
    refined = finish(dock2, dock2.results_panel.refine_panel.refine())
    rq = query_of(refined)
    assert len(rq["like"]) == 1 and len(rq["unlike"]) == 1 and refined.featureCount() == 4
    dock2.cleanup()


# ---- Processing: optional LIKE / UNLIKE polygon layers ------------------------------------------------
@pytest.fixture
def provider(qgis_app):
    from qgis.core import QgsApplication

    from sketch_search_plugin.processing.provider import SketchSearchProvider

    provider = SketchSearchProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    yield provider
    QgsApplication.processingRegistry().removeProvider(provider)


def _polygons(name: str, rects, crs: str = "EPSG:32633"):
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    layer = QgsVectorLayer(f"Polygon?crs={crs}", name, "memory")
    feats = []
    for rect in rects:
        f = QgsFeature()
        f.setGeometry(QgsGeometry.fromRect(QgsRectangle(*rect)))
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    QgsProject.instance().addMapLayer(layer)
    return layer


def test_processing_like_and_unlike_layers(provider, tmp_path, geotiff, tiny_checkpoint):
    import processing
    from qgis.core import QgsProcessingException, QgsVectorLayer

    common = {"LAYERS": [str(geotiff)], "TOP_K": 3, "TILE_SIZES": "64", "CHECKPOINT": str(tiny_checkpoint)}
    like = _polygons("right", [(500096, 5000096, 500160, 5000160)])
    unlike = _polygons("wrong", [(500000, 5000000, 500064, 5000064), (500192, 5000192, 500256, 5000256)])
    # by example: no sketch
    out = tmp_path / "by_example.gpkg"
    result = processing.run("sketchsearch:sketchsearch", {**common, "LIKE": like, "OUTPUT": str(out)})
    found = QgsVectorLayer(result["OUTPUT"], "out", "ogr")
    assert found.featureCount() == 3
    assert "like" in {f["feedback"] for f in found.getFeatures()}  # the example itself, marked as given
    # a sketch refined by both
    out = tmp_path / "refined.gpkg"
    result = processing.run("sketchsearch:sketchsearch", {**common, "SKETCH": str(_plane_sketch(tmp_path)),
                                                          "LIKE": like, "UNLIKE": unlike, "OUTPUT": str(out)})
    layer = QgsVectorLayer(result["OUTPUT"], "out", "ogr")
    assert layer.featureCount() == 3
    # neither sketch nor LIKE; a LIKE layer without polygons: plain errors, no output
    for params, message in [({}, "Give a sketch image, or LIKE polygons"),
                            ({"LIKE": _polygons("empty", [])}, "holds no polygons"),
                            ({"LIKE": _polygons("far", [(0, 0, 10, 10)])}, "none of the marked places")]:
        never = tmp_path / "never.gpkg"
        with pytest.raises(QgsProcessingException, match=message):
            processing.run("sketchsearch:sketchsearch", {**common, **params, "OUTPUT": str(never)})
        assert not never.exists()
