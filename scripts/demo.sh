#!/usr/bin/env bash
# The main job on the default model:
#   1. a georeferenced mosaic GeoTIFF of real UC Merced images (0.3 m/px, UTM) with truth polygons;
#   2. a search of it with a hand-drawn aeroplane sketch -> ranked polygons;
#   3. the precision of the top 10 matches of every aeroplane sketch against the truth.
# With the shared data (../shared/data or SKETCH_SEARCH_DATA): a mosaic built from its UC Merced images
# and the real Earth-on-Canvas sketches. Without it (a plain clone), or with --sample: the sample in
# the repository (samples/: a 100-image UC Merced mosaic, its truth and our own sketches).
# Outputs go to runs/demo/ (open runs/demo/matches.gpkg beside the mosaic in QGIS).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA="${SKETCH_SEARCH_DATA:-$(cd .. && pwd)/shared/data}"
OUT=runs/demo
mkdir -p "$OUT"
CLI=.venv/bin/sketch-search
export SKETCH_SEARCH_INDEX="${SKETCH_SEARCH_INDEX:-$OUT/index}"

if [ "${1:-}" != "--sample" ] && [ -d "$DATA/ucm10" ] && [ -d "$DATA/eoc_sketches" ]; then
    echo "== data: the shared data under $DATA (UC Merced images, Earth-on-Canvas sketches)"
    MOSAIC="$OUT/ucm_mosaic.tif" TRUTH="$OUT/ucm_truth.gpkg" PLANES="$DATA/eoc_sketches/Aeroplane"
    SKETCH="$PLANES/0.jpg" OTHERS=()
    if [ ! -f "$MOSAIC" ]; then
        echo "== building a mosaic of UC Merced images (10 per class) with truth polygons"
        $CLI mosaic build --images "$DATA/ucm10" --out "$MOSAIC" --truth "$TRUTH" --per-class 10
    fi
else
    echo "== data: the sample in the repository (samples/README.md): 100 real UC Merced images"
    echo "   (10 of each of 10 classes) in one GeoTIFF, their truth polygons and sketches drawn by us"
    MOSAIC=samples/ucm_mosaic.tif TRUTH=samples/ucm_truth.geojson PLANES=samples/sketches/airplane
    SKETCH="$PLANES/0.png" OTHERS=(harbor freeway parkinglot)
fi

echo "== searching $MOSAIC with the aeroplane sketch $SKETCH (default model)"
$CLI search --raster "$MOSAIC" --sketch "$SKETCH" --top-k 10 --out "$OUT/matches.gpkg" --overwrite
echo "   wrote $OUT/matches.gpkg (fields rank, score, source, scale)"

echo "== precision of the top 10 matches of every aeroplane sketch against the truth"
$CLI mosaic eval --raster "$MOSAIC" --truth "$TRUTH" --sketches "$PLANES" --class airplane --top-k 10 \
    --json "$OUT/precision.json"
for cls in "${OTHERS[@]}"; do
    echo "== the same for the sample's $cls sketches"
    $CLI mosaic eval --raster "$MOSAIC" --truth "$TRUTH" --sketches "samples/sketches/$cls" --class "$cls" \
        --top-k 10 --json "$OUT/precision_$cls.json"
done
echo "== open $MOSAIC, $TRUTH and $OUT/matches.gpkg in QGIS to see the matches"
