"""Strokes drawn on the dock's canvas + a real GeoTIFF -> a ranked, styled result layer; cancel and
refusal leave nothing behind; clicking a result zooms to it."""
from __future__ import annotations

import time

import pytest
from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsGraduatedSymbolRenderer,
                       QgsProject, QgsRasterLayer, QgsRectangle, QgsVectorLayer)

from qgis.PyQt.QtCore import QCoreApplication

from sketch_search_plugin.dock import SketchSearchDock

from .conftest import plane_strokes, wait_for, write_geotiff

pytestmark = pytest.mark.qgis


def make_dock(iface, raster_path, checkpoint, canvas_crs="EPSG:3857"):
    layer = QgsRasterLayer(str(raster_path), "scene")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    # The layer tree bridge sets the canvas up for a first layer on a deferred call: let it happen
    # now, before we choose the canvas CRS and extent, or it would undo them later.
    QCoreApplication.processEvents()
    crs = QgsCoordinateReferenceSystem(canvas_crs)
    iface.canvas.setDestinationCrs(crs)
    extent = QgsCoordinateTransform(layer.crs(), crs, QgsProject.instance()).transformBoundingBox(layer.extent())
    iface.canvas.setExtent(extent)
    dock = SketchSearchDock(iface, iface.window)
    dock.options_panel.checkpoint.setFilePath(str(checkpoint))
    dock.options_panel.device.setCurrentText("auto")
    for stroke in plane_strokes():
        dock.sketch_panel.canvas.add_stroke(stroke, width=8)
    dock.sketch_panel.label = "plane"
    return dock, layer


def run_to_end(dock, timeout=120):
    """Starts a search (preparing, then searching, both in background tasks) and waits for its end."""
    assert dock.start_search() is not None, dock.run_panel.status.text()
    assert wait_for(lambda: dock.flow.task is None, timeout), "the search did not finish in time"
    assert dock.flow.search_task is not None, dock.run_panel.status.text()
    return dock.flow.search_task


def test_search_gives_ranked_layer_in_canvas_crs(iface, geotiff, tiny_checkpoint):
    dock, raster = make_dock(iface, geotiff, tiny_checkpoint)
    dock.options_panel.tile_sizes.setText("64, 96")
    dock.options_panel.top_k.setValue(5)
    before = set(QgsProject.instance().mapLayers())
    task = run_to_end(dock)
    assert task.error is None, task.error
    new = [QgsProject.instance().mapLayer(i) for i in set(QgsProject.instance().mapLayers()) - before]
    assert len(new) == 1 and isinstance(new[0], QgsVectorLayer)
    result = new[0]
    assert result.name().startswith("Sketch matches ") and result.name().endswith(" plane")
    assert [f.name() for f in result.fields()] == ["rank", "score", "source", "scale", "feedback"]
    assert result.crs().authid() == "EPSG:3857"  # the canvas CRS, not the raster's EPSG:32633
    feats = sorted(result.getFeatures(), key=lambda f: f["rank"])
    assert 1 <= len(feats) <= 5
    assert [f["rank"] for f in feats] == list(range(1, len(feats) + 1))
    scores = [f["score"] for f in feats]
    assert scores == sorted(scores, reverse=True)
    assert {f["source"] for f in feats} == {"scene"}
    assert {f["scale"] for f in feats} <= {64.0, 96.0}
    # Every match lies on the raster (compared in the raster's own CRS).
    back = QgsCoordinateTransform(result.crs(), raster.crs(), QgsProject.instance())
    grown = QgsRectangle(raster.extent())
    grown.grow(1.0)
    for f in feats:
        box = back.transformBoundingBox(f.geometry().boundingBox())
        assert grown.contains(box), (box.toString(), raster.extent().toString())
    # Styled from the shipped .qml: graduated by rank, labelled with the rank.
    assert isinstance(result.renderer(), QgsGraduatedSymbolRenderer)
    assert result.renderer().classAttribute() == "rank"
    label = result.labeling().settings()
    assert result.labelsEnabled() and label.isExpression and '"rank"' in label.fieldName  # with ✓ / ✗ of marks
    # The dock lists the matches with thumbnails, best first; clicking zooms to the match.
    assert dock.results_panel.list.count() == len(feats)
    assert dock.results_panel.list.item(0).text().startswith("#1 ")
    assert not dock.results_panel.list.item(0).icon().isNull()
    assert dock.results_panel.zoom_to_match(result.id(), len(feats))
    last = feats[-1].geometry().boundingBox()
    # zoomed in, with context
    assert iface.canvas.extent().contains(last) and iface.canvas.extent().width() < 8 * last.width()
    assert any("matches in" in text for _, text, _ in iface.messages)
    # The same search again reads every tile from the index and gives the same ranking.
    first = [(f["rank"], round(f["score"], 5)) for f in feats]
    again = run_to_end(dock).outcome.layer
    assert dock.flow.estimate.tiles > 0 and dock.flow.estimate.cached == dock.flow.estimate.tiles
    assert dock.run_panel.progress.value() == dock.run_panel.progress.maximum() == dock.flow.estimate.tiles
    assert sorted((f["rank"], round(f["score"], 5)) for f in again.getFeatures()) == first
    dock.cleanup()


