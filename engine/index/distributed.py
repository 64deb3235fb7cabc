"""Index builds on a Dask cluster: workers read and embed tiles, this process commits them.

    sketch-search index build --raster state.vrt --dask tcp://scheduler:8786   # a running cluster
    sketch-search index build --raster state.vrt --dask local:4                # 4 local worker processes

The client plans the build exactly as a serial one (same entries, same tiles), takes the write
locks of a raster's entries, splits the tiles still to compute into units and submits one task per
unit: a region of the raster with the tiles of every scale in it, decoded once by the worker, where
regions pay (tile_reader.RegionReader; about UNIT_TILES tiles each), else compact blocks of one
scale's tiles. A worker loads the model once (on its own GPU where it has one, `--device`), reads its
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
from contextlib import ExitStack, contextmanager
from typing import Callable

import numpy as np

from .build import COMMIT_SECONDS, Cancelled, _by_source, _Pending, check_disk_space, write_tile_layer
from .tile_reader import (READ_TILES, BatchReader, RegionReader, block_order, read_tiles, region_plan,
                          region_side, regions_worthwhile)

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
    out = _embed_batches(embedder, ((0, *batch) for batch in reader), 1, prepared)[0]
    _close(source)
    return dict(out, identity=embedder.identity)


def embed_region(source, parts: list[tuple], side: int, checkpoint: str | None, device: str | None,
                 min_valid: float) -> dict:
    """Read and embed the tiles of several scales (`parts`: (grid, tiles)) lying in one region of
    the raster, decoded once (runs on a worker). Returns one result per part, as embed_unit's."""
    embedder = _worker_embedder(checkpoint, device)
    prepared = hasattr(embedder, "prepare_batch") and hasattr(embedder, "embed_prepared")
    reader = RegionReader(source, parts, embedder.batch_size, embedder.cfg.img_size, min_valid, read_tiles, side,
                          prepare=embedder.prepare_batch if prepared else None)
    out = _embed_batches(embedder, iter(reader), len(parts), prepared)
    _close(source)
    return {"parts": out, "identity": embedder.identity}


def _embed_batches(embedder, batches, n_parts: int, prepared: bool) -> list[dict]:
    """Embed (part, tiles, images, kept, skipped) batches: kept ids, vectors and skipped ids per part."""
    kept, vectors, skipped = ([[] for _ in range(n_parts)] for _ in range(3))
    for pi, _, images, k, s in batches:
        if len(k):
            emb = embedder.embed_prepared(images) if prepared else embedder.embed_images(images)
            kept[pi].append(k)
            vectors[pi].append(np.asarray(emb.cls, np.float32))
        skipped[pi].append(s)
    return [{"kept": np.concatenate(k) if k else np.zeros(0, np.int64),
             "vectors": np.concatenate(v) if v else np.zeros((0, embedder.vector_dim), np.float32),
             "skipped": np.concatenate(s) if s else np.zeros(0, np.int64)} for k, v, s in zip(kept, vectors, skipped)]


def _close(source) -> None:
    close = getattr(source, "close", None)
    if close:
        close()


# -- on the client -------------------------------------------------------------------------------------
def compute_layers_dask(client, layers, embedder, checkpoint: str | None, device: str | None, min_valid: float,
                        progress: Callable[[int, int, str], None] | None = None,
                        is_cancelled: Callable[[], bool] | None = None, unit_tiles: int = UNIT_TILES,
                        approximate_index: bool = True) -> tuple[int, int]:
    """compute_layers (engine/index/build.py) with the reading and embedding done by the cluster's
    workers. Returns (embedded, skipped) counts."""
    from . import ann

    total = sum(len(layer.todo) for layer in layers)
    counts = {"done": 0, "embedded": 0, "skipped": 0}
    if total:
        check_disk_space(layers, False)
    if progress:
        workers = len(client.scheduler_info().get("workers", {}))
        progress(0, total, f"{total} tiles to compute on {workers} Dask workers")
    for group in _by_source(layers):
        with ExitStack() as held:  # a raster's scales together: a region's task computes them all
            for layer in group:
                held.enter_context(layer.entry.writing())
            work = [(layer, layer.todo) for layer in group]  # another build may have done some
            work = [(layer, todo) for layer, todo in work if len(todo)]
            if work:
                _compute_dask(client, work, embedder, checkpoint, device, min_valid, progress, is_cancelled,
                              unit_tiles, counts, total)
            for layer in group:
                if layer.entry.stored:
                    write_tile_layer(layer)
                    if approximate_index:
                        ann.refresh(layer.entry, lambda what: progress and progress(counts["done"], total, what))
    return counts["embedded"], counts["skipped"]


