"""Two index folders of the same rasters and model -> one JSON line: per scale, whether the same tiles
have vectors and the largest difference between them (a Dask build against a serial one)."""
import json
import sys
from pathlib import Path

import numpy as np

from engine.index import list_entries


def vectors(index: Path) -> dict:
    out = {}
    for e in list_entries(index):
        state = np.load(Path(e["folder"]) / "commit.npz")["state"]
        cls = np.fromfile(Path(e["folder"]) / "cls.f32", np.float32).reshape(e["count"], e["dim"])
        out[e["key"]["tile_m"]] = (state, cls)
    return out


a, b = (vectors(Path(p)) for p in sys.argv[1:3])
report = {"scales": sorted(a) if a.keys() == b.keys() else {"first": sorted(a), "second": sorted(b)}}
for scale in sorted(set(a) & set(b)):
    (sa, ca), (sb, cb) = a[scale], b[scale]
    same = bool(np.array_equal(sa, sb))
    done = sa == 1
    report[str(scale)] = {"tiles": int(done.sum()), "same_tiles": same,
                          "max_abs_diff": float(np.abs(ca[done] - cb[done]).max()) if same and done.any() else None,
                          "min_cosine": float((ca[done] * cb[done]).sum(1).min()) if same and done.any() else None}
print(json.dumps(report))
