#!/usr/bin/env bash
# The GPU checks of issue 16 in two calls of the lent machine (scripts/gpu/README.md):
#   bash scripts/gpu/issue16.sh libs   carry .gpu/a: installs rasterio, fiona, shapely, Dask into /tmp/site
#   bash scripts/gpu/issue16.sh run    carry .gpu/b: adds the weights, then measures (each result in $OUT)
#   bash scripts/gpu/issue16.sh cold   carry .gpu/b, instead of run: the cold start alone (one batch shape
#                                      against short batches at their own sizes; batch 256; CUDA graphs)
# The second call must reach the same warm machine (it is given back 30 s after a call ends).
# SMOKE=1 runs everything on the CPU with a small raster: a dry run here (libs is skipped here).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
SITE=/tmp/site
PY=python3
if [ "${SMOKE:-0}" = 1 ]; then PY=.venv/bin/python; fi

libs() {
  mkdir -p "$SITE"
  tar -xJf .gpu/a/rasterio.tar.xz -C "$SITE" && tar -xJf .gpu/a/fiona.tar.xz -C "$SITE" &&
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/a/*.whl &&
  PYTHONPATH=$SITE python3 -c "import rasterio, fiona, shapely, dask, distributed; print('libs ok: rasterio', rasterio.__version__, 'fiona', fiona.__version__, 'GDAL', rasterio.__gdal_version__)"
}

step() {  # step NAME SECONDS COMMAND...: runs one measurement, its output kept in $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  echo "== $name (at most ${limit} s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 3 "$OUT/$name.log"
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
}

setup() {  # sets DEV SIZE WORKERS DASK ROUNDS and the raster's path; on the GPU, adds the weights
  if [ "${SMOKE:-0}" = 1 ]; then
    DEV=cpu; SIZE=2048; WORKERS=2; DASK=local:2; ROUNDS=1; GRAPHS_CHECK="--batches 1 --sizes 8 --check 20"
  else
    [ -d "$SITE/rasterio" ] || { echo "no $SITE/rasterio: run 'libs' first on this same warm machine"; exit 2; }
    tar -xf .gpu/b/weights.tar -C "$SITE" || exit 2
    export PYTHONPATH=$SITE:$PWD
    DEV=cuda; SIZE=10240; WORKERS=16; DASK=local:4; ROUNDS=3; GRAPHS_CHECK=""
    nvidia-smi -L
  fi
  export PYTHONUNBUFFERED=1
  work=/tmp/issue16; mkdir -p "$work"
  raster=$work/r$SIZE.tif
  step raster 90 $PY -c "from pathlib import Path; from benchmarks.search_speed import write_raster; write_raster(Path('$raster'), $SIZE)"
}

run() {
  setup
  # the issue's contract: one JSON line last; end to end with the per-tile pipeline as baseline, then the
  # pipeline alone on 16 cores (its baseline was measured on this CPU). The limits add up to 590 s: one call.
  step end_to_end 200 $PY -m benchmarks.search_speed --device $DEV --raster "$raster" --workers $WORKERS --rounds $ROUNDS --json
  step pipeline_only 60 $PY -m benchmarks.search_speed --pipeline-only --raster "$raster" --workers $WORKERS --rounds $ROUNDS --no-baseline --json
  # a Dask build against a serial one on the same device: same tiles, same vectors
  rm -rf "$work/serial" "$work/dask"
  step build_serial 60 $PY -m engine.cli index build --raster "$raster" --device $DEV --index-dir "$work/serial"
  step build_dask 150 $PY -m engine.cli index build --raster "$raster" --device $DEV --dask $DASK --index-dir "$work/dask"
  step compare 30 $PY scripts/gpu/compare_indexes.py "$work/serial" "$work/dask"
  for f in end_to_end pipeline_only; do tail -n 1 "$OUT/$f.log" > "$OUT/$f.json"; done
}

cold() {
  # each a fresh process: its first round is its first use of each batch shape (tiles_per_s_rounds[0]).
  # The limits add up to 570 s (timeout_s 600); about 300 s are expected.
  setup
  local e2e="$PY -m benchmarks.search_speed --device $DEV --raster $raster --workers $WORKERS --rounds $ROUNDS --no-baseline --json"
  step cold_fixed 75 $e2e
  step cold_varied 120 $e2e --varied-batches
  step cold_batch256 75 $e2e --batch 256
  step cold_graphs 75 $e2e --cuda-graphs
  step graphs_check 75 $PY scripts/gpu/graphs_check.py --device $DEV $GRAPHS_CHECK
  rm -rf "$work/serial"
  step build_serial 60 $PY -m engine.cli index build --raster "$raster" --device $DEV --index-dir "$work/serial"
  for f in cold_fixed cold_varied cold_batch256 cold_graphs graphs_check; do tail -n 1 "$OUT/$f.log" > "$OUT/$f.json"; done
}

case "${1:-}" in
  libs) libs ;;
  run) run ;;
  cold) cold ;;
  *) echo "usage: $0 libs|run|cold"; exit 2 ;;
esac
