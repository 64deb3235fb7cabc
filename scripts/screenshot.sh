#!/usr/bin/env bash
# `make screenshot`: the README's pictures, taken from the real QGIS desktop application. The
# real-application test (tests/app/test_qgis_app.py) installs the packaged plugin into a fresh
# profile, searches a mosaic of real UC Merced images (public domain) with a real Earth-on-Canvas
# aeroplane sketch under Xvfb, and saves what the screen shows; this copies those PNGs to docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export SKETCH_SEARCH_DATA=${SKETCH_SEARCH_DATA:-$(cd .. && pwd)/shared/data}
export SKETCH_SEARCH_SCREENSHOTS=build/screenshot
rm -rf "$SKETCH_SEARCH_SCREENSHOTS" && mkdir -p "$SKETCH_SEARCH_SCREENSHOTS" docs
SKETCH_SEARCH_SCREENSHOTS=$(pwd)/build/screenshot .venv/bin/python -m pytest -q -p no:cacheprovider \
    "tests/app/test_qgis_app.py::test_search_in_the_real_qgis_application"
cp build/screenshot/app_search_done.png docs/screenshot_map.png
cp build/screenshot/app_dock.png docs/screenshot_dock.png
echo "screenshot: docs/screenshot_map.png and docs/screenshot_dock.png (look at them before committing)"
