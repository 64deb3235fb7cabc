#!/usr/bin/env bash
# Train the default model in the background (CPU: about an hour on 2 idle cores: ~17 min to cache
# the frozen trunk features, then ~2 s per step; a GPU, when present, is used and not needed
# for this small model). Logs and checkpoints go to runs/lite0-v3/; running this again after
# a kill continues the run from its last checkpoint. Follow it with: tail -f runs/lite0-v3/nohup.log
set -euo pipefail
cd "$(dirname "$0")/.."
export SKETCH_SEARCH_DATA="${SKETCH_SEARCH_DATA:-../shared/data}"
if [ ! -d "$SKETCH_SEARCH_DATA/aid" ]; then
  echo "train: AID images not found under $SKETCH_SEARCH_DATA/aid (set SKETCH_SEARCH_DATA)" >&2
  exit 2
fi
RUN=runs/lite0-v3
mkdir -p "$RUN"
if [ -f "$RUN/pid" ] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; then
  echo "train: already running as pid $(cat "$RUN/pid") (log: $RUN/nohup.log)"
  exit 0
fi
nohup .venv/bin/python -m engine.cli -v train configs/lite0-v3.json --run-dir "$RUN" >>"$RUN/nohup.log" 2>&1 &
echo $! >"$RUN/pid"
echo "train: started pid $! in the background; log: $RUN/nohup.log, checkpoints: $RUN/step_*.safetensors"