def test_cancel_leaves_nothing_behind(iface, tmp_path, tiny_checkpoint):
    big = write_geotiff(tmp_path / "big.tif", size=1024)
    dock, _ = make_dock(iface, big, tiny_checkpoint)
    dock.options_panel.tile_sizes.setText("24")  # a few thousand tiles: long enough to cancel in the middle
    dock.flow.confirm = lambda text: True
    progress = []

    def on_progress(done, total, message):
        progress.append((done, total))
        if len(progress) == 1:
            dock.cancel_search()

    before = set(QgsProject.instance().mapLayers())
    assert dock.start_search() is not None, dock.run_panel.status.text()
    assert wait_for(lambda: dock.flow.search_task is not None, 120), dock.run_panel.status.text()
    task = dock.flow.search_task
    task.tilesProgress.connect(on_progress)
    assert wait_for(lambda: bool(progress), 120)
    cancelled_at = time.monotonic()
    assert wait_for(lambda: dock.flow.task is None, 120)
    assert time.monotonic() - cancelled_at < 10  # promptly: between two batches, not at the end
    assert progress, "the search never reported progress"
    assert progress[0][0] < progress[0][1]  # it was cancelled part-way, not after finishing
    assert task.was_cancelled and task.error is None and task.outcome.layer is None
    assert set(QgsProject.instance().mapLayers()) == before
    assert dock.results_panel.list.count() == 0
    assert "cancelled" in dock.run_panel.status.text()
    assert dock.run_panel.search_button.isEnabled() and not dock.run_panel.cancel_button.isEnabled()
    dock.cleanup()


def test_large_search_asks_first_and_declining_starts_nothing(iface, tmp_path, tiny_checkpoint):
    big = write_geotiff(tmp_path / "big.tif", size=1024)
    dock, _ = make_dock(iface, big, tiny_checkpoint)
    dock.options_panel.tile_sizes.setText("24")
    questions = []
    dock.flow.confirm = lambda text: questions.append(text) or False
    assert dock.start_search() is not None  # the estimate runs in the background, then asks
    assert wait_for(lambda: dock.flow.task is None, 120)
    assert len(questions) == 1 and "tiles" in questions[0]
    assert dock.flow.search_task is None and "not started" in dock.run_panel.status.text()
    assert dock.run_panel.search_button.isEnabled()
    dock.cleanup()


def test_plain_words_for_user_errors(iface, geotiff, tiny_checkpoint):
    dock, _ = make_dock(iface, geotiff, tiny_checkpoint)
    dock.sketch_panel.canvas.clear()
    assert dock.start_search() is None
    assert "sketch is empty" in iface.messages[-1][1]
    dock.sketch_panel.canvas.undo()  # the strokes are back
    dock.options_panel.tile_sizes.setText("sixty")
    assert dock.start_search() is None
    assert "Tile sizes must be numbers" in iface.messages[-1][1]
    dock.options_panel.tile_sizes.setText("64")
    iface.canvas.setExtent(QgsRectangle(0, 0, 1000, 1000))  # far from the raster
    assert dock.start_search() is None
    assert "overlaps" in iface.messages[-1][1] or "outside" in iface.messages[-1][1]
    dock.cleanup()