def _compute_dask(client, work, embedder, checkpoint, device, min_valid, progress, is_cancelled, unit_tiles,
                  counts, total) -> None:
    """The tasks of one raster's layers (`work`: (layer, tiles to compute)): one per region with
    every scale's tiles where regions pay (tile_reader.RegionReader), else units of one layer's
    compact blocks; results committed as they come."""
    from distributed import KilledWorker, as_completed

    source = work[0][0].source
    parts = [(layer.grid, todo) for layer, todo in work]
    # regions of about unit_tiles tiles (all scales), so a lost worker still costs little
    tiles_per_px = sum(1 / (grid.stride_c * grid.stride_r) for grid, _ in parts)
    side = region_side(source, [grid for grid, _ in parts], int((unit_tiles / tiles_per_px) ** 0.5)) \
        if len(work) > 1 else None
    plan = region_plan(source, parts, side) if side else None
    futures: dict = {}  # future -> the part index of its results, or a list of them (a region's)
    if plan and regions_worthwhile(plan, parts):
        for _, groups in plan:
            futures[client.submit(embed_region, source, [(parts[pi][0], tiles) for pi, tiles in groups], side,
                                  checkpoint, device, min_valid, pure=False)] = [pi for pi, _ in groups]
    else:
        for pi, (layer, todo) in enumerate(work):
            todo = block_order(layer.grid, todo, unit_tiles)
            for i in range(0, len(todo), unit_tiles):
                futures[client.submit(embed_unit, layer.source, layer.grid, todo[i:i + unit_tiles], checkpoint,
                                      device, min_valid, pure=False)] = pi
    label = work[0][0].label if len(work) == 1 else \
        f"{source.name} at {'/'.join(f'{layer.grid.tile_m:g}' for layer, _ in work)} m"
    pendings = [_Pending() for _ in work]

    def commit_all():
        for (layer, _), pending in zip(work, pendings):
            pending.commit(layer.entry)

    last_commit = time.monotonic()
    try:
        for future in as_completed(list(futures)):
            try:
                out = future.result()
            except KilledWorker:  # Dask gave up: each worker that took this unit died
                raise DaskError(f"Dask workers died again and again computing tiles of {label} (out of memory? "
                                f"see the workers' logs); what was computed is kept in the index") from None
            if out["identity"] != embedder.identity:
                raise DaskError(f"a Dask worker loaded another model ({out['identity'][:16]}) than this "
                                f"process ({embedder.identity[:16]}): give workers the same checkpoint")
            where = futures[future]
            for pi, part in (zip(where, out["parts"]) if isinstance(where, list) else [(where, out)]):
                pendings[pi].add(part["kept"], _Vectors(part["vectors"]), part["skipped"], False)
                counts["done"] += len(part["kept"]) + len(part["skipped"])
                counts["embedded"] += len(part["kept"])
                counts["skipped"] += len(part["skipped"])
            if time.monotonic() - last_commit > COMMIT_SECONDS:
                commit_all()
                last_commit = time.monotonic()
            if progress:
                progress(counts["done"], total, label)
            if is_cancelled and is_cancelled():
                raise Cancelled(f"cancelled after {counts['done']} of {total} tiles (kept in the index)")
        commit_all()
    except BaseException:
        commit_all()  # keep every finished unit (cancel, Ctrl-C, a failed unit)
        raise
    finally:
        client.cancel([f for f in futures if not f.done()])


class _Vectors:
    """What _Pending.add takes from an embedding: the stage-1 vectors."""

    def __init__(self, cls: np.ndarray):
        self.cls = cls


def build_index_dask(embedder, sources, address: str, checkpoint: str | None, device: str | None,
                     extent=None, options=None, progress=None, is_cancelled=None, unit_tiles: int = UNIT_TILES):
    """engine.search.build_index on a Dask cluster (`address`: a scheduler, or local:N)."""
    from ..plan import plan
    from ..search import estimate_layers, require_something_to_search, with_search_errors
    from ..search_types import SearchCancelled, SearchError, SearchOptions, SearchResult, TooManyTiles
    from .build import require_writable

    t0 = time.perf_counter()
    options = options or SearchOptions()
    if not options.use_index:
        raise SearchError("building an index needs an index folder (use_index=False given)")
    if options.stage2:
        raise SearchError("a Dask build stores stage-1 vectors only (drop --tokens)")
    layers, _ = plan(embedder, sources, extent, options)
    with_search_errors(require_writable, layers)
    todo = sum(len(layer.todo) for layer in layers)
    if todo > options.max_tiles:
        raise TooManyTiles(f"building would compute {estimate_layers(embedder, layers, []).describe()}, more than "
                           f"the limit of {options.max_tiles}: raise it (--max-tiles)")
    try:
        with dask_client(address) as client:
            computed, skipped = with_search_errors(compute_layers_dask, client, layers, embedder, checkpoint,
                                                   device, options.min_valid, progress, is_cancelled, unit_tiles)
    except Cancelled as exc:
        raise SearchCancelled(str(exc)) from None
    except DaskError as exc:
        raise SearchError(str(exc)) from None
    cached = sum(len(layer.tiles) for layer in layers) - computed - skipped
    require_something_to_search(layers, options, "nothing to index")
    return SearchResult([], computed, cached, skipped, time.perf_counter() - t0)
