"""The tile index: keys that never serve stale vectors, resume after cancel or kill, GIS-readable tiles."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import fiona
import numpy as np
import pytest

from engine.embedder import Embedder
from engine.index import list_entries, remove_entries
from engine.index.store import EMBEDDED
from engine.raster.rasterio_source import RasterioSource
from engine.search import SearchCancelled, SearchOptions, run_search

EMB_BATCH_SIZE = 8  # the conftest `emb` fixture's batch size here: the cancel test counts tiles per batch


def test_second_search_computes_nothing_and_vectors_match(tmp_path, rgb_tif, emb, bar_sketch):
    opts = SearchOptions(index_dir=tmp_path / "idx", top_k=3, tile_sizes_m=(60,))
    src = RasterioSource(rgb_tif)
    first = run_search(emb, bar_sketch, [src], options=opts)
    assert first.computed == 35 and first.cached == 0
    second = run_search(emb, bar_sketch, [src], options=opts)
    assert second.computed == 0 and second.cached == 35
    assert [(m.geometry.wkt, round(m.score, 5)) for m in first.matches] == \
           [(m.geometry.wkt, round(m.score, 5)) for m in second.matches]
    # stored vectors equal a fresh embedding of the same tiles
    (entry,) = list_entries(tmp_path / "idx")
    cls = np.memmap(os.path.join(entry["folder"], "cls.f32"), np.float32, "r", shape=(entry["count"], entry["dim"]))
    from engine.tiling import make_grid
    g = make_grid(src, 60, 0.5)
    imgs = np.stack([src.read_rgb(g.window(t), (64, 64))[0] for t in (0, 17)])
    np.testing.assert_allclose(cls[[0, 17]], emb.embed_images(imgs).cls, atol=1e-5)


def test_key_changes_with_tiling_model_and_raster(tmp_path, rgb_tif, emb, tiny_checkpoint, geo, bar_sketch):
    idx = tmp_path / "idx"
    base = SearchOptions(index_dir=idx, top_k=1, tile_sizes_m=(60,), stage2=False)
    src = RasterioSource(rgb_tif)
    run_search(emb, bar_sketch, [src], options=base)
    assert len(list_entries(idx)) == 1
    assert run_search(emb, bar_sketch, [src], options=SearchOptions(**{**base.__dict__, "overlap": 0.25})).computed > 0
    assert run_search(emb, bar_sketch, [src],
                      options=SearchOptions(**{**base.__dict__, "tile_sizes_m": (90,)})).computed > 0
    assert len(list_entries(idx)) == 3
    # another model (different weights) -> new entry
    import torch
    from engine.model.checkpoints import save_checkpoint
    other = Embedder.from_checkpoint(tiny_checkpoint, "cpu")
    with torch.no_grad():
        next(other.model.parameters()).add_(0.01)
    path = save_checkpoint(other.model, tmp_path / "other.safetensors", card={"name": "other"})
    assert run_search(Embedder.from_checkpoint(path, "cpu"), bar_sketch, [src], options=base).computed == 35
    # the raster rewritten (new mtime) -> new entry, old vectors unused
    st = os.stat(rgb_tif)
    geo.write_tif(rgb_tif, geo.pattern(600, 800, seed=5))
    os.utime(rgb_tif, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert run_search(emb, bar_sketch, [RasterioSource(rgb_tif)], options=base).computed == 35
    assert len(list_entries(idx)) == 5
    assert remove_entries(idx, str(rgb_tif.resolve())) == 5 and list_entries(idx) == []


def test_rewritten_source_of_a_vrt_is_not_served_from_the_index(tmp_path, geo, emb, bar_sketch):
    """The index key of a .vrt follows its source file: new pixels under an unchanged .vrt are
    embedded again, not read from the old entry."""
    tif = geo.write_tif(tmp_path / "src.tif", geo.pattern(600, 800))
    vrt = geo.write_vrt(tmp_path / "m.vrt", tif)  # source named relative to the VRT
    opts = SearchOptions(index_dir=tmp_path / "idx", top_k=3, tile_sizes_m=(60,), stage2=False)
    assert run_search(emb, bar_sketch, [RasterioSource(vrt)], options=opts).computed == 35
    assert run_search(emb, bar_sketch, [RasterioSource(vrt)], options=opts).cached == 35
    st = os.stat(tif)
    geo.write_tif(tif, geo.pattern(600, 800, seed=7))
    os.utime(tif, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = run_search(emb, bar_sketch, [RasterioSource(vrt)], options=opts)
    assert again.computed == 35 and again.cached == 0
    assert len(list_entries(tmp_path / "idx")) == 2


def test_cancel_then_resume_computes_only_the_rest(tmp_path, rgb_tif, emb, bar_sketch):
    opts = SearchOptions(index_dir=tmp_path / "idx", top_k=3, tile_sizes_m=(60,))
    src = RasterioSource(rgb_tif)
    calls = []
    def cancel_after_two_batches():
        calls.append(1)
        return len(calls) >= 2
    with pytest.raises(SearchCancelled, match="16 of 35"):
        run_search(emb, bar_sketch, [src], options=opts, is_cancelled=cancel_after_two_batches)
    (entry,) = list_entries(tmp_path / "idx")
    assert entry["embedded"] == 16
    rest = run_search(emb, bar_sketch, [src], options=opts)
    assert rest.computed == 35 - 16 and rest.cached == 16
    fresh = run_search(emb, bar_sketch, [src], options=SearchOptions(**{**opts.__dict__, "use_index": False}))
    assert [m.geometry.wkt for m in rest.matches] == [m.geometry.wkt for m in fresh.matches]


def test_killed_build_leaves_a_consistent_entry(tmp_path, rgb_tif, tiny_checkpoint, bar_sketch):
    """SIGKILL a build half-way: the entry stays readable, and what it marks done is correct."""
    idx = tmp_path / "idx"
    script = textwrap.dedent(f"""
        import sys, time
        import engine.index.build as b
        b.COMMIT_SECONDS = 0.0  # commit after every batch
        real = b.read_tiles
        def slow(*a, **k):
            time.sleep(0.3)
            return real(*a, **k)
        b.read_tiles = slow
        from engine.embedder import Embedder
        from engine.raster.rasterio_source import RasterioSource
        from engine.search import SearchOptions, run_search
        import numpy as np
        sk = np.full((64, 64, 3), 255, np.uint8); sk[16:48, 28:36] = 0
        emb = Embedder.from_checkpoint({str(tiny_checkpoint)!r}, "cpu", batch_size=4)
        print("start", flush=True)
        run_search(emb, sk, [RasterioSource({str(rgb_tif)!r})],
                   options=SearchOptions(index_dir={str(idx)!r}, tile_sizes_m=(60,), stage2=False))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=os.getcwd())
    assert proc.stdout.readline().strip() == b"start"
    deadline = time.time() + 60
    while time.time() < deadline:
        entries = list_entries(idx)
        if entries and 0 < entries[0].get("embedded", 0) < 35:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (entry,) = list_entries(idx)
    done = entry["embedded"]
    assert 0 < done < 35
    emb = Embedder.from_checkpoint(tiny_checkpoint, "cpu")
    state = np.load(os.path.join(entry["folder"], "commit.npz"))["state"]
    cls = np.memmap(os.path.join(entry["folder"], "cls.f32"), np.float32, "r", shape=(entry["count"], entry["dim"]))
    src = RasterioSource(rgb_tif)
    from engine.tiling import make_grid
    g = make_grid(src, 60, 0.5)
    ids = np.flatnonzero(state == EMBEDDED)
    imgs = np.stack([src.read_rgb(g.window(t), (64, 64))[0] for t in ids])
    np.testing.assert_allclose(cls[ids], emb.embed_images(imgs).cls, atol=1e-5)
    rest = run_search(emb, bar_sketch, [src], options=SearchOptions(index_dir=idx, tile_sizes_m=(60,), stage2=False))
    assert rest.computed == 35 - done


