"""Sketch Search for QGIS: draw an object, find where it is in the imagery on the map.

QGIS calls classFactory() when it loads the plugin. The engine (PyTorch or ONNX Runtime, rasterio,
shapely, ...) is never imported into QGIS's process: it runs in a worker process of its own
(worker_client.py), so its native libraries never meet QGIS's.
"""


def classFactory(iface):  # noqa: N802 (name fixed by QGIS)
    from .plugin import SketchSearchPlugin

    return SketchSearchPlugin(iface)
