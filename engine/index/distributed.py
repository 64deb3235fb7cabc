"""Index builds on a Dask cluster: workers read and embed tiles, this process commits them.

    sketch-search index build --raster state.vrt --dask tcp://scheduler:8786   # a running cluster
    sketch-search index build --raster state.vrt --dask local:4                # 4 local worker processes

The client plans the build exactly as a serial one (same entries, same tiles), takes each entry's
write lock, splits the tiles still to compute into units of compact blocks and submits one task
per unit. A worker loads the model once (on its own GPU where it has one, `--device`), reads its
unit through the tile reader and returns the vectors; the client commits them as they come (every
couple of seconds, and on cancel, Ctrl-C or an error), so the index is the one a serial build makes
and a stopped build resumes with what is missing. Dask runs the task of a lost worker again
elsewhere: a lost worker costs only its unfinished units. A unit that kills every worker taking it
(Dask gives up after a few) ends the build with one line, the finished units kept.

Workers need the engine importable (the same environment as the client, e.g. the same virtual
environment on a shared file system) and the rasters at the same paths.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Callable

import numpy as np

from .build import COMMIT_SECONDS, Cancelled, _Pending, check_disk_space, write_tile_layer
from .tile_reader import READ_TILES, BatchReader, block_order, read_tiles

UNIT_TILES = 8 * READ_TILES  # tiles per task: a block read in 8 reads (a few seconds of model time on a GPU)

log = logging.getLogger(__name__)


class DaskError(RuntimeError):
    """The cluster cannot be used; one-line message for the user."""


@contextmanager
def dask_client(address):
    """A distributed Client for `address` (a scheduler address, or local:N for a cluster of N worker
    processes started here, closed at the end; or a Client, used as it is)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise DaskError("--dask needs the packages dask and distributed (pip install dask distributed)") from None
    if isinstance(address, Client):  # a client the caller made (and closes)
        yield address
        return
    cluster = None
    try:
        if address.startswith("local:"):
            n = address.partition(":")[2]
            if not n.isdigit() or int(n) < 1:
                raise DaskError(f"--dask {address}: give local:N with N worker processes, e.g. local:4")
            cluster = LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(address, timeout="20s")
    except DaskError:
        raise
    except (OSError, TimeoutError) as exc:
        raise DaskError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# -- on the workers ------------------------------------------------------------------------------------
_embedders: dict = {}


def _worker_embedder(checkpoint: str | None, device: str | None):
    """The model of this worker process, loaded once."""
    key = (checkpoint, device)
    if key not in _embedders:
        from ..runtime import load_embedder

        _embedders[key] = load_embedder(checkpoint, device)
    return _embedders[key]


def embed_unit(source, grid, tiles: np.ndarray, checkpoint: str | None, device: str | None,
               min_valid: float) -> dict:
    """Read and embed one unit of tiles (runs on a worker). Returns kept ids, their vectors, skipped
    ids and the model identity (checked by the client)."""
    embedder = _worker_embedder(checkpoint, device)
    prepared = hasattr(embedder, "prepare_batch") and hasattr(embedder, "embed_prepared")
    reader = BatchReader(source, grid, np.asarray(tiles, np.int64), embedder.batch_size, embedder.cfg.img_size,
                         min_valid, read_tiles, prepare=embedder.prepare_batch if prepared else None)
    kept, vectors, skipped = [], [], []
    for _, images, k, s in reader:
        if len(k):
            emb = embedder.embed_prepared(images) if prepared else embedder.embed_images(images)
            kept.append(k)
            vectors.append(np.asarray(emb.cls, np.float32))
        skipped.append(s)
    close = getattr(source, "close", None)
    if close:
        close()
    return {"kept": np.concatenate(kept) if kept else np.zeros(0, np.int64),
            "vectors": np.concatenate(vectors) if vectors else np.zeros((0, embedder.vector_dim), np.float32),
            "skipped": np.concatenate(skipped) if skipped else np.zeros(0, np.int64),
            "identity": embedder.identity}


