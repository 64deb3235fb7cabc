"""One index entry = one raster x one tiling scale x one model, in its own folder:

    meta.json     what the entry is for (the key's fields, the grid, vector size and type, block sizes)
    commit.npz    the committed state, replaced as a whole (temporary file, fsync, rename):
                    state     uint8 per tile: 0 not computed, 1 embedded, 2 skipped (mostly nodata)
                    tokstate  uint8 per tile: 1 where stage-2 tokens are stored
                    cls_crc, tok_crc  uint32 per block of rows: CRC-32 of the block's committed rows
    cls.f32       (tiles, dim) stage-1 vectors, L2-normalised
    tokens.f16    (tiles, n_tokens, dim) stage-2 tokens (created when first needed)
    tiles.gpkg    polygons of the embedded tiles, for QGIS or any GIS
    lock          held (flock) while computing

Reading never writes: the arrays are memory-mapped read-only and no lock is taken, so an index on a
read-only share can be searched. Before use, an entry proves itself: file sizes against meta.json,
and every block holding tiles the search covers against its checksum. Damaged rows are never read:
their tiles count as not computed, so they are computed again (and stored, when the folder can be
written; in memory only, when it cannot), with a warning naming the file.

Writing happens under the lock: rows go through ordinary file writes (a full disk is an error, not
a SIGBUS in a memory map), are fsync'ed, then commit.npz is replaced; a crash in between loses only
uncommitted rows. Files are replaced by renaming, never truncated in place, so another process
that has them mapped keeps reading a consistent copy. The arrays are sparse files: only computed
tiles take disk space. The folder name is a hash of the key, so a changed raster, tiling or model
gives a new entry and an old one is never read.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

FORMAT_VERSION = 2
NOT_DONE = 0       # state: the tile is not computed (or its rows failed their checksum)
EMBEDDED = 1       # state: the tile's stage-1 vector is stored
SKIPPED = 2        # state: the tile is mostly nodata and has no vector
NO_TOKENS = 0      # tokstate: the tile's stage-2 tokens are not stored (or failed their checksum)
TOKENS_STORED = 1  # tokstate: the tile's stage-2 tokens are stored
# Rows per checksum block: about this many bytes. A damaged block is recomputed whole; smaller
# blocks would cost more checks (one Python step per block: 25 000 for a million 1536-d vectors).
BLOCK_BYTES = 1 << 18
SPACE_MARGIN = 1 << 20         # free space kept beyond an estimated write
STALE_TMP_SECONDS = 24 * 3600  # a creation folder of a process that may live on another host
VECTOR_FILES = {"float32": "cls.f32", "float16": "cls.f16"}
VECTOR_DTYPE = "float32"       # of new entries; an entry keeps the type it was created with
TOKENS_FILE = "tokens.f16"
COMMIT_FILE = "commit.npz"
# errno values that mean "this folder cannot be written here" (not "something is wrong")
READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}

log = logging.getLogger(__name__)


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


def is_temporary(name: str) -> bool:
    """Names of files and folders that are work in progress, never finished work."""
    return name.startswith(".")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; renames there are durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    """write(file object) into a temporary name beside `path`, fsync, rename over `path`.
    The temporary file is removed on any failure (a full disk leaves nothing behind)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _crc(rows: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(rows).view(np.uint8).reshape(-1)) if rows.size else 0


