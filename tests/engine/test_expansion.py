"""Query expansion (engine/expansion.py): the second stage-1 pass toward a sketch's best distinct
matches, in a real search over a real GeoTIFF, in the gallery evaluation, in the card and the CLI."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine.cli import build_parser
from engine.datasets import Item
from engine.embedder import Embeddings
from engine.evaluation.retrieval import evaluate
from engine.model.retrieval import RetrievalSettings
from engine.plan import plan
from engine.query_update import DEFAULT_SETTINGS, RUN_ROWS, background_vector, expanded_vector, spread_runs
from engine.ranking import Hit, distinct_best, stage1
from engine.raster.rasterio_source import RasterioSource
from engine.search import SearchOptions, run_search


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_the_expanded_vector_is_the_sketch_moved_toward_its_best_matches():
    rng = np.random.default_rng(0)
    sketch, best, background = unit(rng.normal(size=16)), unit(rng.normal(size=(3, 16))), rng.normal(size=16) * 0.1
    q = expanded_vector(sketch, best, background)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-6)
    # the update refining uses, with the best matches as the liked places and nothing unliked
    a, b, g = DEFAULT_SETTINGS.sketch_weight, DEFAULT_SETTINGS.like_weight, DEFAULT_SETTINGS.background_weight
    want = unit(a * sketch + b * best.mean(0))
    want = unit(want - g * background)
    np.testing.assert_allclose(q, want, atol=1e-6)
    assert q @ best.mean(0) > sketch @ best.mean(0)


def test_cards_without_the_entry_do_not_expand_and_stay_byte_identical():
    old = {"sketch_views": 8, "sketch_widen": 3}
    settings = RetrievalSettings.from_card(old)
    assert settings.query_expansion == 0
    assert settings.to_card() == old
    new = RetrievalSettings.from_card({**old, "query_expansion": 3})
    assert new.query_expansion == 3 and new.to_card()["query_expansion"] == 3
    assert replace(new, query_expansion=0).apply_to({**old, "query_expansion": 3, "name": "m"}) == {**old, "name": "m"}
    for bad in (-1, 2.5, True, 21, "3"):
        with pytest.raises(ValueError, match="query_expansion"):
            RetrievalSettings.from_card({"query_expansion": bad})


@pytest.fixture
def expanding(emb):
    """The tiny model with its card asking for an expansion toward the 3 best matches."""
    from engine.embedder import Embedder

    settings = replace(emb.retrieval, query_expansion=3)
    return Embedder(emb.model, settings.apply_to(emb.card), "cpu")


def test_a_search_ranks_by_the_expanded_vector(tmp_path, geo, expanding, bar_sketch):
    """The scores of an expanded search are the cosines of each tile with the vector made from the
    sketch and its first pass's 3 best distinct matches, computed here from the index itself."""
    src = RasterioSource(geo.write_tif(tmp_path / "r.tif", geo.pattern(600, 600, seed=4)))
    opts = SearchOptions(index_dir=tmp_path / "i", tile_sizes_m=(60, 120), top_k=5)
    plain = run_search(expanding, bar_sketch, [src], options=replace(opts, expansion=False)).matches
    expanded = run_search(expanding, bar_sketch, [src], options=opts).matches

    layers, _ = plan(expanding, [src], None, opts)
    sketch = expanding.embed_sketches([bar_sketch]).cls[0]
    first = stage1(sketch, layers, max(opts.candidates, 10 * opts.top_k))
    best = distinct_best(first, layers, opts, 3)
    assert len(best) == 3
    vectors = np.stack([layers[h.layer].entry.cls[h.tile] for h in best])
    query = expanded_vector(sketch, vectors, background_vector(layers))
    second = stage1(query, layers, 1)
    assert expanded[0].score == pytest.approx(second[0].score, abs=1e-5)
    assert plain[0].score == pytest.approx(first[0].score, abs=1e-5)
    assert [m.score for m in expanded] != [m.score for m in plain]


def test_distinct_best_takes_one_hit_per_place(tmp_path, geo, emb):
    src = RasterioSource(geo.write_tif(tmp_path / "r.tif", geo.pattern(600, 600, seed=4)))
    opts = SearchOptions(index_dir=tmp_path / "i", tile_sizes_m=(60,), overlap=0.5, use_index=False)
    (layer,), _ = plan(emb, [src], None, opts)
    # tile 0 and its right neighbour share half their area (merged); tile 12 lies apart
    hits = [Hit(0.9, 0, 0), Hit(0.8, 0, 1), Hit(0.7, 0, 12)]
    assert distinct_best(hits, [layer], opts, 3) == [hits[0], hits[2]]
    assert distinct_best(hits, [layer], opts, 1) == [hits[0]]
    assert distinct_best([], [layer], opts, 3) == []


class Fixed:
    """An encoder over fixed vectors: queries and gallery given directly."""

    def __init__(self, queries, gallery):
        self.q, self.g = queries, gallery

    def embed_sketches(self, paths, with_tokens=False):
        return Embeddings(self.q)

    def embed_images(self, paths, with_tokens=False):
        return Embeddings(self.g)


