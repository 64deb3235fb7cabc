#!/usr/bin/env bash
# Regenerates the lock files of the engine's environment (what the plugin's installer installs):
#   sketch_search_plugin/requirements/{pip,engine-onnx,engine-torch}.txt
# from the .in files beside them. Every package is pinned with the sha256 of each of its files, and
# one lock serves Linux, Windows and macOS and Python 3.10-3.13 (uv's --universal resolution writes
# environment markers where the platforms differ, e.g. the NVIDIA libraries only on Linux).
# The installer runs `pip install --require-hashes --no-deps -r <lock>`, so nothing outside the lock
# is ever installed. No index URL is written into the locks: the installer's index setting applies.
#
#   bash scripts/lock_engine_requirements.sh            # all three
#   INDEX_URL=https://mirror.example/simple bash scripts/lock_engine_requirements.sh engine-onnx
#
# uv comes from the package index into a temporary virtual environment, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=sketch_search_plugin/requirements
INDEX_URL=${INDEX_URL:-https://pypi.org/simple}
UV_VERSION=${UV_VERSION:-0.13.9}
PY=${PY:-python3}
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(pip engine-onnx engine-torch)

tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
"$PY" -m venv "$tool/venv"
"$tool/venv/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"

for name in "${names[@]}"; do
    [ -f "$REQ/$name.in" ] || { echo "lock: no $REQ/$name.in" >&2; exit 1; }
    echo "lock: $REQ/$name.txt"
    # A line "# no-emit: a b c" in the .in file leaves those packages out of the lock.
    no_emit=()
    for pkg in $(sed -n 's/^# no-emit://p' "$REQ/$name.in"); do no_emit+=(--no-emit-package "$pkg"); done
    # --no-config: a developer's uv.toml or UV_* settings must not change what users get.
    "$tool/venv/bin/uv" pip compile --quiet --no-config --universal --python-version 3.10 \
        --generate-hashes --index-url "$INDEX_URL" \
        --custom-compile-command "bash scripts/lock_engine_requirements.sh" "${no_emit[@]}" \
        --output-file "$REQ/$name.txt" "$REQ/$name.in"
done