def test_clear_message_without_a_model(iface, geotiff, tiny_checkpoint, tmp_path, monkeypatch):
    """Model problems are found by the worker and come back as one line; the dock stays usable."""
    monkeypatch.setenv("SKETCH_SEARCH_CHECKPOINT", str(tmp_path / "not_installed.safetensors"))
    dock, _ = make_dock(iface, geotiff, tiny_checkpoint)
    dock.options_panel.checkpoint.setFilePath("")  # the shipped default, which is missing here
    assert dock.start_search() is not None
    assert wait_for(lambda: dock.flow.task is None, 120)
    assert "not_installed.safetensors" in iface.messages[-1][1] and "\n" not in iface.messages[-1][1]
    assert dock.flow.search_task is None and dock.run_panel.search_button.isEnabled()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"this is not a model")
    dock.options_panel.checkpoint.setFilePath(str(broken))
    assert dock.start_search() is not None, iface.messages  # loading it fails in the worker, in the background
    assert wait_for(lambda: dock.flow.task is None, 120)
    assert "broken.safetensors" in iface.messages[-1][1] and "\n" not in iface.messages[-1][1]
    assert dock.flow.search_task is None and dock.run_panel.search_button.isEnabled()
    dock.cleanup()


def test_extent_drawn_on_the_map_and_selected_polygons(iface, geotiff, tiny_checkpoint):
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY
    from qgis.gui import QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, QPoint, Qt

    from sketch_search_plugin import inputs
    from sketch_search_plugin.panels.where import EXTENT_DRAWN, EXTENT_SELECTION

    dock, raster = make_dock(iface, geotiff, tiny_checkpoint, canvas_crs="EPSG:32633")
    iface.canvas.resize(400, 400)
    iface.canvas.setExtent(raster.extent())
    dock.where_panel.extent_mode.setCurrentText(EXTENT_DRAWN)
    with pytest.raises(inputs.InputError, match="Draw the rectangle"):
        dock.where_panel.extent()
    dock.where_panel.draw_button.setChecked(True)
    assert iface.canvas.mapTool() is dock.where_panel.extent_tool
    # Drag with QGIS's own rectangle tool, as a user would.
    tool = dock.where_panel.extent_tool
    for kind, point in ((QEvent.MouseButtonPress, QPoint(100, 100)), (QEvent.MouseMove, QPoint(300, 250)),
                        (QEvent.MouseButtonRelease, QPoint(300, 250))):
        event = QgsMapMouseEvent(iface.canvas, kind, point, Qt.LeftButton, Qt.LeftButton)
        {QEvent.MouseButtonPress: tool.canvasPressEvent, QEvent.MouseMove: tool.canvasMoveEvent,
         QEvent.MouseButtonRelease: tool.canvasReleaseEvent}[kind](event)
    geometry, crs = dock.where_panel.extent()
    box = geometry.boundingBox()
    corner = iface.canvas.getCoordinateTransform().toMapCoordinates(100, 100)
    assert box.xMinimum() == pytest.approx(corner.x(), abs=1.0) and box.yMaximum() == pytest.approx(corner.y(), abs=1.0)
    assert box.width() == pytest.approx(200 * iface.canvas.mapUnitsPerPixel(), rel=0.02)
    assert not dock.where_panel.draw_button.isChecked()

    # Selected polygons of the active layer.
    polygons = QgsVectorLayer("Polygon?crs=EPSG:32633", "areas", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromPolygonXY([[QgsPointXY(500010, 5000010), QgsPointXY(500100, 5000010),
                                                     QgsPointXY(500100, 5000100), QgsPointXY(500010, 5000010)]]))
    polygons.dataProvider().addFeatures([feature])
    QgsProject.instance().addMapLayer(polygons)
    dock.where_panel.extent_mode.setCurrentText(EXTENT_SELECTION)
    iface.active_layer = polygons
    with pytest.raises(inputs.InputError, match="No polygon is selected"):
        dock.where_panel.extent()
    polygons.selectAll()
    geometry, crs = dock.where_panel.extent()
    assert geometry.area() == pytest.approx(90 * 90 / 2)
    task = run_to_end(dock)
    assert task.error is None, task.error
    dock.cleanup()


def test_the_expansion_option_reaches_the_request(iface, geotiff, tiny_checkpoint):
    """The options' "Search again toward the best matches" is on by default and travels to the worker."""
    dock, _ = make_dock(iface, geotiff, tiny_checkpoint)
    assert dock.options_panel.expansion.isChecked()
    assert dock.options_panel.settings().protocol(None)["expansion"] is True
    dock.options_panel.expansion.setChecked(False)
    assert dock.options_panel.settings().protocol(None)["expansion"] is False
    dock.close()
