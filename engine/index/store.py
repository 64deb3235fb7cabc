"""One index entry = one raster x one tiling scale x one model, in its own folder:

    meta.json     what the entry is for (the key's fields, the grid, the vector size)
    state.npy     uint8 per tile of the grid: 0 not computed, 1 embedded, 2 skipped (mostly nodata)
    cls.f32       float32 memory-mapped (tiles, dim): stage-1 vectors, L2-normalised
    tokstate.npy  uint8 per tile: 1 where tokens are stored
    tokens.f16    float16 memory-mapped (tiles, n_tokens, dim): stage-2 tokens (created when first needed)
    tiles.gpkg    polygons of the embedded tiles, for QGIS or any GIS

The arrays cover the whole grid but are sparse files, so only computed tiles take disk space.
Crash safety: rows are written and flushed first, then the state file is replaced atomically
(write to a temporary name, fsync, rename); a killed run loses at most the uncommitted rows, and
the next run recomputes exactly those. The folder name is a hash of the key, so changing the
raster, the tiling or the model gives a new entry and an old one is never read.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
NOT_DONE, EMBEDDED, SKIPPED = 0, 1, 2


class TileIndexError(Exception):
    """An index folder that cannot be used; one-line message for the user."""





def default_index_dir() -> Path:
    """$SKETCH_SEARCH_INDEX, else $XDG_CACHE_HOME/sketch-search/index, else ~/.cache/sketch-search/index."""
    if os.environ.get("SKETCH_SEARCH_INDEX"):
        return Path(os.environ["SKETCH_SEARCH_INDEX"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "sketch-search" / "index"


def entry_key(raster_identity: str, model_identity: str, tile_m: float, overlap: float,
              img_size: int, min_valid: float) -> dict:
    """Everything that changes a tile's vector; its hash names the entry's folder."""
    return {"format": FORMAT_VERSION, "raster": raster_identity, "model": model_identity,
            "tile_m": round(float(tile_m), 6), "overlap": round(float(overlap), 6),
            "img_size": int(img_size), "min_valid": round(float(min_valid), 6)}


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class IndexEntry:
    """Vectors of one grid. With folder=None everything lives in memory (nothing is stored)."""

    def __init__(self, folder: Path | None, key: dict, count: int, dim: int, meta: dict):
        self.folder, self.key, self.count, self.dim, self.meta = folder, key, count, dim, meta
        if folder is None:
            self.state = np.zeros(count, np.uint8)
            self.tokstate = np.zeros(count, np.uint8)
            self.cls = np.zeros((count, dim), np.float32)
        else:
            self.state = np.load(folder / "state.npy")
            self.tokstate = np.load(folder / "tokstate.npy")
            self.cls = np.memmap(folder / "cls.f32", np.float32, "r+", shape=(count, dim))
            if self.state.shape != (count,) or self.tokstate.shape != (count,):
                raise TileIndexError(f"index entry {folder} is inconsistent; clear it with `sketch-search index clear`")
        self.tokens = None
        self._open_tokens()

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path | None, key: dict, count: int, dim: int, info: dict) -> "IndexEntry":
        """Open the entry for `key`, creating it (empty) when missing. `info` is descriptive only
        (raster name, grid parameters) and goes into meta.json."""
        meta = {"key": key, "count": count, "dim": dim, **info}
        if root is None:
            return cls(None, key, count, dim, meta)
        folder = Path(root) / key_hash(key)
        if not (folder / "meta.json").is_file():
            _create(folder, meta, count, dim)
        try:
            stored = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError) as exc:
            raise TileIndexError(f"cannot read index entry {folder}: {exc}") from None
        if stored.get("key") != key or stored.get("count") != count or stored.get("dim") != dim:
            raise TileIndexError(f"index entry {folder} does not match its key; clear it with `sketch-search index clear`")
        return cls(folder, key, count, dim, stored)

    def _open_tokens(self) -> None:
        n = self.meta.get("n_tokens")
        if n is None:
            return
        if self.folder is None:
            self.tokens = np.zeros((self.count, n, self.dim), np.float16)
        else:
            self.tokens = np.memmap(self.folder / "tokens.f16", np.float16, "r+", shape=(self.count, n, self.dim))

    # -- writing ------------------------------------------------------------------------------------
    def commit(self, tiles: np.ndarray, vectors: np.ndarray, skipped: np.ndarray,
               tokens: np.ndarray | None = None, token_tiles: np.ndarray | None = None) -> None:
        """Store vectors of `tiles` (and tokens of `token_tiles`), mark `skipped` tiles, then publish
        the new state atomically. Rows first, state last: a crash in between only loses work."""
        tiles = np.asarray(tiles, np.int64)
        if len(tiles):
            order = np.argsort(tiles)
            self.cls[tiles[order]] = vectors[order]
        if tokens is not None and len(token_tiles):
            self._ensure_tokens(tokens.shape[1])
            self.tokens[np.asarray(token_tiles, np.int64)] = tokens.astype(np.float16)
        if self.folder is not None:
            if isinstance(self.cls, np.memmap):
                self.cls.flush()
            if tokens is not None and isinstance(self.tokens, np.memmap):
                self.tokens.flush()
        self.state[tiles] = EMBEDDED
        self.state[np.asarray(skipped, np.int64)] = SKIPPED
        if tokens is not None and len(token_tiles):
            self.tokstate[np.asarray(token_tiles, np.int64)] = 1
        if self.folder is not None:
            if tokens is not None and len(token_tiles):
                _atomic_save(self.folder / "tokstate.npy", self.tokstate)
            _atomic_save(self.folder / "state.npy", self.state)

    def _ensure_tokens(self, n: int) -> None:
        if self.tokens is not None:
            if self.tokens.shape[1] != n:
                raise TileIndexError(f"index entry {self.folder}: token count changed ({self.tokens.shape[1]} -> {n})")
            return
        self.meta["n_tokens"] = int(n)
        if self.folder is not None:
            path = self.folder / "tokens.f16"
            with open(path, "wb") as fh:  # sparse: only written rows take disk space
                fh.truncate(self.count * n * self.dim * 2)
            _atomic_write_text(self.folder / "meta.json", json.dumps(self.meta, indent=1))
        self._open_tokens()

    @contextmanager
    def locked(self):
        """Exclusive use of the entry while computing (another process waits), where the OS allows."""
        if self.folder is None:
            yield
            return
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; concurrent builds are the user's risk
            yield
            return
        with open(self.folder / "lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                # another process may have committed while we waited
                self.state = np.load(self.folder / "state.npy")
                self.tokstate = np.load(self.folder / "tokstate.npy")
                if self.tokens is None:
                    self.meta = json.loads((self.folder / "meta.json").read_text())
                    self._open_tokens()
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- reading ------------------------------------------------------------------------------------
    def counts(self) -> dict:
        return {"tiles": self.count, "embedded": int((self.state == EMBEDDED).sum()),
                "skipped": int((self.state == SKIPPED).sum()), "with_tokens": int(self.tokstate.sum())}

    def disk_bytes(self) -> int:
        if self.folder is None:
            return 0
        # allocated blocks, not apparent size: the arrays are sparse
        sizes = [os.stat(p) for p in self.folder.iterdir() if p.is_file()]
        return sum(s.st_blocks * 512 if hasattr(s, "st_blocks") else s.st_size for s in sizes)


def _create(folder: Path, meta: dict, count: int, dim: int) -> None:
    """Build the entry in a temporary folder and rename it into place (atomic on one filesystem)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    meta = {**meta, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    np.save(tmp / "state.npy", np.zeros(count, np.uint8))
    np.save(tmp / "tokstate.npy", np.zeros(count, np.uint8))
    with open(tmp / "cls.f32", "wb") as fh:
        fh.truncate(count * dim * 4)
    try:
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "meta.json").is_file():  # not a lost race with another process
            raise


def list_entries(root: Path) -> list[dict]:
    """meta.json of every entry under root (plus its folder, counts and size on disk)."""
    out = []
    root = Path(root)
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            meta = json.loads((folder / "meta.json").read_text())
            entry = IndexEntry(folder, meta["key"], meta["count"], meta["dim"], meta)
        except (OSError, ValueError, KeyError, TileIndexError):
            out.append({"folder": str(folder), "broken": True})
            continue
        out.append({**meta, "folder": str(folder), **entry.counts(), "bytes": entry.disk_bytes()})
    return out


def remove_entries(root: Path, raster_identity_prefix: str | None = None) -> int:
    """Delete entries (all, or those whose raster identity starts with the given path); returns how many."""
    removed = 0
    for item in list_entries(root):
        raster = item.get("key", {}).get("raster", "")
        if raster_identity_prefix is None or raster.startswith(raster_identity_prefix):
            shutil.rmtree(item["folder"])
            removed += 1
    root = Path(root)
    if raster_identity_prefix is None and root.is_dir():  # leftovers of killed runs
        for tmp in root.glob(".*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
    return removed
