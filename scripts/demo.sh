#!/usr/bin/env bash
# The main job on the default model and the sample data (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/sketch-search info
