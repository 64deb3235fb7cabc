"""Drives a real QGIS desktop session as a user would; run by `qgis --code drive_qgis.py`.

Reads its task from the environment (SKETCH_SEARCH_APP_*), installs the plugin from the packaged
zip with QGIS's own plugin installer, opens the dock from the Raster menu, loads a sketch, searches
a GeoTIFF, waits for the ranked layer, exports it as a Shapefile through the dock's button, takes
screenshots, checks that no engine library entered QGIS's process, writes a JSON report and quits.
Every step is recorded, so a failure says where it happened.
"""
import json
import os
import sys
import time
import traceback
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QCoreApplication, QTimer
from qgis.PyQt.QtWidgets import QDockWidget, QFileDialog
from qgis.utils import iface

ENV = os.environ
REPORT = Path(ENV["SKETCH_SEARCH_APP_REPORT"])
SHOTS = Path(ENV.get("SKETCH_SEARCH_APP_SHOTS", REPORT.parent))
HEAVY = ("torch", "timm", "triton", "shapely", "rasterio", "fiona", "engine", "onnxruntime")
report = {"steps": [], "ok": False}


def step(name, **facts):
    report["steps"].append({"step": name, "t": round(time.monotonic() - T0, 2), **facts})
    REPORT.write_text(json.dumps(report, indent=1))  # written as we go: a crash still leaves the steps


