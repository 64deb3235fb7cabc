"""Sketch Search for QGIS: draw an object, find where it is in the imagery on the map.

QGIS calls classFactory() when it loads the plugin. Nothing heavy (torch, the engine) is imported
here, so a missing dependency is reported in plain words instead of breaking the plugin load.
"""


def classFactory(iface):  # noqa: N802 (name fixed by QGIS)
    from .deps import activate

    activate()  # the vendored engine and our own dependency folder onto sys.path
    from .plugin import SketchSearchPlugin

    return SketchSearchPlugin(iface)
