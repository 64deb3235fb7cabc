"""Approximate stage 1 for very large entries: a FAISS IVF-PQ index beside the vectors.

An exact scan of the memory-mapped vectors takes about 0.23 s per million 1536-d rows (BENCHMARKS.md),
so up to ANN_MIN_ROWS rows stage 1 stays exact. Above, an entry gets `ann.faiss`, built when the
entry is filled (engine/index/build.py): the unit vectors are rotated onto their main axes (PCA,
which keeps L2 distances, and for unit vectors L2 ranks as cosine), grouped into inverted lists
(IVF) and compressed to PQ codes of PQ_BYTES bytes. A query probes the nearest lists, takes the best
CANDIDATES_PER_HIT x n codes, and re-scores those candidates exactly from the stored float32 rows,
so every score a search returns is exact; only which rows get a score is approximate (recall,
measured by benchmarks/stage1_scale.py). Rows the ANN index does not hold (embedded after it was
built) are scanned exactly beside it.

The ANN files are a cache of the vectors, never the source of a score: `ann.json` (written last)
records how many rows the index holds; a missing, partial or unreadable index means an exact scan.
FAISS is optional (the `faiss-cpu` package): without it, stage 1 is exact at any size.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

ANN_FILE, ANN_ROWS_FILE, ANN_META_FILE = "ann.faiss", "ann_rows.npy", "ann.json"
ANN_FORMAT = 1
ANN_MIN_ROWS = int(os.environ.get("SKETCH_SEARCH_ANN_MIN_ROWS", 2_000_000))
REBUILD_SHARE = 0.9        # rebuild when the index holds less than this share of the embedded rows
PCA_DIMS, PQ_BYTES = 256, 64
TRAIN_ROWS = 150_000       # rows sampled to train the PCA, the lists and the codebooks
ADD_CHUNK = 65_536
CANDIDATES_PER_HIT, MIN_CANDIDATES = 50, 1_000  # 5,000 rows re-scored for 100 hits: 31 MB of 1536-d rows
# share of the inverted lists probed per query (recall 1.0 at 10^6 synthetic rows, 0.97 at 1/8)
PROBE_SHARE = 1 / 4

log = logging.getLogger(__name__)


def available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def factory_for(rows: int, dim: int) -> str:
    """FAISS index description for `rows` vectors of `dim`: about sqrt(rows) / 2 inverted lists."""
    nlist = 2 ** int(np.clip(round(math.log2(max(math.sqrt(rows) / 2, 1))), 8, 14))
    pca = min(PCA_DIMS, dim)
    pq = min(PQ_BYTES, pca)
    while pca % pq:
        pq -= 1
    return (f"PCA{pca}," if pca < dim else "") + f"IVF{nlist},PQ{pq}"


def build(read_rows: Callable[[np.ndarray], np.ndarray], ids: np.ndarray, dim: int,
          progress: Callable[[int, int], None] | None = None, seed: int = 0):
    """An ANN index of the rows `ids` (read_rows(ids) -> float32 (len, dim) unit vectors)."""
    import faiss

    ids = np.asarray(ids, np.int64)
    index = faiss.index_factory(dim, factory_for(len(ids), dim), faiss.METRIC_L2)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.do_polysemous_training = False  # FAISS's default for IVF-PQ; costs minutes, serves Hamming search only
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(ids, min(len(ids), TRAIN_ROWS), replace=False))
    index.train(np.ascontiguousarray(read_rows(sample), np.float32))
    for start in range(0, len(ids), ADD_CHUNK):
        chunk = ids[start:start + ADD_CHUNK]
        index.add_with_ids(np.ascontiguousarray(read_rows(chunk), np.float32), chunk)
        if progress:
            progress(min(start + ADD_CHUNK, len(ids)), len(ids))
    return index


def save(folder: Path, index, ids: np.ndarray, count: int) -> None:
    """Write the index and the rows it holds; ann.json last, so only a complete set is ever used.
    Each file goes through a temporary name (a leading '.', removed by the entry's next writer)."""
    import faiss

    folder = Path(folder)
    (folder / ANN_META_FILE).unlink(missing_ok=True)  # from here on the old files are not used
    held = np.zeros(count, bool)
    held[np.asarray(ids, np.int64)] = True
    def save_rows(path: Path) -> None:
        with open(path, "wb") as fh:
            np.save(fh, np.packbits(held, bitorder="little"))

    for name, write in ((ANN_FILE, lambda p: faiss.write_index(index, str(p))), (ANN_ROWS_FILE, save_rows)):
        tmp = folder / f".{name}.tmp"
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, folder / name)
    meta = {"format": ANN_FORMAT, "rows": int(held.sum()), "count": int(count), "built": time.time(),
            "bytes": os.path.getsize(folder / ANN_FILE)}
    tmp = folder / f".{ANN_META_FILE}.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, folder / ANN_META_FILE)


