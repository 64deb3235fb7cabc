"""Rasters for the engine worker: rasterio and QGIS's own GDAL read the same pixels; file layers go
to the worker by name; other layers (here a real XYZ tile layer) are rendered by QGIS into a cached
GeoTIFF with the right pixels and georeferencing, which a search in a background task reads."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from qgis.core import QgsProject, QgsRasterLayer, QgsRectangle

from sketch_search_plugin.qgis_source import RenderedLayer, layer_file_path, source_for_layer

from .conftest import write_geotiff

pytestmark = pytest.mark.qgis


def provider_band(layer: QgsRasterLayer, band: int, dtype) -> np.ndarray:
    provider = layer.dataProvider()
    block = provider.block(band, provider.extent(), provider.xSize(), provider.ySize())
    return np.frombuffer(bytes(block.data()), dtype).reshape(provider.ySize(), provider.xSize())


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_rasterio_and_qgis_gdal_read_the_same_pixels(qgis_app, tmp_path, dtype):
    from osgeo import gdal

    path = tmp_path / f"same_{dtype}.tif"
    rng = np.random.default_rng(1)
    data = (rng.random((3, 173, 211)) * (250 if dtype == "uint8" else 60000)).astype(dtype)
    with rasterio.open(path, "w", driver="GTiff", width=211, height=173, count=3, dtype=dtype, crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(400000, 6000000, 0.5, 0.5), tiled=True,
                       blockxsize=64, blockysize=64, compress="deflate") as ds:
        ds.write(data)
    with rasterio.open(path) as ds:
        by_rasterio = ds.read()
        rio_bounds = ds.bounds
    layer = QgsRasterLayer(str(path), "same")
    assert layer.isValid()
    by_qgis = np.stack([provider_band(layer, b, np.dtype(dtype)) for b in (1, 2, 3)])
    by_gdal = gdal.Open(str(path)).ReadAsArray()  # QGIS's GDAL through its own Python bindings
    assert np.array_equal(by_rasterio, data)
    assert np.array_equal(by_qgis, data)
    assert np.array_equal(by_gdal, data)
    e = layer.extent()
    assert (e.xMinimum(), e.yMinimum(), e.xMaximum(), e.yMaximum()) == pytest.approx(tuple(rio_bounds))


def read_back(path: Path):
    """A rendered GeoTIFF as (rgb, alpha, geotransform), read with QGIS's own GDAL."""
    from osgeo import gdal

    ds = gdal.Open(str(path))
    data = ds.ReadAsArray()
    return np.moveaxis(data[:3], 0, -1), data[3], ds.GetGeoTransform()


def test_file_layer_goes_to_the_worker_by_name(qgis_app, geotiff):
    layer = QgsRasterLayer(str(geotiff), "My imagery")
    assert layer_file_path(layer) == str(geotiff)
    assert source_for_layer(layer) == {"path": str(geotiff), "name": "My imagery", "bands": None}
    # Forcing a resolution renders through QGIS instead, on a grid of that resolution.
    forced = source_for_layer(layer, resolution=2.0)
    assert isinstance(forced, RenderedLayer) and (forced.width, forced.height) == (128, 128)


def test_rendering_a_file_layer_keeps_pixels_and_georeferencing(qgis_app, tmp_path):
    path = write_geotiff(tmp_path / "s.tif", size=128)
    layer = QgsRasterLayer(str(path), "s")
    rendered = RenderedLayer(layer)
    out = rendered.render(tmp_path / "cache")
    rgb, alpha, transform = read_back(out)
    assert rgb.shape == (128, 128, 3) and (alpha == 255).all()
    assert transform == pytest.approx((500000.0, 1.0, 0.0, 5000128.0, 0.0, -1.0))
    # The bright 'aeroplane' sits at the centre of the raster.
    assert rgb[64, 64].mean() > 200 and rgb[5, 5].mean() < 200
    # Rendered once: the next search of the same layer and extent reuses the file.
    mtime = out.stat().st_mtime_ns
    assert RenderedLayer(layer).render(tmp_path / "cache") == out and out.stat().st_mtime_ns == mtime


