#!/usr/bin/env bash
# Rebuilds the sample mosaic in samples/ from the UC Merced images under ../shared/data/ucm10 (or
# $SKETCH_SEARCH_DATA/ucm10): 10 images of each of the 10 classes, seeded, in a 10 x 10 grid of
# 256 px cells at 0.3 m/px in UTM 11N (`sketch-search mosaic build`), then stored as a
# JPEG-compressed Cloud-Optimized GeoTIFF (quality 75, with overviews) to keep the repository small.
# Writes samples/ucm_mosaic.tif and samples/ucm_truth.geojson (one polygon per image: class, image).
# Only maintainers with the data need this; a clone uses the committed files.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA="${SKETCH_SEARCH_DATA:-$(cd .. && pwd)/shared/data}"
[ -d "$DATA/ucm10" ] || { echo "build_mosaic: no UC Merced images under $DATA/ucm10" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
.venv/bin/sketch-search mosaic build --images "$DATA/ucm10" --out "$TMP/mosaic.tif" \
    --truth "$TMP/truth.geojson" --per-class 10 --seed 0
.venv/bin/python - "$TMP/mosaic.tif" "$TMP/cog.tif" <<'EOF'
import sys
from rasterio.shutil import copy
copy(sys.argv[1], sys.argv[2], driver="COG", compress="JPEG", quality=75, overview_resampling="average")
EOF
mv "$TMP/cog.tif" samples/ucm_mosaic.tif
mv "$TMP/truth.geojson" samples/ucm_truth.geojson
ls -l samples/ucm_mosaic.tif samples/ucm_truth.geojson