def held_rows(folder: Path | None) -> int:
    """Rows the entry's ANN index holds (0: none, or not usable)."""
    if folder is None:
        return 0
    try:
        meta = json.loads((Path(folder) / ANN_META_FILE).read_text())
        return int(meta["rows"]) if meta.get("format") == ANN_FORMAT else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class AnnIndex:
    """A loaded ANN index and the rows it holds (bool per tile)."""

    def __init__(self, index, held: np.ndarray):
        self.index, self.held = index, held
        import faiss

        ivf = faiss.extract_index_ivf(index)
        self.nlist = ivf.nlist
        self.nprobe = max(1, round(self.nlist * PROBE_SHARE))

    def candidates(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """Ids of the k nearest held rows to the unit query, among `allowed` (bool per tile) if given."""
        import faiss

        keep_alive = None
        ivf_params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        if allowed is not None:
            keep_alive = np.packbits(allowed, bitorder="little")
            ivf_params.sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(keep_alive))
        params = faiss.SearchParametersPreTransform(index_params=ivf_params) \
            if isinstance(self.index, faiss.IndexPreTransform) else ivf_params
        _, ids = self.index.search(np.asarray(query, np.float32)[None], k, params=params)
        del keep_alive
        ids = ids[0]
        return ids[ids >= 0]


_cache: dict[tuple, AnnIndex] = {}
_cache_lock = threading.Lock()


def load(folder: Path | None, count: int) -> AnnIndex | None:
    """The entry's ANN index (kept in memory for the next search while its files are unchanged),
    or None when there is none, FAISS is missing, or the files are not a complete set."""
    if folder is None or not held_rows(folder) or not available():
        return None
    import faiss

    folder = Path(folder)
    try:
        stats = tuple((os.stat(folder / n).st_mtime_ns, os.stat(folder / n).st_size)
                      for n in (ANN_FILE, ANN_ROWS_FILE, ANN_META_FILE))
        key = (str(folder), stats)
        with _cache_lock:
            if key in _cache:
                return _cache[key]
        held = np.unpackbits(np.load(folder / ANN_ROWS_FILE), count=count, bitorder="little").astype(bool)
        ann = AnnIndex(faiss.read_index(str(folder / ANN_FILE)), held)
    except (OSError, ValueError, RuntimeError) as exc:  # faiss reports a damaged file as RuntimeError
        log.warning("%s: the approximate index cannot be read (%s); stage 1 scans exactly",
                    folder / ANN_FILE, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    with _cache_lock:
        for old in [k for k in _cache if k[0] == str(folder)]:
            del _cache[old]
        if len(_cache) >= 4:
            _cache.pop(next(iter(_cache)))
        _cache[key] = ann
    return ann


def topk(query: np.ndarray, ann: AnnIndex, read_rows: Callable[[np.ndarray], np.ndarray], rows: np.ndarray,
         n: int, exact_rest: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]):
    """Best n of `rows` (sorted tile ids) for the unit query: candidates from the ANN index,
    re-scored exactly from read_rows; rows it does not hold go to exact_rest(rows, n).
    Returns (ids, scores), best first."""
    rows = np.asarray(rows, np.int64)
    in_ann = ann.held[rows]
    allowed = None
    if not (in_ann.all() and len(rows) == int(ann.held.sum())):  # a part of the entry: say which rows
        allowed = np.zeros(len(ann.held), bool)
        allowed[rows[in_ann]] = True
    cand = np.sort(ann.candidates(query, max(CANDIDATES_PER_HIT * n, MIN_CANDIDATES), allowed))
    ids, scores = cand, np.asarray(read_rows(cand), np.float32) @ np.asarray(query, np.float32)
    rest = rows[~in_ann]
    if len(rest):
        rest_ids, rest_scores = exact_rest(rest, n)
        ids, scores = np.concatenate([ids, rest_ids]), np.concatenate([scores, rest_scores])
    order = np.argsort(-scores, kind="stable")[:n]
    return ids[order], scores[order]


