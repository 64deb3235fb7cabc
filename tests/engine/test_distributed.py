"""Index builds on Dask (engine/index/distributed.py): the same index as a serial build, resumable
after a cancel, with progress; the CLI's --dask local:N starts its own cluster, and a cluster of
real worker processes survives a killed worker and an interrupted client (both slow)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from distributed.diagnostics.plugin import WorkerPlugin

from engine.index import list_entries
from engine.index.distributed import build_index_dask
from engine.raster.rasterio_source import RasterioSource
from engine.search import SearchCancelled, SearchError, SearchOptions, build_index


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        yield c


def vectors(index: Path) -> dict:
    out = {}
    for e in list_entries(index):
        state = np.load(Path(e["folder"]) / "commit.npz")["state"]
        cls = np.fromfile(Path(e["folder"]) / "cls.f32", np.float32).reshape(e["count"], e["dim"])
        out[e["key"]["tile_m"]] = (state, cls[state == 1])
    return out


def assert_same_index(a: Path, b: Path):
    va, vb = vectors(a), vectors(b)
    assert va.keys() == vb.keys() and va
    for scale in va:
        np.testing.assert_array_equal(va[scale][0], vb[scale][0])
        np.testing.assert_allclose(va[scale][1], vb[scale][1], atol=1e-5)


def test_dask_build_equals_serial_and_resumes(tmp_path, rgb_tif, emb, tiny_checkpoint, client, geo):
    holes = geo.pattern(600, 800)
    holes[:, 400:, 500:] = 0
    src = RasterioSource(geo.write_tif(tmp_path / "holes.tif", holes, nodata=0))
    opts = dict(tile_sizes_m=(20, 60), stage2=False)
    build_index(emb, [src], options=SearchOptions(index_dir=tmp_path / "serial", **opts))
    calls = []

    def cancel_after_first_unit():
        calls.append(1)
        return len(calls) >= 1

    with pytest.raises(SearchCancelled, match="kept in the index"):
        build_index_dask(emb, [src], client, str(tiny_checkpoint), "cpu",
                         options=SearchOptions(index_dir=tmp_path / "dask", **opts),
                         is_cancelled=cancel_after_first_unit, unit_tiles=64)
    partial = sum(e["embedded"] + e["skipped"] for e in list_entries(tmp_path / "dask"))
    assert 0 < partial
    seen = []
    result = build_index_dask(emb, [src], client, str(tiny_checkpoint), "cpu",
                              options=SearchOptions(index_dir=tmp_path / "dask", **opts),
                              progress=lambda done, total, msg: seen.append((done, total)), unit_tiles=64)
    assert result.cached == partial  # what the cancelled build committed is not computed again
    assert seen and seen[-1][0] == seen[-1][1] == result.computed + result.skipped
    assert_same_index(tmp_path / "serial", tmp_path / "dask")
    again = build_index_dask(emb, [src], client, str(tiny_checkpoint), "cpu",
                             options=SearchOptions(index_dir=tmp_path / "dask", **opts))
    assert again.computed == 0


def test_workers_with_another_model_are_refused(tmp_path, rgb_tif, emb, client):
    from engine.model.checkpoints import save_checkpoint

    other = type(emb.model)(emb.cfg)  # the same architecture, other (random) weights
    path = save_checkpoint(other, tmp_path / "other.safetensors", card={"name": "other"})
    with pytest.raises(SearchError, match="another model"):
        build_index_dask(emb, [RasterioSource(rgb_tif)], client, str(path), "cpu",
                         options=SearchOptions(index_dir=tmp_path / "idx", tile_sizes_m=(60,)))


@pytest.mark.slow
def test_cli_dask_local_cluster_builds_the_serial_index(tmp_path, rgb_tif, tiny_checkpoint):
    def cli(*extra):
        args = [sys.executable, "-m", "engine.cli", "index", "build", "--raster", str(rgb_tif), "--checkpoint",
                str(tiny_checkpoint), "--device", "cpu", "--tile-size", "20", "60", *extra]
        done = subprocess.run(args, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0 and "index ready" in done.stdout, done.stderr
        return done

    cli("--index-dir", str(tmp_path / "serial"))
    out = cli("--index-dir", str(tmp_path / "dask"), "--dask", "local:2")
    assert "tiles computed" in out.stdout
    assert_same_index(tmp_path / "serial", tmp_path / "dask")


@pytest.mark.slow  # two worker processes start and load the model: about 30 s quiet, 2 min on a busy machine
def test_a_lost_worker_and_an_interrupted_client(tmp_path, rgb_tif, emb, tiny_checkpoint):
    """A real cluster of worker processes: Ctrl-C in the client keeps the committed rows and a
    resumed build computes only the rest; a worker killed (SIGKILL) mid-build costs only its
    unfinished units (Dask runs them again), and the index is still the serial one."""
    import os
    import signal

    from distributed import Client, LocalCluster

    src = RasterioSource(rgb_tif)
    opts = dict(tile_sizes_m=(20, 60), stage2=False)
    build_index(emb, [src], options=SearchOptions(index_dir=tmp_path / "serial", **opts))
    dask_opts = SearchOptions(index_dir=tmp_path / "dask", **opts)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        units = []

        def interrupt(done, total, message):
            units.append(done)
            if len(units) > 3:  # after a few units have come back
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            build_index_dask(emb, [src], client, str(tiny_checkpoint), "cpu", options=dask_opts, progress=interrupt,
                             unit_tiles=16)
        partial = sum(e["embedded"] + e["skipped"] for e in list_entries(tmp_path / "dask"))
        assert partial > 0

        pids = client.run(os.getpid)
        killed = []

        def kill_a_busy_worker(done, total, message):
            if done and not killed:
                busy = [w for w, keys in client.processing().items() if keys] or list(pids)
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])

        result = build_index_dask(emb, [src], client, str(tiny_checkpoint), "cpu", options=dask_opts,
                                  progress=kill_a_busy_worker, unit_tiles=16)
        assert killed and pids[killed[0]] not in client.run(os.getpid).values()  # it died (its nanny made another)
        assert result.cached == partial  # rows committed before the interrupt were not computed again
    assert_same_index(tmp_path / "serial", tmp_path / "dask")


class _CrashUnits(WorkerPlugin):
    """A Dask worker plugin: every worker (and every worker restarted after a crash) dies on its
    first unit of tiles, as a worker killed by the out-of-memory killer would."""

    name = "crash-units"

    def setup(self, worker):
        import os

        import engine.index.distributed as dist

        dist.embed_unit = lambda *args, **kwargs: os._exit(1)


@pytest.mark.slow  # workers die and restart several times: about a minute
def test_units_that_kill_every_worker_end_in_one_line(tmp_path, rgb_tif, emb, tiny_checkpoint):
    from distributed import Client, LocalCluster

    from engine.search import SearchError

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.register_plugin(_CrashUnits())
        with pytest.raises(SearchError, match="died again and again computing tiles of rgb.tif"):
            build_index_dask(emb, [RasterioSource(rgb_tif)], client, str(tiny_checkpoint), "cpu",
                             options=SearchOptions(index_dir=tmp_path / "dask", tile_sizes_m=(60,), stage2=False))


def test_dask_regions_equal_serial(tmp_path, rgb_tif, emb, tiny_checkpoint, client, monkeypatch):
    """Where a raster's scales share decoded regions, a task computes every scale of a region; the
    index is still the serial one."""
    import engine.index.distributed as dist

    src = RasterioSource(rgb_tif)
    opts = dict(tile_sizes_m=(20, 60), stage2=False)
    build_index(emb, [src], options=SearchOptions(index_dir=tmp_path / "serial", **opts))
    seen = tmp_path / "regions.txt"  # tasks are pickled, even to in-process workers: they tell through a file
    real = dist.embed_region

    def counted(source, parts, *args):
        with open(seen, "a") as fh:
            fh.write(f"{len(parts)}\n")
        return real(source, parts, *args)

    monkeypatch.setattr(dist, "embed_region", counted)
    result = build_index_dask(emb, [src], client, str(tiny_checkpoint), "cpu",
                              options=SearchOptions(index_dir=tmp_path / "dask", **opts))
    assert set(seen.read_text().split()) == {"2"} and result.computed > 0
    assert_same_index(tmp_path / "serial", tmp_path / "dask")
