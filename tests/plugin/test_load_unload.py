"""The plugin loads into QGIS (toolbar, menu, dock, Processing provider) and unloads without a trace."""
from __future__ import annotations

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication

import sketch_search_plugin

pytestmark = pytest.mark.qgis


def test_load_show_dock_and_unload(iface):
    registry = QgsApplication.processingRegistry()
    plugin = sketch_search_plugin.classFactory(iface)
    plugin.initGui()
    assert [a.text() for a in iface.toolbar.actions()] == ["Sketch Search"]
    # One entry straight in the Raster menu, not a submenu holding an entry of the same name.
    assert [a.text() for a in iface.raster_menu.actions()] == ["Sketch Search"]
    assert iface.plugin_menus == {}
    assert registry.providerById("sketchsearch") is not None
    assert registry.algorithmById("sketchsearch:sketchsearch") is not None

    plugin.action.trigger()  # toolbar button: opens the dock
    assert len(iface.docks) == 1 and iface.docks[0].isVisibleTo(iface.window)
    plugin.action.trigger()  # and closes it again
    assert not iface.docks[0].isVisibleTo(iface.window)

    plugin.unload()
    QCoreApplication.processEvents()
    assert iface.toolbar.actions() == []
    assert iface.raster_menu.actions() == []
    assert iface.docks == []
    assert registry.providerById("sketchsearch") is None

    # A second load after unloading works as the first (QGIS's plugin reloader does this).
    again = sketch_search_plugin.classFactory(iface)
    again.initGui()
    assert registry.providerById("sketchsearch") is not None
    again.unload()
    assert registry.providerById("sketchsearch") is None


def test_loading_and_opening_the_dock_imports_no_engine_library(iface):
    """The engine's native libraries must never enter QGIS's process (they crash the real QGIS)."""
    import sys

    heavy = ("torch", "timm", "triton", "shapely", "rasterio", "fiona", "engine")
    already = {m for m in heavy if m in sys.modules}  # this test process may have imported some for other tests
    plugin = sketch_search_plugin.classFactory(iface)
    plugin.initGui()
    plugin.action.trigger()
    QCoreApplication.processEvents()
    assert {m for m in heavy if m in sys.modules} == already
    plugin.unload()


def test_the_test_iface_only_offers_real_qgisinterface_methods(qgis_app):
    """The stand-in iface must not invent API: each public method it has exists on QgisInterface,
    so what the plugin calls on it, it can call on QGIS's real interface."""
    from qgis.gui import QgisInterface

    from .iface import MinimalIface

    methods = [n for n in vars(MinimalIface) if not n.startswith("_") and callable(getattr(MinimalIface, n))]
    assert len(methods) >= 12
    assert [n for n in methods if not hasattr(QgisInterface, n)] == []