def entry_topk(query: np.ndarray, entry, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1 over one index entry: the best n of `rows` (embedded tile ids). Exact below
    ANN_MIN_ROWS rows or without a usable ANN index; approximate candidates re-scored exactly above."""
    from ..ranking import stage1_topk
    from .store import EMBEDDED

    def exact(subset: np.ndarray, k: int):
        return stage1_topk(query, entry.cls, k, subset)

    if len(rows) < ANN_MIN_ROWS or getattr(entry, "folder", None) is None:
        return exact(rows, n)
    index = load(entry.folder, entry.count)
    if index is None:
        if getattr(entry, "lazy_checks", False):  # unchecked rows are never scanned: check them now
            entry.verify(rows)
            entry.lazy_checks = False
            rows = rows[entry.state[rows] == EMBEDDED]
        return exact(rows, n)
    read = lambda ids: np.asarray(entry.cls[ids], np.float32)  # noqa: E731
    if not getattr(entry, "lazy_checks", False):
        return topk(query, index, read, rows, n, exact)
    # Rows not checked yet: check the blocks of the hits only (a few MB, not the whole file); a
    # damaged hit is dropped (its tiles count as not computed, with a warning) and the search runs
    # again without it, so a damaged vector is never returned.
    known = len(entry.problems)
    for _ in range(8):
        ids, scores = topk(query, index, read, rows, n, exact)
        entry.verify(ids)
        for problem in entry.problems[known:]:
            log.warning("%s; those tiles are left out of this search (`index build` computes them again)", problem)
        known = len(entry.problems)
        good = entry.state[ids] == EMBEDDED
        if good.all():
            return ids, scores
        rows = rows[entry.state[rows] == EMBEDDED]
    return ids[good], scores[good]


def refresh(entry, progress: Callable[[str], None] | None = None) -> bool:
    """Build (again) the entry's ANN index when it has at least ANN_MIN_ROWS embedded rows and its
    index holds less than REBUILD_SHARE of them. Call with the entry's write lock held
    (IndexEntry.writing, stored). Returns whether it built one."""
    from .store import EMBEDDED

    if not entry.stored or not needs_refresh(entry):
        return False
    ids = np.flatnonzero(entry.state == EMBEDDED)
    if progress:
        progress(f"approximate index of {len(ids):,} vectors")
    t0 = time.perf_counter()
    try:
        index = build(lambda rows: np.asarray(entry.cls[rows], np.float32), ids, entry.dim)
        save(entry.folder, index, ids, entry.count)
    except (MemoryError, RuntimeError) as exc:  # searches still work, exactly: say so and go on
        log.warning("%s: could not build the approximate index (%s); stage 1 scans exactly", entry.folder, exc)
        return False
    log.info("%s: approximate index of %d vectors built in %.0f s", entry.folder, len(ids), time.perf_counter() - t0)
    return True


def needs_refresh(entry) -> bool:
    """The entry is large enough for an ANN index and has none, or one holding too few rows."""
    from .store import EMBEDDED

    if entry.folder is None or not entry.exists or not available():
        return False
    embedded = int((entry.state == EMBEDDED).sum())
    return embedded >= ANN_MIN_ROWS and held_rows(entry.folder) < REBUILD_SHARE * embedded
