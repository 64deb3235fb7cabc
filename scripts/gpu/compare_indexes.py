"""Two index folders of the same rasters and model -> one JSON line: per scale, whether the same tiles
have vectors, the largest difference between them and the lowest cosine (a Dask build against a
serial one), and any problem the index's own checks find."""
import json
import sys
from pathlib import Path

import numpy as np

from engine.index import list_entries
from engine.index.store import IndexEntry


def vectors(index: Path) -> dict:
    out = {}
    for e in list_entries(index):
        if e.get("broken") or e["problems"]:
            raise SystemExit(f"{e['folder']}: {e.get('problem') or e['problems']}")
        entry = IndexEntry.open(index, e["key"], int(e["count"]), int(e["dim"]), {}, e.get("dtype"))
        out[e["key"]["tile_m"]] = (np.asarray(entry.state), np.asarray(entry.cls, np.float32))
    return out


a, b = (vectors(Path(p)) for p in sys.argv[1:3])
report = {"scales": sorted(a) if a.keys() == b.keys() else {"first": sorted(a), "second": sorted(b)}}
for scale in sorted(set(a) & set(b)):
    (sa, ca), (sb, cb) = a[scale], b[scale]
    same = bool(np.array_equal(sa, sb))
    done = sa == 1
    both = same and bool(done.any())
    report[str(scale)] = {"tiles": int(done.sum()), "same_tiles": same,
                          "max_abs_diff": float(np.abs(ca[done] - cb[done]).max()) if both else None,
                          "min_cosine": float((ca[done] * cb[done]).sum(1).min()) if both else None}
print(json.dumps(report))