def test_the_gallery_evaluation_expands_as_a_search_does():
    """A query that finds one right image first, then wrong ones: its right image's neighbours (the
    rest of its class) come up once the query moves toward its best matches."""
    rng = np.random.default_rng(1)
    centres = unit(rng.normal(size=(2, 32)))
    gallery = unit(np.repeat(centres, 10, axis=0) + 0.35 * rng.normal(size=(20, 32)))
    query = unit(0.5 * gallery[0] + 0.6 * centres[1] + 0.3 * rng.normal(size=32))[None]
    items = [Item(f"g{i}", "a" if i < 10 else "b") for i in range(20)]
    q = [Item("q", "a")]
    plain = evaluate(Fixed(query, gallery), q, items, {}).summary
    expanded = evaluate(Fixed(query, gallery), q, items, {}, expansion=3).summary
    assert expanded["expansion"] == 3 and plain["expansion"] == 0
    assert expanded["mAP"] > plain["mAP"]
    # by hand: the same update as a search, the gallery as the background
    order = np.argsort(-(gallery @ query[0]), kind="stable")
    moved = expanded_vector(query[0], gallery[order[:3]], gallery.mean(0))
    relevant = np.array([it.label == "a" for it in items])[np.argsort(-(gallery @ moved), kind="stable")]
    hits = np.flatnonzero(relevant) + 1
    assert expanded["mAP"] == pytest.approx(float(np.mean(np.arange(1, len(hits) + 1) / hits)), abs=1e-4)


def test_the_command_line_turns_expansion_off():
    parser = build_parser()
    base = ["search", "--raster", "r.tif", "--sketch", "s.png", "--out", "o.gpkg"]
    assert parser.parse_args(base).expansion is True
    assert parser.parse_args(base + ["--no-expansion"]).expansion is False


def test_index_samples_are_runs_of_rows_spread_over_all_of_them():
    rows = np.arange(0, 30_000, 3)  # sorted row numbers with gaps, as the tiles of an extent
    assert np.array_equal(spread_runs(rows[:100], 4096), rows[:100])
    picked = spread_runs(rows, 4096)
    assert len(picked) == 4096 and np.isin(picked, rows).all() and (np.diff(picked) > 0).all()
    assert picked[0] == rows[0] and picked[-1] == rows[-1]
    positions = np.searchsorted(rows, picked)
    assert (np.diff(positions) > 1).sum() == 4096 // RUN_ROWS - 1  # 16 runs of consecutive entries
    assert len(spread_runs(rows, 10)) == 10  # fewer than one run


def test_the_background_is_the_mean_of_the_searched_tiles(tmp_path, geo, emb, bar_sketch):
    """Exact up to max_rows tiles; above, the mean of the runs each layer gives in proportion."""
    src = RasterioSource(geo.write_tif(tmp_path / "r.tif", geo.pattern(900, 900, seed=6)))
    opts = SearchOptions(index_dir=tmp_path / "i", tile_sizes_m=(60, 120))
    run_search(emb, bar_sketch, [src], options=replace(opts, expansion=False))
    layers, _ = plan(emb, [src], None, opts)
    assert [len(layer.tiles) for layer in layers] == [64, 16]
    every = np.concatenate([np.asarray(layer.entry.cls[layer.tiles], np.float64) for layer in layers])
    np.testing.assert_allclose(background_vector(layers), every.mean(0), atol=1e-6)
    # 40 of 80 tiles: 32 from the first layer, 8 from the second
    picked = [spread_runs(layers[0].tiles, 32), spread_runs(layers[1].tiles, 8)]
    assert [len(p) for p in picked] == [32, 8]
    by_hand = np.concatenate([np.asarray(layer.entry.cls[p], np.float64) for layer, p in zip(layers, picked)])
    np.testing.assert_allclose(background_vector(layers, max_rows=40), by_hand.mean(0), atol=1e-6)


def test_expansion_across_rasters_in_two_crs_and_without_an_index(tmp_path, geo, expanding, bar_sketch):
    """The best distinct matches may lie in different rasters and CRSs; an in-memory search (no index
    folder) expands from the vectors it just computed."""
    from affine import Affine

    a = RasterioSource(geo.write_tif(tmp_path / "a.tif", geo.pattern(400, 400, seed=1)))
    b = RasterioSource(geo.write_tif(tmp_path / "b.tif", geo.pattern(300, 300, seed=2), crs="EPSG:3857",
                                     transform=Affine(0.5, 0, -13_400_000, 0, -0.5, 4_480_000)))
    for opts in (SearchOptions(index_dir=tmp_path / "i", tile_sizes_m=(60,), top_k=6),
                 SearchOptions(use_index=False, tile_sizes_m=(60,), top_k=6)):
        expanded = run_search(expanding, bar_sketch, [a, b], options=opts).matches
        plain = run_search(expanding, bar_sketch, [a, b], options=replace(opts, expansion=False)).matches
        assert len(expanded) == len(plain) == 6
        assert [m.score for m in expanded] != [m.score for m in plain]
