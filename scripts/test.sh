#!/usr/bin/env bash
# Sets up what is missing (scripts/setup.sh), then runs every test: engine tests without QGIS,
# plugin tests in Debian's real QGIS, offscreen, the QGIS application and qgis_process (tests/app),
# and, as root, the same in today's QGIS LTR in a cached Debian sid chroot with QGIS's own Qt6
# migration checker (tests/app/test_qgis_sid.py, test_qt6_migration.py; the first run builds the
# chroot, about 4 minutes). `ruff check .` runs first (rules in pyproject.toml). Extra arguments go
# to pytest (e.g. -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
export QT_QPA_PLATFORM=offscreen
export SKETCH_SEARCH_DATA="${SKETCH_SEARCH_DATA:-$(cd .. && pwd)/shared/data}"
exec .venv/bin/python -m pytest "$@"