def wait_for(predicate, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def shoot(name):
    QCoreApplication.processEvents()
    path = SHOTS / f"{name}.png"
    iface.mainWindow().grab().save(str(path))
    return str(path)


def run():
    window = iface.mainWindow()
    # As maximised on a desktop: the whole screen (Xvfb has no window manager to maximise it).
    window.setGeometry(window.screen().availableGeometry())
    step("qgis up", version=Qgis.version(), size=[window.width(), window.height()])

    # 1. Install from ZIP, as Plugins → Manage and Install Plugins → Install from ZIP does.
    import pyplugin_installer
    import qgis.utils

    pyplugin_installer.instance().installFromZipFile(ENV["SKETCH_SEARCH_APP_ZIP"])
    wait_for(lambda: "sketch_search_plugin" in qgis.utils.plugins, 60, "the plugin to start")
    step("plugin installed from zip", path=str(Path(QgsApplication.qgisSettingsDirPath()) / "python" / "plugins"))

    # 2. Raster menu → Sketch Search opens the dock.
    actions = [a for a in iface.rasterMenu().actions() if a.text() == "Sketch Search"]
    step("raster menu", entries=[a.text() for a in iface.rasterMenu().actions()])
    assert len(actions) == 1, "no single 'Sketch Search' entry in the Raster menu"
    actions[0].trigger()
    dock = window.findChild(QDockWidget, "SketchSearchDock")
    wait_for(lambda: dock is not None and dock.isVisible(), 10, "the dock")
    QCoreApplication.processEvents()
    screen = window.screen().availableGeometry() if hasattr(window, "screen") else None
    step("dock open", window=[window.frameGeometry().width(), window.frameGeometry().height()],
         screen=[screen.width(), screen.height()] if screen is not None else None,
         dock=[dock.width(), dock.height()])

    # 3. A new user: the dock says the engine is not installed; Install… once, in the installer dialog.
    if ENV.get("SKETCH_SEARCH_APP_INSTALL"):
        wait_for(lambda: dock.engine_panel.isVisible(), 30, "the 'not installed' banner")
        step("not installed yet", banner=dock.engine_panel.label.text())
        shoot("app_not_installed")
        QTimer.singleShot(500, drive_install_dialog)
        dock.engine_panel.install_button.click()  # modal: returns when the dialog is closed
        step("install dialog closed", **INSTALL)

    # 3b. A user of an earlier version: the engine runs from an environment older than this plugin's
    #     locks. It starts, the dock says so and offers Update…, which reinstalls it; the banner goes.
    engine = dock.engine_panel
    if ENV.get("SKETCH_SEARCH_APP_UPDATE"):
        wait_for(lambda: engine.info and not engine.isHidden(), 120, "the engine to start with the Update banner")
        step("outdated", banner=engine.label.text(), button=engine.install_button.text(), info=engine.info)
        shoot("app_update_offered")
        QTimer.singleShot(500, drive_install_dialog)
        engine.install_button.click()  # modal: returns when the dialog is closed
        step("install dialog closed", **INSTALL)

    # 4. The engine starts in its worker (the dock asks it for devices).
    wait_for(lambda: engine.info or engine.isVisible() and engine.info_task is None, 240, "the search engine to start")
    step("engine", info=engine.info, banner=engine.label.text() if engine.isVisible() else "")
    assert engine.info, f"the engine did not start: {engine.label.text()}"

    # 5. Imagery on the map, zoomed to it; the sketch loaded from a file.
    layer = iface.addRasterLayer(ENV["SKETCH_SEARCH_APP_RASTER"], "imagery")
    assert layer is not None and layer.isValid(), "the raster did not load"
    iface.mapCanvas().setDestinationCrs(layer.crs())
    iface.mapCanvas().setExtent(layer.extent())
    iface.mapCanvas().refreshAllLayers()
    dock.sketch_panel.canvas.load_image(ENV["SKETCH_SEARCH_APP_SKETCH"])
    dock.sketch_panel.label = Path(ENV["SKETCH_SEARCH_APP_SKETCH"]).stem
    dock.flow.confirm = lambda text: True  # a large-search question would be answered yes
    step("inputs ready", layers=[layer.name() for layer in QgsProject.instance().mapLayers().values()])
    shoot("app_dock_before")

    # 6. Search, and wait for the ranked layer.
    rows = dock.results_panel.list  # the ranked matches in the dock
    before = set(QgsProject.instance().mapLayers())
    dock.run_panel.search_button.click()
    step("search started", status=dock.run_panel.status.text(), running=dock.flow.task is not None)
    wait_for(lambda: dock.flow.task is None, 600, "the search to finish")  # preparing, then searching
    task = dock.flow.search_task
    new = [QgsProject.instance().mapLayer(i) for i in set(QgsProject.instance().mapLayers()) - before]
    results = [layer for layer in new if isinstance(layer, QgsVectorLayer)]
    step("searched", status=dock.run_panel.status.text(), error=getattr(task, "error", None),
         layers=[layer.name() for layer in results], progress=dock.run_panel.progress.text(),
         ranks=[f["rank"] for f in results[0].getFeatures()] if results else [],
         scores=[round(f["score"], 4) for f in results[0].getFeatures()] if results else [],
         thumbnails=sum(1 for i in range(rows.count()) if not rows.item(i).icon().isNull()))
    assert len(results) == 1, f"no result layer: {dock.run_panel.status.text()}"

    # 7. Click the best match: zoom and flash; screenshots of the dock and the map.
    dock.results_panel.list.itemClicked.emit(dock.results_panel.list.item(0))
    iface.mapCanvas().waitWhileRendering()
    end = time.monotonic() + 2  # let the flash end
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)
    iface.messageBar().clearWidgets()
    report["screenshots"] = [shoot("app_search_done")]
    dock.grab().save(str(SHOTS / "app_dock.png"))
    dock.options_panel.setCollapsed(False)  # the options, with the engine's device line, for a look
    QCoreApplication.processEvents()
    dock.grab().save(str(SHOTS / "app_dock_options.png"))
    dock.options_panel.setCollapsed(True)

    # 8. Export through the dock's button (the file dialog answered as a user would).
    out = Path(ENV["SKETCH_SEARCH_APP_OUT"])
    QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (str(out), "ESRI Shapefile (*.shp)"))
    dock.results_panel.export_button.click()
    step("exported", exists=out.is_file(), siblings=sorted(p.name for p in out.parent.glob(out.stem + ".*")))

    # 9. Mark the top matches right or wrong (by the truth when given, else the best right and the next
    #    ones wrong), press Refine, and wait for a second ranked layer.
    marked = mark_top(dock, results[0], 4)
    before = set(QgsProject.instance().mapLayers())
    dock.results_panel.refine_panel.refine_button.click()
    wait_for(lambda: dock.flow.task is None, 600, "the refined search to finish")
    task = dock.flow.search_task
    refined = [QgsProject.instance().mapLayer(i) for i in set(QgsProject.instance().mapLayers()) - before]
    refined = [layer for layer in refined if isinstance(layer, QgsVectorLayer)]
    step("refined", marked=marked, status=dock.run_panel.status.text(), error=getattr(task, "error", None),
         layers=[layer.name() for layer in refined],
         ranks=[f["rank"] for f in refined[0].getFeatures()] if refined else [],
         rows_marked=[rows.item(i).text().split("   ")[0] for i in range(rows.count())])
    shoot("app_refined")

    # 10. Nothing of the engine inside QGIS's process.
    report["heavy_modules"] = sorted(m for m in HEAVY if m in sys.modules)
    report["ok"] = True
    step("done")