# -- on the client -------------------------------------------------------------------------------------
def compute_layers_dask(client, layers, embedder, checkpoint: str | None, device: str | None, min_valid: float,
                        progress: Callable[[int, int, str], None] | None = None,
                        is_cancelled: Callable[[], bool] | None = None, unit_tiles: int = UNIT_TILES,
                        approximate_index: bool = True) -> tuple[int, int]:
    """compute_layers (engine/index/build.py) with the reading and embedding done by the cluster's
    workers. Returns (embedded, skipped) counts."""
    from distributed import KilledWorker, as_completed

    from . import ann

    total = sum(len(l.todo) for l in layers)
    counts = {"done": 0, "embedded": 0, "skipped": 0}
    if total:
        check_disk_space(layers, False)
    if progress:
        progress(0, total, f"{total} tiles to compute on {len(client.scheduler_info().get('workers', {}))} Dask workers")
    for layer in layers:
        with layer.entry.writing():
            todo = block_order(layer.grid, layer.todo, unit_tiles)  # another build may have done some
            if len(todo):
                pending = _Pending()
                futures = [client.submit(embed_unit, layer.source, layer.grid, todo[i:i + unit_tiles], checkpoint,
                                         device, min_valid, pure=False)
                           for i in range(0, len(todo), unit_tiles)]
                try:
                    for future in as_completed(futures):
                        try:
                            out = future.result()
                        except KilledWorker:  # Dask gave up: each worker that took this unit died
                            raise DaskError(f"Dask workers died again and again computing tiles of {layer.label} "
                                            f"(out of memory? see the workers' logs); what was computed is kept "
                                            f"in the index") from None
                        if out["identity"] != embedder.identity:
                            raise DaskError(f"a Dask worker loaded another model ({out['identity'][:16]}) than this "
                                            f"process ({embedder.identity[:16]}): give workers the same checkpoint")
                        pending.add(out["kept"], _Vectors(out["vectors"]), out["skipped"], False)
                        counts["done"] += len(out["kept"]) + len(out["skipped"])
                        counts["embedded"] += len(out["kept"])
                        counts["skipped"] += len(out["skipped"])
                        if time.monotonic() - pending.since > COMMIT_SECONDS:
                            pending.commit(layer.entry)
                        if progress:
                            progress(counts["done"], total, layer.label)
                        if is_cancelled and is_cancelled():
                            raise Cancelled(f"cancelled after {counts['done']} of {total} tiles (kept in the index)")
                    pending.commit(layer.entry)
                except BaseException:
                    pending.commit(layer.entry)  # keep every finished unit (cancel, Ctrl-C, a failed unit)
                    raise
                finally:
                    client.cancel([f for f in futures if not f.done()])
            if layer.entry.stored:
                write_tile_layer(layer)
                if approximate_index:
                    ann.refresh(layer.entry, lambda what: progress and progress(counts["done"], total, what))
    return counts["embedded"], counts["skipped"]


class _Vectors:
    """What _Pending.add takes from an embedding: the stage-1 vectors."""

    def __init__(self, cls: np.ndarray):
        self.cls = cls


def build_index_dask(embedder, sources, address: str, checkpoint: str | None, device: str | None,
                     extent=None, options=None, progress=None, is_cancelled=None, unit_tiles: int = UNIT_TILES):
    """engine.search.build_index on a Dask cluster (`address`: a scheduler, or local:N)."""
    from ..search import (SearchCancelled, SearchError, SearchOptions, SearchResult, TooManyTiles, _estimate,
                          _something_to_search, _user_errors, plan)
    from .build import require_writable

    t0 = time.perf_counter()
    options = options or SearchOptions()
    if not options.use_index:
        raise SearchError("building an index needs an index folder (use_index=False given)")
    if options.stage2:
        raise SearchError("a Dask build stores stage-1 vectors only (drop --tokens)")
    layers, _ = plan(embedder, sources, extent, options)
    _user_errors(require_writable, layers)
    todo = sum(len(l.todo) for l in layers)
    if todo > options.max_tiles:
        raise TooManyTiles(f"building would compute {_estimate(embedder, layers, []).describe()}, more than the "
                           f"limit of {options.max_tiles}: raise it (--max-tiles)")
    try:
        with dask_client(address) as client:
            computed, skipped = _user_errors(compute_layers_dask, client, layers, embedder, checkpoint, device,
                                             options.min_valid, progress, is_cancelled, unit_tiles)
    except Cancelled as exc:
        raise SearchCancelled(str(exc)) from None
    except DaskError as exc:
        raise SearchError(str(exc)) from None
    cached = sum(len(l.tiles) for l in layers) - computed - skipped
    _something_to_search(layers, options, "nothing to index")
    return SearchResult([], computed, cached, skipped, time.perf_counter() - t0)
