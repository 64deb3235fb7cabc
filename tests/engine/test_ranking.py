"""Stage-1 top-k, stage-2 scores and merging of overlapping hits."""
from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import box

from engine.embedder import Embedder
from engine.ranking import merge_hits, stage1_topk, stage2_scores


def _unit(rng, n, d):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("chunk", [7, 1000, 1 << 17])
def test_stage1_matches_a_full_sort(chunk):
    rng = np.random.default_rng(0)
    vecs, q = _unit(rng, 5000, 32), _unit(rng, 1, 32)[0]
    rows, scores = stage1_topk(q, vecs, 25, chunk_rows=chunk)
    full = vecs @ q
    np.testing.assert_array_equal(rows, np.argsort(-full)[:25])
    np.testing.assert_allclose(scores, np.sort(full)[::-1][:25], rtol=1e-6)
    sub = np.sort(rng.choice(5000, 900, replace=False))
    rows, _ = stage1_topk(q, vecs, 10, rows=sub, chunk_rows=chunk)
    np.testing.assert_array_equal(rows, sub[np.argsort(-full[sub])[:10]])
    assert len(stage1_topk(q, vecs[:3], 10)[0]) == 3


def test_stage1_chunks_are_bounded_in_bytes(monkeypatch):
    """Without chunk_rows, a chunk holds CHUNK_BYTES of float32 rows whatever the vector size."""
    import engine.ranking as ranking

    seen = []

    class Watched(np.ndarray):
        def __getitem__(self, key):
            part = np.asarray(real_getitem(self, key))
            seen.append(len(part))
            return part

    real_getitem = np.ndarray.__getitem__  # the rows each chunk reads
    rng = np.random.default_rng(2)
    vecs, q = _unit(rng, 1000, 64), _unit(rng, 1, 64)[0]
    monkeypatch.setattr(ranking, "CHUNK_BYTES", 100 * 64 * 4)
    rows, _ = stage1_topk(q, vecs.view(Watched), 5)
    assert max(seen) == 100 and len(seen) == 10
    np.testing.assert_array_equal(rows, np.argsort(-(vecs @ q))[:5])


def test_stage1_reads_memory_maps(tmp_path):
    rng = np.random.default_rng(1)
    vecs = _unit(rng, 3000, 16)
    mm = np.memmap(tmp_path / "v.f32", np.float32, "w+", shape=vecs.shape)
    mm[:] = vecs
    q = vecs[1234]
    rows, scores = stage1_topk(q, np.memmap(tmp_path / "v.f32", np.float32, "r", shape=vecs.shape), 1, chunk_rows=512)
    assert rows[0] == 1234 and scores[0] == pytest.approx(1.0, abs=1e-5)


def test_stage2_scores_equal_pair_scores(tiny_checkpoint):
    emb = Embedder.from_checkpoint(tiny_checkpoint, "cpu")
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    sketch = np.full((64, 64, 3), 255, np.uint8)
    sketch[20:40, 10:50] = 0
    s = emb.embed_sketches([sketch], with_tokens=True).tokens[0]
    t = emb.embed_images(imgs, with_tokens=True).tokens
    got = stage2_scores(emb, s, t.numpy().astype(np.float16))  # as stored in the index
    want = emb.pair_scores(s, t)
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_merge_groups_overlaps_across_scales():
    polys = np.array([box(0, 0, 60, 60), box(30, 0, 90, 60), box(0, 0, 120, 120), box(500, 500, 560, 560),
                      box(1000, 0, 1060, 60)], dtype=object)
    scores = np.array([0.9, 0.8, 0.85, 0.7, 0.95])
    groups = merge_hits(polys, scores, iou=0.3, containment=0.7)
    # best first: the lone tile at 1000; then tile 0 absorbs its half-overlapping neighbour (IoU 1/3)
    # and the 120 m tile that contains it
    assert groups == [[4], [0, 2, 1], [3]]
    assert merge_hits(polys, scores, limit=2) == [[4], [0, 2, 1]]
    # a neighbour overlapping by a quarter stays a separate match
    g = merge_hits(np.array([box(0, 0, 60, 60), box(45, 0, 105, 60)], dtype=object), np.array([1.0, 0.9]))
    assert g == [[0], [1]]