def mark_top(dock, layer, n):
    """Marks the first n rows: a tick for the right ones, the Wrong button for the others. Right = lies on
    a truth cell of SKETCH_SEARCH_APP_TRUTH_CLASS (half of the smaller shared) when SKETCH_SEARCH_APP_TRUTH
    names the truth file, else rank 1 only. Returns {rank: mark}."""
    from qgis.core import QgsCoordinateTransform
    from qgis.PyQt.QtCore import Qt

    cells = []
    if ENV.get("SKETCH_SEARCH_APP_TRUTH"):
        truth = QgsVectorLayer(ENV["SKETCH_SEARCH_APP_TRUTH"], "truth", "ogr")
        to_layer = QgsCoordinateTransform(truth.crs(), layer.crs(), QgsProject.instance())
        wanted = ENV.get("SKETCH_SEARCH_APP_TRUTH_CLASS", "airplane")
        for f in truth.getFeatures():
            if f["class"] == wanted:
                g = f.geometry()
                g.transform(to_layer)
                cells.append(g)

    def right(rank):
        if not ENV.get("SKETCH_SEARCH_APP_TRUTH"):
            return rank == 1
        g = next(layer.getFeatures(f'"rank" = {rank}')).geometry()
        return any(g.intersection(c).area() >= 0.5 * min(g.area(), c.area()) > 0 for c in cells)

    marks = {}
    dock.results_panel.list.clearSelection()
    for i in range(min(n, dock.results_panel.list.count())):
        item = dock.results_panel.list.item(i)
        rank = item.data(Qt.ItemDataRole.UserRole)[1]
        if right(rank):
            item.setCheckState(Qt.CheckState.Checked)  # the check of the row
            marks[rank] = "right"
        else:
            item.setSelected(True)
            marks[rank] = "wrong"
    if dock.results_panel.list.selectedItems():
        dock.results_panel.refine_panel.wrong_button.click()
    dock.results_panel.list.clearSelection()
    return marks


INSTALL = {}


def drive_install_dialog():
    """Inside the installer dialog's own event loop: press Install (or Update), wait for the end, close it."""
    from qgis.PyQt.QtWidgets import QApplication

    dialog = QApplication.activeModalWidget()
    try:
        INSTALL["title"] = dialog.windowTitle()
        INSTALL["button"] = dialog.install_button.text()
        dialog.install_button.click()
        wait_for(lambda: not dialog.running(), 600, "the install to finish")
        INSTALL["status"] = dialog.status.text()
        INSTALL["log_lines"] = dialog.log_view.document().blockCount()
        INSTALL["shot"] = str(SHOTS / "app_installed.png")
        dialog.grab().save(INSTALL["shot"])
    except Exception:
        INSTALL["error"] = traceback.format_exc()
    finally:
        dialog.close()


def main():
    try:
        run()
    except Exception:
        report["error"] = traceback.format_exc()
        step("failed")
    finally:
        # Our result layers are scratch layers: QGIS would ask whether to lose them. Close the project first.
        QgsProject.instance().clear()
        QgsProject.instance().setDirty(False)
        QTimer.singleShot(500, iface.actionExit().trigger)


T0 = time.monotonic()
QTimer.singleShot(1000, main)
