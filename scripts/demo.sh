#!/usr/bin/env bash
# The main job on the default model and the sample data:
#   1. a georeferenced mosaic GeoTIFF of UC Merced images (0.3 m/px, UTM) with truth polygons;
#   2. a search of it with a real hand-drawn Earth-on-Canvas aeroplane sketch -> ranked polygons;
#   3. the precision of the top 10 matches of every aeroplane sketch against the truth.
# Outputs go to runs/demo/ (open runs/demo/matches.gpkg beside runs/demo/ucm_mosaic.tif in QGIS).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA="${SKETCH_SEARCH_DATA:-$(cd .. && pwd)/shared/data}"
if [ ! -d "$DATA/ucm10" ] || [ ! -d "$DATA/eoc_sketches" ]; then
    echo "demo: sample data not found under $DATA (set SKETCH_SEARCH_DATA)" >&2
    exit 2
fi
OUT=runs/demo
mkdir -p "$OUT"
CLI=.venv/bin/sketch-search
export SKETCH_SEARCH_INDEX="${SKETCH_SEARCH_INDEX:-$OUT/index}"

if [ ! -f "$OUT/ucm_mosaic.tif" ]; then
    echo "== building a mosaic of UC Merced images (10 per class) with truth polygons"
    $CLI mosaic build --images "$DATA/ucm10" --out "$OUT/ucm_mosaic.tif" --truth "$OUT/ucm_truth.gpkg" --per-class 10
fi

echo "== searching the mosaic with an aeroplane sketch (default model)"
$CLI search --raster "$OUT/ucm_mosaic.tif" --sketch "$DATA/eoc_sketches/Aeroplane/0.jpg" \
    --top-k 10 --out "$OUT/matches.gpkg" --overwrite
echo "   wrote $OUT/matches.gpkg (fields rank, score, source, scale)"

echo "== precision of the top 10 matches of every aeroplane sketch against the truth"
$CLI mosaic eval --raster "$OUT/ucm_mosaic.tif" --truth "$OUT/ucm_truth.gpkg" \
    --sketches "$DATA/eoc_sketches/Aeroplane" --class airplane --top-k 10 --json "$OUT/precision.json"