def test_tile_polygons_open_in_gis_tools(tmp_path, rgb_tif, emb, bar_sketch):
    run_search(emb, bar_sketch, [RasterioSource(rgb_tif)],
               options=SearchOptions(index_dir=tmp_path / "idx", tile_sizes_m=(120,), stage2=False))
    (entry,) = list_entries(tmp_path / "idx")
    with fiona.open(os.path.join(entry["folder"], "tiles.gpkg")) as layer:
        assert layer.crs.to_epsg() == 32611
        feats = list(layer)
        assert len(feats) == entry["embedded"] > 0
        assert {"tile", "row", "col", "scale"} <= set(layer.schema["properties"])


def test_mostly_nodata_tiles_are_skipped_and_remembered(tmp_path, geo, emb, bar_sketch):
    img = geo.pattern(600, 800)
    img[:, :, 400:] = 0  # right half nodata
    src = RasterioSource(geo.write_tif(tmp_path / "half.tif", img, nodata=0))
    opts = SearchOptions(index_dir=tmp_path / "idx", top_k=50, tile_sizes_m=(60,), stage2=False)
    first = run_search(emb, bar_sketch, [src], options=opts)
    assert first.skipped > 10 and first.computed + first.skipped == 35
    assert all(m.geometry.centroid.x < 500000 + 120 + 30 for m in first.matches)
    second = run_search(emb, bar_sketch, [src], options=opts)
    assert second.computed == 0 and second.skipped == 0


def test_stage2_computes_tokens_of_candidates_only_when_not_stored(tmp_path, rgb_tif, emb, bar_sketch):
    src = RasterioSource(rgb_tif)
    opts = SearchOptions(index_dir=tmp_path / "idx", top_k=1, candidates=10, tile_sizes_m=(60,), stage2=False)
    run_search(emb, bar_sketch, [src], options=opts)
    (entry,) = list_entries(tmp_path / "idx")
    assert entry["with_tokens"] == 0
    with_s2 = run_search(emb, bar_sketch, [src], options=SearchOptions(**{**opts.__dict__, "stage2": True}))
    assert with_s2.computed == 0
    (entry,) = list_entries(tmp_path / "idx")
    assert entry["with_tokens"] == 10  # the stage-1 candidates
    # the same ranking as when every tile's tokens were stored during the build
    full = run_search(emb, bar_sketch, [src], options=SearchOptions(**{**opts.__dict__, "stage2": True,
                                                                   "index_dir": tmp_path / "idx2"}))
    assert [m.geometry.wkt for m in full.matches] == [m.geometry.wkt for m in with_s2.matches]
    assert full.matches[0].score == pytest.approx(with_s2.matches[0].score, abs=1e-3)
