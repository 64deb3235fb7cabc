"""Stage 1 over huge entries (engine/index/ann.py): FAISS candidates re-scored exactly, restricted
to the rows a search covers, rows the ANN index lacks scanned exactly; built by `index build` only;
a damaged ANN file means an exact scan."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")

from engine.index import ann, list_entries
from engine.ranking import stage1_topk
from engine.raster.rasterio_source import RasterioSource
from engine.search import SearchOptions, build_index, run_search


def clustered(n=8000, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((80, dim), dtype=np.float32)
    x = centres[rng.integers(0, 80, n)] + 0.7 * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = centres[:5] + 0.7 * rng.standard_normal((5, dim), dtype=np.float32)
    return x, q / np.linalg.norm(q, axis=1, keepdims=True)


def test_candidates_rescored_exactly_within_the_rows_asked(tmp_path):
    x, queries = clustered()
    ids = np.arange(len(x))
    ann.save(tmp_path, ann.build(lambda r: x[r], ids, x.shape[1]), ids, len(x))
    index = ann.load(tmp_path, len(x))
    assert index is not None and index.held.all() and ann.held_rows(tmp_path) == len(x)
    exact = lambda rows, k: stage1_topk(q, x, k, rows)  # noqa: E731
    for q in queries:
        got, scores = ann.topk(q, index, lambda r: x[r], ids, 50, exact)
        want, _ = stage1_topk(q, x, 50)
        assert len(np.intersect1d(got, want)) >= 45
        np.testing.assert_allclose(scores, x[got] @ q, rtol=1e-6)  # every score is the exact one
        assert list(scores) == sorted(scores, reverse=True)
        even = ids[::2]
        got, _ = ann.topk(q, index, lambda r: x[r], even, 50, exact)
        assert (got % 2 == 0).all()


def test_rows_the_index_lacks_are_scanned_exactly(tmp_path):
    x, queries = clustered()
    half = np.arange(len(x) // 2)
    ann.save(tmp_path, ann.build(lambda r: x[r], half, x.shape[1]), half, len(x))
    index = ann.load(tmp_path, len(x))
    q = queries[0]
    got, _ = ann.topk(q, index, lambda r: x[r], np.arange(len(x)), 50, lambda rows, k: stage1_topk(q, x, k, rows))
    want, _ = stage1_topk(q, x, 50)
    assert len(np.intersect1d(got, want)) >= 45 and (got >= len(half)).any()


def test_damaged_or_partial_ann_files_mean_an_exact_scan(tmp_path, caplog):
    x, _ = clustered(n=3000)
    ids = np.arange(len(x))
    ann.save(tmp_path, ann.build(lambda r: x[r], ids, x.shape[1]), ids, len(x))
    (tmp_path / ann.ANN_FILE).write_bytes(b"not an index")
    assert ann.load(tmp_path, len(x)) is None and "cannot be read" in caplog.text
    (tmp_path / ann.ANN_META_FILE).unlink()  # a save killed before its last file
    assert ann.held_rows(tmp_path) == 0 and ann.load(tmp_path, len(x)) is None


def test_index_build_makes_the_ann_index_and_searches_use_it(tmp_path, rgb_tif, emb, bar_sketch, monkeypatch):
    src = RasterioSource(rgb_tif)
    opts = SearchOptions(index_dir=tmp_path / "idx", tile_sizes_m=(10,), top_k=5)
    monkeypatch.setattr(ann, "ANN_MIN_ROWS", 500)
    exact = run_search(emb, bar_sketch, [src], options=opts)  # a search never builds one
    (entry,) = list_entries(tmp_path / "idx")
    assert entry["embedded"] >= 500 and ann.held_rows(entry["folder"]) == 0
    build_index(emb, [src], options=opts)  # nothing to compute, but the entry gets its ANN index
    assert ann.held_rows(entry["folder"]) == entry["embedded"]
    calls = []
    real = ann.topk
    monkeypatch.setattr(ann, "topk", lambda *a, **k: calls.append(1) or real(*a, **k))
    approx = run_search(emb, bar_sketch, [src], options=opts)
    assert calls and approx.computed == 0
    assert [m.geometry.wkt for m in approx.matches] == [m.geometry.wkt for m in exact.matches]
    assert [m.score for m in approx.matches] == pytest.approx([m.score for m in exact.matches], abs=1e-6)


def test_a_huge_entry_checks_only_the_blocks_of_its_hits(tmp_path, rgb_tif, emb, bar_sketch, monkeypatch, caplog):
    """Checking every row of 10^7 tiles would read 61 GB: a search of an entry with an ANN index
    checks the blocks of the hits it returns, and drops a damaged hit instead of returning it."""
    from engine.index.store import IndexEntry

    src = RasterioSource(rgb_tif)
    opts = SearchOptions(index_dir=tmp_path / "idx", tile_sizes_m=(10,), top_k=5, candidates=20)
    monkeypatch.setattr(ann, "ANN_MIN_ROWS", 500)
    build_index(emb, [src], options=opts)
    first = run_search(emb, bar_sketch, [src], options=opts)
    (entry,) = list_entries(tmp_path / "idx")
    checked = []
    real_verify = IndexEntry.verify
    monkeypatch.setattr(IndexEntry, "verify", lambda self, tiles=None: checked.append(
        self.count if tiles is None else len(tiles)) or real_verify(self, tiles))
    again = run_search(emb, bar_sketch, [src], options=opts)
    assert [m.geometry.wkt for m in again.matches] == [m.geometry.wkt for m in first.matches]
    assert checked and max(checked) <= 200 < entry["embedded"]  # the hits' blocks, not the entry
    # damage the row of the best tile: it is left out, never returned with a wrong score
    best, grid = first.matches[0].window, entry["grid"]
    tile = round(best.row_off / grid["stride_px"][1]) * grid["cols"] + round(best.col_off / grid["stride_px"][0])
    with open(f"{entry['folder']}/cls.f32", "r+b") as fh:
        fh.seek(tile * entry["dim"] * 4)
        fh.write(b"\xff" * 16)
    damaged = run_search(emb, bar_sketch, [src], options=opts)
    assert "left out of this search" in caplog.text
    assert first.matches[0].geometry.wkt not in [m.geometry.wkt for m in damaged.matches[:1]]