def _block_rows(row_bytes: int) -> int:
    return max(1, BLOCK_BYTES // max(1, row_bytes))


def free_bytes(folder: Path) -> int:
    """Free space for an unprivileged writer on the filesystem holding `folder` (or its nearest
    existing parent)."""
    folder = Path(folder)
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def write_error(folder: Path, exc: OSError, doing: str) -> TileIndexError:
    """One line for an OSError met while writing the index: what happened and what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return TileIndexError(f"the disk is full: cannot write the tile index {folder} ({doing}); free some space, "
                              f"choose another folder (--index-dir or SKETCH_SEARCH_INDEX), or search with --no-index")
    return TileIndexError(f"cannot use the tile index folder {folder} ({doing}): {exc.strerror or exc} "
                          f"(choose another folder with --index-dir or SKETCH_SEARCH_INDEX, or search with --no-index)")


class IndexEntry:
    """Vectors of one grid, stored in `folder` (None: in memory only, nothing is stored).

    `state` and `tokstate` are this process's view: the committed state minus any tiles whose rows
    failed their checks. `problems` lists what was found damaged (one line each)."""

    def __init__(self, folder: Path | None, key: dict, count: int, dim: int, meta: dict):
        self.folder, self.key, self.count, self.dim = folder, key, count, dim
        self.meta = {**meta, "key": key, "count": count, "dim": dim}
        self.meta.setdefault("dtype", "float32")
        self.meta.setdefault("block_rows", _block_rows(dim * self.dtype.itemsize))
        self.problems: list[str] = []
        self.stored = False       # True while commits go to disk (writable folder, lock held)
        self.exists = False       # the folder holds a usable entry
        self.read_only_note = ""  # why commits stay in memory although the entry has a folder
        self._checked = np.zeros(0, np.int64)  # tiles a caller verified (re-checked after reloads)
        self._good_cls: dict[int, int] = {}    # block -> checksum it was verified against
        self._good_tok: dict[int, int] = {}
        self._blank()

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.meta["dtype"])

    @property
    def n_tokens(self) -> int | None:
        return self.meta.get("n_tokens")

    def _blank(self) -> None:
        """Nothing computed, arrays in memory (calloc'ed: pages are only taken when written)."""
        self.state = np.zeros(self.count, np.uint8)
        self.tokstate = np.zeros(self.count, np.uint8)
        self.cls_crc = np.zeros(self._n_blocks(self.meta["block_rows"]), np.uint32)
        self.tok_crc = np.zeros(0, np.uint32)
        self.cls = np.zeros((self.count, self.dim), self.dtype)
        self.tokens = None
        if self.n_tokens:
            self._memory_tokens()

    def _memory_tokens(self) -> None:
        self.tokens = np.zeros((self.count, self.n_tokens, self.dim), np.float16)
        if len(self.tok_crc) != self._n_blocks(self.meta["tok_block_rows"]):
            self.tok_crc = np.zeros(self._n_blocks(self.meta["tok_block_rows"]), np.uint32)

    def _n_blocks(self, rows: int) -> int:
        return -(-self.count // rows)

    # -- opening (never writes) ----------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path | None, key: dict, count: int, dim: int, info: dict,
             dtype: str | None = None) -> "IndexEntry":
        """The entry for `key` under `root`, read-only; a missing one reads as "nothing computed"
        (it is created when something is computed). `info` is descriptive (raster name, grid)."""
        meta = {**info, "dtype": dtype or VECTOR_DTYPE}
        if root is None:
            return cls(None, key, count, dim, meta)
        entry = cls(Path(root) / key_hash(key), key, count, dim, meta)
        entry._load()
        return entry

    def _load(self) -> None:
        """Read meta.json and commit.npz and map the arrays; anything structurally wrong is a
        problem and leaves the entry blank (its tiles are computed again). Blocks verified before
        stay verified while their checksum is unchanged (committed rows are never rewritten)."""
        self.problems = []
        self.exists = False
        if not self.folder.is_dir():
            self._blank()
            return
        try:
            self._read_files()
            self.exists = True
        except _Damaged as exc:
            self.problems.append(str(exc))
            self._blank()

    def _read_files(self) -> None:
        folder = self.folder
        try:
            stored = json.loads((folder / "meta.json").read_text())
        except FileNotFoundError:
            raise _Damaged(f"{folder}: meta.json is missing") from None
        except (OSError, ValueError) as exc:
            raise _Damaged(f"{folder / 'meta.json'} is unreadable ({_reason(exc)})") from None
        if not isinstance(stored, dict) or stored.get("key") != self.key or stored.get("count") != self.count \
                or stored.get("dim") != self.dim or stored.get("dtype") not in VECTOR_FILES:
            raise _Damaged(f"{folder / 'meta.json'} does not describe this entry")
        self.meta = stored
        try:
            with np.load(folder / COMMIT_FILE, allow_pickle=False) as z:
                state, tokstate = z["state"], z["tokstate"]
                cls_crc, tok_crc = z["cls_crc"], z["tok_crc"]
        except FileNotFoundError:
            raise _Damaged(f"{folder}: {COMMIT_FILE} is missing") from None
        except Exception as exc:  # zipfile, EOF, format and key errors: all mean a damaged file
            raise _Damaged(f"{folder / COMMIT_FILE} is unreadable ({_reason(exc)})") from None
        if state.shape != (self.count,) or tokstate.shape != (self.count,) or state.dtype != np.uint8 \
                or cls_crc.shape != (self._n_blocks(stored["block_rows"]),) or cls_crc.dtype != np.uint32 \
                or tok_crc.dtype != np.uint32:
            raise _Damaged(f"{folder / COMMIT_FILE} does not fit the entry's size")
        self.state, self.tokstate = np.array(state), np.array(tokstate)
        self.cls_crc, self.tok_crc = np.array(cls_crc), np.array(tok_crc)
        self.cls = self._map(VECTOR_FILES[stored["dtype"]], self.dtype, (self.count, self.dim))
        self.tokens = None
        if self.n_tokens:
            if self.tok_crc.shape != (self._n_blocks(stored["tok_block_rows"]),):
                if (self.tokstate != NO_TOKENS).any():
                    raise _Damaged(f"{folder / COMMIT_FILE} does not fit the entry's tokens")
                # killed between adding the token file and the next commit: no token stored yet
                self.tok_crc = np.zeros(self._n_blocks(stored["tok_block_rows"]), np.uint32)
            try:
                self.tokens = self._map(TOKENS_FILE, np.float16, (self.count, self.n_tokens, self.dim))
            except _Damaged as exc:  # the vectors are fine: only the tokens are computed again
                self.problems.append(str(exc))
                self.tokstate[:] = NO_TOKENS
                self.tok_crc[:] = 0
        elif (self.tokstate != NO_TOKENS).any():
            raise _Damaged(f"{folder / COMMIT_FILE} marks tokens that meta.json does not have")

    def _map(self, name: str, dtype, shape: tuple) -> np.ndarray:
        path = self.folder / name
        want = int(np.prod(shape)) * np.dtype(dtype).itemsize
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise _Damaged(f"{path} is missing") from None
        if size != want:
            raise _Damaged(f"{path} has {size} bytes instead of {want} (truncated or damaged)")
        if want == 0:
            return np.zeros(shape, dtype)
        try:
            return np.memmap(path, dtype, "r", shape=shape)
        except (OSError, ValueError) as exc:
            raise _Damaged(f"{path} cannot be read ({_reason(exc)})") from None

    # -- checking ------------------------------------------------------------------------------------
    def verify(self, tiles: np.ndarray | None = None) -> list[str]:
        """Check the blocks holding `tiles` (all when None) against their checksums. Tiles of a
        damaged block count as not computed from now on. Returns the problems found so far."""
        tiles = np.arange(self.count, dtype=np.int64) if tiles is None else np.asarray(tiles, np.int64)
        self._checked = np.union1d(self._checked, tiles)
        if self.folder is None or not self.exists:
            return self.problems
        self._check_blocks(tiles, self.state, EMBEDDED, NOT_DONE, self.cls, self.cls_crc, self.meta["block_rows"],
                           self._good_cls, VECTOR_FILES[self.meta["dtype"]])
        if self.tokens is not None:
            self._check_blocks(tiles, self.tokstate, TOKENS_STORED, NO_TOKENS, self.tokens, self.tok_crc,
                               self.meta["tok_block_rows"], self._good_tok, TOKENS_FILE)
        return self.problems

    def _check_blocks(self, tiles, state, done, undone, rows, sums, block_rows, good, name) -> None:
        blocks = np.unique(tiles // block_rows) if len(tiles) else np.zeros(0, np.int64)
        bad_tiles = 0
        for b in blocks:
            b = int(b)
            lo, hi = b * block_rows, min((b + 1) * block_rows, self.count)
            mask = state[lo:hi] == done
            if not mask.any() or good.get(b) == int(sums[b]):
                continue
            try:
                ok = _crc(np.asarray(rows[lo:hi])[mask]) == int(sums[b])
            except OSError:  # an I/O error reading the mapped file
                ok = False
            if ok:
                good[b] = int(sums[b])
            else:
                state[lo:hi][mask] = undone
                bad_tiles += int(mask.sum())
        if bad_tiles:
            self.problems.append(f"{self.folder / name}: {bad_tiles} tiles failed their checksum")

    # -- writing -------------------------------------------------------------------------------------
    @contextmanager
    def writing(self):
        """Commits inside this block are stored: the entry is created if missing, locked (another
        process computing it waits), reloaded and checked again, and repaired if damaged. Where
        the folder cannot be written (read-only share, no permission), commits stay in memory."""
        if self.folder is None:
            yield
            return
        try:
            if not self.exists:
                _create(self.folder, self.meta, self.count, self.dim)
            else:
                remove_stale_temporaries(self.folder.parent)
            lock = open(self.folder / "lock", "a+b")
        except OSError as exc:
            if exc.errno not in READ_ONLY_ERRNOS:
                raise write_error(self.folder.parent, exc, "creating an entry") from None
            self._keep_in_memory(f"the tile index {self.folder.parent} cannot be written ({exc.strerror})")
            yield
            return
        with lock:
            _flock(lock)
            try:
                self._prepare_under_lock()
                self.stored = True
                yield
            finally:
                self.stored = False
                _funlock(lock)

    def _prepare_under_lock(self) -> None:
        # Everything starting with "." in the folder is a leftover of a killed writer (all writers
        # hold this lock), never finished work.
        for item in self.folder.iterdir():
            if is_temporary(item.name):
                _remove(item)
        known = list(self.problems)
        self._load()  # another process may have committed while we waited
        if not self.exists:
            self._rebuild()
        self.verify(self._checked)
        for problem in self.problems:
            if problem not in known:
                log.warning("%s; its tiles are computed again", problem)

    def _rebuild(self) -> None:
        """Replace a structurally damaged entry's files with empty ones, keeping nothing."""
        meta = {k: v for k, v in self.meta.items() if k not in ("n_tokens", "tok_block_rows")}
        meta["block_rows"] = _block_rows(self.dim * self.dtype.itemsize)
        self.cls = self.tokens = None  # drop our maps of the old files (Windows cannot replace mapped files)
        self._good_cls, self._good_tok = {}, {}
        try:
            _write_entry_files(self.folder, meta, self.count, self.dim)
        except OSError as exc:
            raise write_error(self.folder, exc, "repairing a damaged entry") from None
        problems = self.problems
        self._load()
        self.problems = problems
        if not self.exists:  # written but unreadable: nothing sensible left to try
            raise TileIndexError(f"cannot repair the tile index entry {self.folder}: {'; '.join(self.problems)}")

    def _keep_in_memory(self, why: str) -> None:
        """Commits go to private copies of the arrays; the files are never written."""
        if self.read_only_note:
            return  # already so: keep the rows computed in memory
        self.read_only_note = why
        if self.exists:
            # copy-on-write maps: stored rows stay readable, new rows live in this process only
            self.cls = np.memmap(self.folder / VECTOR_FILES[self.meta["dtype"]], self.dtype, "c",
                                 shape=(self.count, self.dim)) if self.cls.size else self.cls
            if self.tokens is not None:
                self.tokens = np.memmap(self.folder / TOKENS_FILE, np.float16, "c",
                                        shape=(self.count, self.n_tokens, self.dim))

    def commit(self, tiles: np.ndarray, vectors: np.ndarray, skipped: np.ndarray,
               tokens: np.ndarray | None = None, token_tiles: np.ndarray | None = None) -> None:
        """Store vectors of `tiles` (and tokens of `token_tiles`), mark `skipped` tiles, then publish
        the new state atomically. Rows first, state last: a crash in between only loses work."""
        tiles = np.asarray(tiles, np.int64)
        skipped = np.asarray(skipped, np.int64)
        token_tiles = np.zeros(0, np.int64) if token_tiles is None else np.asarray(token_tiles, np.int64)
        has_tokens = tokens is not None and len(token_tiles) > 0
        if has_tokens:
            self._ensure_tokens(tokens.shape[1])
        vectors = np.asarray(vectors).astype(self.dtype, copy=False)
        state, tokstate = self.state.copy(), self.tokstate.copy()
        state[tiles] = EMBEDDED
        state[skipped] = SKIPPED
        if has_tokens:
            tokens = np.asarray(tokens).astype(np.float16, copy=False)
            tokstate[token_tiles] = TOKENS_STORED
        if not self.stored:
            if len(tiles):
                self.cls[tiles] = vectors
            if has_tokens:
                self.tokens[token_tiles] = tokens
            self.state, self.tokstate = state, tokstate
            return
        cls_crc = self._new_sums(self.cls, self.cls_crc, state, EMBEDDED, tiles, vectors, self.meta["block_rows"])
        tok_crc = self.tok_crc
        try:
            _write_rows(self.folder / VECTOR_FILES[self.meta["dtype"]], tiles, vectors)
            if has_tokens:
                tok_crc = self._new_sums(self.tokens, self.tok_crc, tokstate, TOKENS_STORED, token_tiles, tokens,
                                         self.meta["tok_block_rows"])
                _write_rows(self.folder / TOKENS_FILE, token_tiles, tokens)
            _save_commit(self.folder, state, tokstate, cls_crc, tok_crc)
        except OSError as exc:
            raise write_error(self.folder, exc, "storing computed tiles") from None
        self.state, self.tokstate, self.cls_crc, self.tok_crc = state, tokstate, cls_crc, tok_crc
        for b in np.unique(tiles // self.meta["block_rows"]):
            self._good_cls[int(b)] = int(cls_crc[b])
        if has_tokens:
            for b in np.unique(token_tiles // self.meta["tok_block_rows"]):
                self._good_tok[int(b)] = int(tok_crc[b])

    def _new_sums(self, rows, sums, state, done, tiles, values, block_rows) -> np.ndarray:
        """Checksums of the blocks `tiles` touch, over their committed rows after this commit."""
        sums = sums.copy()
        if not len(tiles):
            return sums
        new = dict(zip(tiles.tolist(), range(len(tiles))))
        for b in np.unique(tiles // block_rows):
            b = int(b)
            lo, hi = b * block_rows, min((b + 1) * block_rows, self.count)
            committed = np.flatnonzero(state[lo:hi] == done) + lo
            is_new = np.array([t in new for t in committed.tolist()], bool)
            block = np.empty((len(committed),) + values.shape[1:], values.dtype)
            block[is_new] = values[[new[t] for t in committed[is_new].tolist()]]
            # only committed rows are read: touching a file's holes through a memory map would
            # take pages, which a full tmpfs answers with SIGBUS
            block[~is_new] = rows[committed[~is_new]]
            sums[b] = _crc(block)
        return sums

    def _ensure_tokens(self, n: int) -> None:
        if self.tokens is not None:
            if self.n_tokens != n:
                raise TileIndexError(f"index entry {self.folder}: token count changed ({self.n_tokens} -> {n})")
            return
        self.meta["n_tokens"] = int(n)
        self.meta["tok_block_rows"] = _block_rows(n * self.dim * 2)
        self.tok_crc = np.zeros(self._n_blocks(self.meta["tok_block_rows"]), np.uint32)
        self.tokstate = np.zeros(self.count, np.uint8)
        if not self.stored:
            self._memory_tokens()
            return
        try:
            _sparse_file(self.folder / TOKENS_FILE, self.count * n * self.dim * 2)
            _save_commit(self.folder, self.state, self.tokstate, self.cls_crc, self.tok_crc)
            _atomic_write(self.folder / "meta.json", lambda fh: fh.write(json.dumps(self.meta, indent=1).encode()))
        except OSError as exc:
            raise write_error(self.folder, exc, "adding stage-2 tokens") from None
        self.tokens = self._map(TOKENS_FILE, np.float16, (self.count, n, self.dim))

    def bytes_to_add(self, tiles: int, with_tokens: bool, n_tokens: int | None = None) -> int:
        """Disk space `tiles` more computed tiles may take (rows, state, tile polygons)."""
        row = self.dim * self.dtype.itemsize
        if with_tokens and (self.n_tokens or n_tokens):
            row += (self.n_tokens or n_tokens) * self.dim * 2
        # rows are written into sparse files: count whole filesystem pages for short runs
        return tiles * (row + 600) + 2 * (4 * self.count + 65536)

    # -- reading -------------------------------------------------------------------------------------
    def counts(self) -> dict:
        return {"tiles": self.count, "embedded": int((self.state == EMBEDDED).sum()),
                "skipped": int((self.state == SKIPPED).sum()),
                "with_tokens": int((self.tokstate == TOKENS_STORED).sum())}

    def disk_bytes(self) -> int:
        if self.folder is None or not self.folder.is_dir():
            return 0
        # allocated blocks, not apparent size: the arrays are sparse
        sizes = [os.stat(p) for p in self.folder.iterdir() if p.is_file()]
        return sum(s.st_blocks * 512 if hasattr(s, "st_blocks") else s.st_size for s in sizes)

    def commit_mtime(self) -> float:
        try:
            return os.stat(self.folder / COMMIT_FILE).st_mtime
        except (OSError, TypeError):
            return 0.0


class _Damaged(Exception):
    """An entry's files do not hold together (message: which file and what is wrong)."""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _flock(fh) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; concurrent builds are the user's risk
        return
    fcntl.flock(fh, fcntl.LOCK_EX)


def _funlock(fh) -> None:
    try:
        import fcntl
    except ImportError:
        return
    fcntl.flock(fh, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def _sparse_file(path: Path, size: int) -> None:
    """A new file of `size` bytes that takes no disk space until rows are written (renamed into
    place, so a process that still maps the old file keeps its copy)."""
    _atomic_write(path, lambda fh: fh.truncate(size))


def _write_rows(path: Path, tiles: np.ndarray, values: np.ndarray) -> None:
    """Rows at their offsets, by contiguous runs, then fsync."""
    if not len(tiles):
        return
    order = np.argsort(tiles, kind="stable")
    tiles, values = tiles[order], values[order]
    row_bytes = values[0].nbytes
    breaks = np.flatnonzero(np.diff(tiles) != 1) + 1
    with open(path, "r+b") as fh:
        for run_tiles, run_values in zip(np.split(tiles, breaks), np.split(values, breaks)):
            fh.seek(int(run_tiles[0]) * row_bytes)
            fh.write(np.ascontiguousarray(run_values).tobytes())
        fh.flush()
        os.fsync(fh.fileno())


def _save_commit(folder: Path, state, tokstate, cls_crc, tok_crc) -> None:
    import io

    data = io.BytesIO()  # built in memory, so a full disk fails a plain write, not zipfile's clean-up
    np.savez(data, state=state, tokstate=tokstate, cls_crc=cls_crc, tok_crc=tok_crc)
    _atomic_write(folder / COMMIT_FILE, lambda fh: fh.write(data.getbuffer()))


def _write_entry_files(folder: Path, meta: dict, count: int, dim: int) -> None:
    """An empty entry's files in `folder` (which exists)."""
    meta = {**meta, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    dtype = np.dtype(meta["dtype"])
    _sparse_file(folder / VECTOR_FILES[meta["dtype"]], count * dim * dtype.itemsize)
    _save_commit(folder, np.zeros(count, np.uint8), np.zeros(count, np.uint8),
                 np.zeros(-(-count // meta["block_rows"]), np.uint32), np.zeros(0, np.uint32))
    _atomic_write(folder / "meta.json", lambda fh: fh.write(json.dumps(meta, indent=1).encode()))


def _create(folder: Path, meta: dict, count: int, dim: int) -> None:
    """Build the entry in a temporary folder and rename it into place (atomic on one filesystem).
    A folder already there (another process won the race, or a damaged entry) is left as it is:
    the caller locks and checks it. Any failure removes the temporary folder."""
    made = [p for p in [folder.parent, *folder.parent.parents] if not p.exists()]
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder.parent)
    if folder.is_dir():
        return
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _write_entry_files(tmp, meta, count, dim)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.is_dir():  # not a lost race with another process
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in made:  # folders made for this entry alone, innermost first
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporaries(root: Path) -> int:
    """Remove creation folders (.HASH.PID.tmp) of processes that are gone (or of any process,
    after a day: it may have run on another host). Returns how many were removed."""
    removed = 0
    try:
        items = list(Path(root).glob(".*.tmp"))
    except OSError:
        return 0
    for item in items:
        try:
            pid = int(item.name.rsplit(".", 2)[-2])
            old = time.time() - item.stat().st_mtime > STALE_TMP_SECONDS
        except (ValueError, IndexError, OSError):
            pid, old = None, True
        if old or pid is None or (pid != os.getpid() and not _pid_alive(pid)):
            _remove(item)
            removed += 1
    return removed


def list_entries(root: Path, check: bool = True) -> list[dict]:
    """Every entry under root, opened read-only: its meta.json, folder, counts, size on disk and
    `problems` (empty when healthy; every stored row is read against its checksum unless
    check=False). Folders that are not entries of this version are listed with `broken` and a
    `problem`."""
    out = []
    root = Path(root)
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not is_temporary(p.name)):
        try:
            meta = json.loads((folder / "meta.json").read_text())
            key = meta["key"]
            if key.get("format") != FORMAT_VERSION:
                out.append({**meta, "folder": str(folder), "broken": True,
                            "problem": f"written by another version of the index (format {key.get('format')}); "
                                       "never used"})
                continue
            entry = IndexEntry.open(root, key, int(meta["count"]), int(meta["dim"]), {}, meta.get("dtype"))
            if entry.folder != folder:
                raise ValueError("its folder name is not its key's hash")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            out.append({"folder": str(folder), "broken": True, "problem": f"not a readable entry ({_reason(exc)})"})
            continue
        if check:
            entry.verify()
        out.append({**meta, "folder": str(folder), **entry.counts(), "bytes": entry.disk_bytes(),
                    "problems": list(entry.problems)})
    return out


def remove_entries(root: Path, raster_identity_prefix: str | None = None) -> int:
    """Delete entries (all, or those whose raster identity starts with the given path); returns how many."""
    removed = 0
    for item in list_entries(root, check=False):
        raster = item.get("key", {}).get("raster", "")
        if raster_identity_prefix is None or raster.startswith(raster_identity_prefix):
            try:
                shutil.rmtree(item["folder"])
            except OSError as exc:
                raise TileIndexError(f"cannot remove the index entry {item['folder']}: {exc.strerror or exc} "
                                     f"(the index folder is read-only here, or belongs to someone else)") from None
            removed += 1
    root = Path(root)
    if raster_identity_prefix is None and root.is_dir():  # leftovers of killed runs
        for tmp in root.glob(".*.tmp"):
            _remove(tmp)
    return removed
