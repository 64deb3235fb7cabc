#!/usr/bin/env bash
# Sets up what is missing (scripts/setup.sh), then runs every test: engine tests without QGIS,
# plugin tests in Debian's real QGIS, offscreen. Extra arguments go to pytest (e.g. -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_QPA_PLATFORM=offscreen
export SKETCH_SEARCH_DATA="${SKETCH_SEARCH_DATA:-$(cd .. && pwd)/shared/data}"
exec .venv/bin/python -m pytest "$@"
