#!/usr/bin/env bash
# Sets up everything the project needs on a fresh Debian machine, idempotently:
#   1. QGIS (the desktop application, qgis_process and the Python bindings) from Debian (system
#      Python /usr/bin/python3), Xvfb for the real-application tests, debootstrap (as root) for
#      the chroot with today's QGIS LTR that the tests make on first use;
#   2. a virtual environment .venv made from that Python with --system-site-packages,
#      so it sees QGIS and PyQt5 and takes our pinned packages;
#   3. the pinned Python dependencies and the engine itself (editable).
# A second run only checks stamps and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP="$VENV/.requirements.sha256"
NEED_MB=7000  # a fresh .venv with the pinned packages (6.1 GB measured) and pip's room to unpack

need_apt=()
/usr/bin/python3 -c "import qgis.core" 2>/dev/null || need_apt+=(python3-qgis qgis-providers)
/usr/bin/python3 -c "import ensurepip" 2>/dev/null || need_apt+=(python3-venv)
command -v qgis >/dev/null || need_apt+=(qgis)  # the desktop application: real-application tests
command -v Xvfb >/dev/null || need_apt+=(xvfb)
command -v xauth >/dev/null || need_apt+=(xauth)  # xvfb-run needs it
# debootstrap makes the Debian sid chroot with today's QGIS LTR (tests/app/sid_chroot.py; root only)
[ "$(id -u)" -ne 0 ] || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing from Debian: ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV from /usr/bin/python3 (sees QGIS)"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    # PyTorch's PyPI build carries CUDA libraries: the environment takes about 6.5 GB. Say so before pip
    # fails half-way with "No space left on device".
    free_mb=$(df -Pm "$VENV" | awk 'NR==2 {print $4}')
    if [ "$free_mb" -lt "$NEED_MB" ]; then
        echo "setup: the Python environment needs about $((NEED_MB / 1000)) GB free; $(pwd) has ${free_mb} MB." >&2
        echo "setup: free some space (old clones, /tmp/pytest-of-$(id -un)) and run this again." >&2
        exit 1
    fi
    echo "setup: installing pinned Python packages (first run takes a few minutes)"
    # pip warns once per package when its configuration names a local package folder that is absent: hide that noise
    quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
    quiet "$VENV/bin/python" -m pip install -q --upgrade pip
    quiet "$VENV/bin/python" -m pip install -q -r requirements-dev.txt
    quiet "$VENV/bin/python" -m pip install -q --no-deps -e .
    echo "$want" > "$STAMP"
fi

# The shipped model for ONNX Runtime (the engine without PyTorch: the plugin's CPU environment, and
# SKETCH_SEARCH_RUNTIME=onnx). Made from the checkpoint, never committed; remade when the model changes.
ONNX=engine/models/default.onnx
if [ -f engine/models/default.safetensors ] && { [ ! -f "$ONNX" ] || [ engine/models/default.safetensors -nt "$ONNX" ] \
        || [ engine/models/default.json -nt "$ONNX" ]; }; then
    echo "setup: exporting the default model for ONNX Runtime ($ONNX)"
    "$VENV/bin/python" -m engine.onnx_export --out "$ONNX" >/dev/null
fi
