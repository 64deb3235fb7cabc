#!/usr/bin/env bash
# `make screenshot`: renders the Sketch Search dock with a sketch, and the map with a result layer,
# in a real QGIS under a virtual X display (Xvfb), and saves docs/screenshot_dock.png and
# docs/screenshot_map.png for the README.
#
# The scene is a mosaic of real UC Merced aerial images (public domain, ../shared/data/ucm10) laid
# out as one GeoTIFF at 0.3 m/px; the sketch is a real Earth-on-Canvas aeroplane sketch.
# Model: $SKETCH_SEARCH_CHECKPOINT, else the shipped default model. Without either it stops, unless
# SCREENSHOT_ALLOW_UNTRAINED=1 (then a randomly initialised model draws the layout only; the
# ranking it shows means nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export SKETCH_SEARCH_DATA=${SKETCH_SEARCH_DATA:-../shared/data}
export SKETCH_SEARCH_INDEX=${SKETCH_SEARCH_INDEX:-build/screenshot/index}
rm -rf build/screenshot/index  # a fresh index: the screenshot shows tiles being computed
mkdir -p build/screenshot docs
command -v xvfb-run >/dev/null || { echo "screenshot: xvfb-run not found (apt-get install xvfb, or make setup)" >&2; exit 1; }
QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" - <<'PYEOF'
import os
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin

sys.path.insert(0, os.getcwd())
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer  # noqa: E402
from qgis.PyQt.QtCore import QCoreApplication, Qt  # noqa: E402

data = Path(os.environ["SKETCH_SEARCH_DATA"])
build = Path("build/screenshot")
if not (data / "ucm10").is_dir() or not (data / "eoc_sketches").is_dir():
    sys.exit(f"screenshot: the sample data is not under {data} (set SKETCH_SEARCH_DATA)")

# 1. The scene: 5 x 4 real aerial images, three of them with aeroplanes, as one GeoTIFF.
classes = ["buildings", "airplane", "forest", "parkinglot", "freeway",
           "harbor", "agricultural", "airplane", "beach", "buildings",
           "river", "parkinglot", "chaparral", "freeway", "airplane",
           "forest", "agricultural", "harbor", "buildings", "chaparral"]
cols, rows, px, res = 5, 4, 256, 0.3
mosaic = np.zeros((rows * px, cols * px, 3), np.uint8)
used = {}
for i, cls in enumerate(classes):
    files = sorted((data / "ucm10" / cls).glob("*.jpg"))
    k = used.get(cls, 0)
    used[cls] = k + 1
    img = Image.open(files[7 + 11 * k]).convert("RGB").resize((px, px))
    r, c = divmod(i, cols)
    mosaic[r * px:(r + 1) * px, c * px:(c + 1) * px] = np.asarray(img)
scene = build / "scene.tif"
with rasterio.open(scene, "w", driver="GTiff", width=cols * px, height=rows * px, count=3, dtype="uint8",
                   crs="EPSG:32610", transform=from_origin(551000.0, 4182000.0, res, res)) as ds:
    ds.write(mosaic.transpose(2, 0, 1))

# 2. The model.
from engine.embedder import default_checkpoint  # noqa: E402

checkpoint = Path(os.environ.get("SKETCH_SEARCH_CHECKPOINT") or default_checkpoint())
untrained = False
if not checkpoint.is_file():
    if os.environ.get("SCREENSHOT_ALLOW_UNTRAINED") != "1":
        sys.exit(f"screenshot: no model at {checkpoint}: train the default model (make train) or set "
                 "SKETCH_SEARCH_CHECKPOINT; SCREENSHOT_ALLOW_UNTRAINED=1 draws the layout with a random model")
    import torch
    from engine.model import MLAGT, ModelConfig
    from engine.model.checkpoints import save_checkpoint
    torch.manual_seed(0)
    cfg = ModelConfig(name="untrained-layout-only", img_size=64, patch_size=16, width=64, depth=2, heads=2,
                      mlp_dim=128, keep_rates=(1.0, 0.75), ca_heads=2, ca_ff_dim=128)
    checkpoint = save_checkpoint(MLAGT(cfg), build / "untrained.safetensors", card={"name": cfg.name})
    untrained = True
print(f"screenshot: model {checkpoint}{' (UNTRAINED: layout only)' if untrained else ''}")

# 3. QGIS with the plugin, the scene on the map, the sketch on the canvas; search.
app = QgsApplication([], True)
app.initQgis()
from tests.plugin.iface import MinimalIface  # noqa: E402
from PyQt5.QtCore import QSize  # noqa: E402

import sketch_search_plugin  # noqa: E402

iface = MinimalIface(QSize(1500, 980))
layer = QgsRasterLayer(str(scene), "UC Merced mosaic (0.3 m)")
QgsProject.instance().addMapLayer(layer)
iface.canvas.setDestinationCrs(layer.crs())
iface.canvas.setExtent(layer.extent())
plugin = sketch_search_plugin.classFactory(iface)
plugin.initGui()
plugin.show_dock(True)
dock = plugin.dock
iface.window.resizeDocks([dock], [430], Qt.Horizontal)
iface.window.show()
sketch = sorted((data / "eoc_sketches" / "Aeroplane").glob("*.jpg"))[0]
dock.canvas.load_image(sketch)
dock.sketch_label = "aeroplane"
dock.tile_sizes.setText(f"{px * res:.0f}")
dock.top_k.setValue(5)
dock.checkpoint.setFilePath(str(checkpoint))
dock.confirm = lambda text: True
if dock.start_search() is None:
    sys.exit(f"screenshot: the search did not start: {iface.messages}")
end = time.monotonic() + 300
while dock.task is not None and time.monotonic() < end:
    QCoreApplication.processEvents()
    time.sleep(0.02)
task = dock.search_task
if task is None or task.error or task.outcome.layer is None:
    sys.exit(f"screenshot: the search failed: {dock.status.text()}")
dock.results.setCurrentRow(0)
iface.canvas.setExtent(layer.extent())
iface.canvas.refresh()
for _ in range(50):
    QCoreApplication.processEvents()
    time.sleep(0.02)
iface.canvas.waitWhileRendering()
QCoreApplication.processEvents()
out = Path("docs")
dock.grab().save(str(out / "screenshot_dock.png"))
iface.window.grab().save(str(out / "screenshot_map.png"))
print(f"screenshot: {len(task.outcome.matches)} matches; wrote docs/screenshot_dock.png and docs/screenshot_map.png")
plugin.unload()
app.exitQgis()
PYEOF