def test_a_cancelled_render_leaves_no_file(qgis_app, tmp_path):
    layer = QgsRasterLayer(str(write_geotiff(tmp_path / "s.tif", size=600)), "s")
    with pytest.raises(InterruptedError):
        RenderedLayer(layer).render(tmp_path / "cache", is_cancelled=lambda: True)
    assert list((tmp_path / "cache").iterdir()) == []


def make_xyz(folder, z=16, x0=35000, y0=23000):
    """A real XYZ tile set on disk: 2 x 2 tiles, each a flat colour, one with a bright cross."""
    for dx in range(2):
        for dy in range(2):
            tile = np.zeros((256, 256, 3), np.uint8)
            tile[..., 0], tile[..., 1], tile[..., 2] = 60 + 100 * dx, 60 + 100 * dy, 30
            if (dx, dy) == (1, 1):
                tile[120:136, 40:216] = 250
                tile[40:216, 120:136] = 250
            (folder / str(z) / str(x0 + dx)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(tile).save(folder / str(z) / str(x0 + dx) / f"{y0 + dy}.png")
    half = 6378137 * math.pi
    res = 2 * half / 256 / 2 ** z
    xmin, ymax = -half + x0 * 256 * res, half - y0 * 256 * res
    uri = f"type=xyz&url=file://{folder}/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmin={z}&zmax={z}"
    return QgsRasterLayer(uri, "tiles", "wms"), QgsRectangle(xmin, ymax - 512 * res, xmin + 512 * res, ymax), res


def test_xyz_layer_renders_through_qgis(qgis_app, tmp_path):
    layer, extent, res = make_xyz(tmp_path / "xyz")
    assert layer.isValid() and layer_file_path(layer) is None
    source = source_for_layer(layer, extent=extent)
    assert isinstance(source, RenderedLayer)
    assert source.resolution == pytest.approx(res, rel=1e-6)  # the finest zoom level's resolution
    assert (source.width, source.height) == (512, 512)
    rgb, alpha, transform = read_back(source.render(tmp_path / "cache"))
    assert (alpha == 255).all()
    assert transform[0] == pytest.approx(extent.xMinimum()) and transform[3] == pytest.approx(extent.yMaximum())
    assert tuple(rgb[32, 32]) == (60, 60, 30) and tuple(rgb[32, 480]) == (160, 60, 30)
    assert tuple(rgb[480, 32]) == (60, 160, 30) and tuple(rgb[384, 384]) == (250, 250, 250)


def test_search_over_an_xyz_layer_in_a_background_task(iface, tmp_path, tiny_checkpoint):
    from sketch_search_plugin.dock import SketchSearchDock

    from .conftest import plane_strokes, wait_for

    layer, extent, res = make_xyz(tmp_path / "xyz")
    QgsProject.instance().addMapLayer(layer)
    iface.canvas.setDestinationCrs(layer.crs())
    iface.canvas.setExtent(extent)
    dock = SketchSearchDock(iface, iface.window)
    dock.options_panel.checkpoint.setFilePath(str(tiny_checkpoint))
    ground = 200 * res * math.cos(math.radians(46))  # ~200 px tiles on the ground
    dock.options_panel.tile_sizes.setText(f"{ground:.0f}")
    for stroke in plane_strokes():
        dock.sketch_panel.canvas.add_stroke(stroke, width=8)
    assert dock.start_search() is not None, iface.messages
    assert wait_for(lambda: dock.flow.task is None, 120)
    task = dock.flow.search_task
    assert task is not None, dock.run_panel.status.text()
    assert task.error is None, task.error
    result = task.outcome.layer
    assert result is not None and result.featureCount() >= 1
    assert {f["source"] for f in result.getFeatures()} == {"tiles"}
    assert all(t is not None and (t.width(), t.height()) == (96, 96) for t in task.outcome.thumbnails)
    dock.cleanup()
