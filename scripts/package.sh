#!/usr/bin/env bash
# Builds dist/sketch_search_plugin.zip, the installable QGIS plugin, and checks it.
#
# Layout of the zip (one top-level folder, as QGIS and plugins.qgis.org expect):
#   sketch_search_plugin/            the plugin's own code, icons, styles, LICENSE
#   sketch_search_plugin/metadata.txt                     copied from the repository root
#   sketch_search_plugin/vendor/engine/                    the engine, run by the worker process
#                                                          (PYTHONPATH=vendor), never imported by QGIS
#   .../vendor/engine/models/default.*                     the default model, if present and small enough,
#                                                          and its ONNX export for the small CPU engine
# Only files git tracks or would track are taken, so caches and build artefacts never get in.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DIST=${DIST:-dist}
BUILD=${BUILD:-build/package}
ZIP_LIMIT_MB=${ZIP_LIMIT_MB:-25}   # plugins.qgis.org refuses larger uploads
PLUGIN=sketch_search_plugin
OUT="$BUILD/$PLUGIN"

rm -rf "$BUILD"
mkdir -p "$OUT/vendor" "$DIST"

# Text files only from the repository's view of the tree (tracked or not ignored).
copy_tree() {  # copy_tree SRC_DIR DEST_DIR
    git ls-files --cached --others --exclude-standard -- "$1" | while read -r f; do
        [ -f "$f" ] || continue
        case "$f" in */__pycache__/*|*.pyc|*/tests/*) continue ;; esac
        case "$f" in *.safetensors|*.pth|*.pt|*.onnx|*.npz) continue ;; esac  # models: handled below
        mkdir -p "$2/$(dirname "${f#"$1"/}")"
        cp "$f" "$2/${f#"$1"/}"
    done
}
copy_tree "$PLUGIN" "$OUT"
copy_tree engine "$OUT/vendor/engine"
cp metadata.txt "$OUT/"

# The default model: shipped when it exists and the zip stays under the limit.
model=engine/models/default.safetensors
if [ -f "$model" ]; then
    size_mb=$(( $(stat -c %s "$model") / 1048576 ))
    if [ "$size_mb" -lt $(( ZIP_LIMIT_MB - 3 )) ]; then
        mkdir -p "$OUT/vendor/engine/models"
        cp "$model" "$OUT/vendor/engine/models/"
        [ -f engine/models/default.json ] && cp engine/models/default.json "$OUT/vendor/engine/models/"
        echo "package: default model included (${size_mb} MB)"
        # The same model for ONNX Runtime: the engine environment for CPUs runs without PyTorch.
        "$PY" -m engine.onnx_export --checkpoint "$model" --out "$OUT/vendor/engine/models/default.onnx"
        echo "package: ONNX export included ($(( $(stat -c %s "$OUT/vendor/engine/models/default.onnx") / 1048576 )) MB)"
    else
        echo "package: WARNING default model is ${size_mb} MB, too large for a ${ZIP_LIMIT_MB} MB zip: not included" >&2
    fi
else
    echo "package: no default model at $model (the plugin will ask for a checkpoint)"
fi

ZIPFILE="$DIST/$PLUGIN.zip"
rm -f "$ZIPFILE"
"$PY" - "$BUILD" "$PLUGIN" "$ZIPFILE" "$ZIP_LIMIT_MB" <<'PYEOF'
"""Zip the plugin folder, then check the zip as the plugin repository would."""
import configparser
import io
import sys
import zipfile
from pathlib import Path

build, plugin, zip_path, limit_mb = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for f in sorted((build / plugin).rglob("*")):
        if f.is_file():
            z.write(f, f.relative_to(build).as_posix())

errors = []
with zipfile.ZipFile(zip_path) as z:
    names = z.namelist()
    tops = {n.split("/")[0] for n in names}
    if tops != {plugin}:
        errors.append(f"the zip must hold exactly one folder {plugin}/, found {sorted(tops)}")
    import xml.etree.ElementTree as ET  # the resources the plugin declares must all be packed
    declared = [f.text for f in ET.parse("resources.qrc").iter("file")]
    errors += [f"resources.qrc lists {f}, which is not in the zip" for f in declared if f not in names]
    required = ["__init__.py", "plugin.py", "metadata.txt", "LICENSE", "icons/icon.svg", "worker_client.py",
                "styles/sketch_matches.qml", "vendor/engine/__init__.py", "vendor/engine/search.py",
                "vendor/engine/worker/__main__.py"]
    for r in required:
        if f"{plugin}/{r}" not in names:
            errors.append(f"missing {plugin}/{r}")
    binary_suffixes = (".so", ".pyd", ".dll", ".dylib", ".exe", ".pyc", ".pyo", ".o", ".a")
    magics = (b"\x7fELF", b"MZ", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
    for n in names:
        if "__pycache__" in n or "/.git" in n or n.endswith(binary_suffixes):
            errors.append(f"build artefact or compiled file in the zip: {n}")
        elif not n.endswith((".safetensors", ".onnx", ".png")) and z.read(n)[:4].startswith(magics):
            errors.append(f"compiled binary in the zip: {n}")
    meta = configparser.ConfigParser(interpolation=None)
    meta.read_string(z.read(f"{plugin}/metadata.txt").decode("utf-8"))
    general = meta["general"] if meta.has_section("general") else {}
    for field in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                  "repository", "tracker", "homepage", "tags", "icon", "category", "license",
                  "hasProcessingProvider"):
        if not general.get(field, "").strip():
            errors.append(f"metadata.txt: field {field} is missing or empty")
    if general.get("icon") and f"{plugin}/{general.get('icon')}" not in names:
        errors.append(f"metadata.txt: icon {general.get('icon')} is not in the zip")
    if general.get("hasProcessingProvider", "").lower() != "yes":
        errors.append("metadata.txt: hasProcessingProvider must be yes")
    size_mb = zip_path.stat().st_size / 1048576
    if size_mb > limit_mb:
        errors.append(f"the zip is {size_mb:.1f} MB, over the {limit_mb:g} MB limit")
    compile_errors = []
    for n in names:  # every Python file must at least compile (syntax) in this Python
        if n.endswith(".py"):
            try:
                compile(z.read(n), n, "exec")
            except SyntaxError as exc:
                compile_errors.append(f"{n}: {exc}")
    errors += compile_errors
if errors:
    print("package: the zip FAILED its checks:\n  " + "\n  ".join(errors), file=sys.stderr)
    sys.exit(1)
model = any(n.endswith("default.safetensors") for n in names)
print(f"package: {zip_path} OK: {len(names)} files, {size_mb:.2f} MB, metadata complete, no binaries"
      f"{', with the default model' if model else ', without a default model'}")
PYEOF
