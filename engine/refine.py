"""Search with places the analyst marked: a sketch, examples, or both.

A query is a sketch (optional), places the analyst wants more of (`like`) and places not wanted
(`unlike`): polygons in any CRS, e.g. matches of an earlier search marked right or wrong, or a
rectangle drawn around an example. Each place gives one stage-1 vector: the tiles under it (every
scale, read from the tile index, computed when missing) that fit it best, averaged. The query vector
is then moved toward the liked places and away from the unliked ones (Rocchio's update,
q = a*sketch + b*mean(like) - c*mean(unlike), unit length), and the mean vector of the searched
tiles is taken off it (weight g), so what every aerial tile shares stops counting (the update lives in
engine/query_update.py; query expansion uses it too). Stage 1 ranks every
tile against that vector as it ranks against a sketch; stage 2 is not applied (it compares sketch
tokens, and the query is no longer a sketch). Without a sketch the liked places alone make the
query (search by example). Chosen by measurement against a small logistic-regression model on the
index vectors with the sketch as prior, a nearest-example score and a whitened (LDA) update; the
figures: BENCHMARKS.md, "Refining a search" (`python -m benchmarks.refine_feedback`).

Nothing here imports torch: it runs on the ONNX Runtime path too.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import shapely

from .index.store import EMBEDDED, key_hash
from .plan import Layer, plan
from .query_update import DEFAULT_SETTINGS, RefineSettings, background_vector, refined_vector, unit
from .ranking import merge, stage1
from .search import compute_missing, require_something_to_search
from .search_types import Extent, Match, SearchError, SearchOptions, SearchResult, check_options
from .tiling import TilingError, parse_crs, reproject

LIKE, UNLIKE = "like", "unlike"

log = logging.getLogger(__name__)


class NoPlaceOverRaster(SearchError):
    """None of the marked places lies over a searched raster."""


def _places_in(places: Sequence[Extent], crs_wkt: str) -> np.ndarray:
    """The places' geometries in one CRS (array of shapely geometries)."""
    out = np.empty(len(places), dtype=object)
    for crs in {p.crs for p in places}:
        idx = [i for i, p in enumerate(places) if p.crs == crs]
        out[idx] = reproject(np.array([places[i].geometry for i in idx], dtype=object), crs, crs_wkt)
    return out


def _check_crs(places: Sequence[Extent]) -> None:
    for crs in {p.crs for p in places}:
        try:
            parse_crs(crs)
        except TilingError as exc:
            raise SearchError(f"a marked place: {exc}") from None


def place_vectors(layers, places: Sequence[Extent], min_iou: float) -> tuple[np.ndarray, list[int]]:
    """One unit vector per place: the embedded tiles (any layer, any scale) whose IoU with the place
    is at least min_iou, weighted by it; the best-fitting tile alone when none reaches it.
    Returns (vectors (P, D), indices of the places that got one: a place over nodata only gets none)."""
    if not places or not layers:
        return np.zeros((0, layers[0].entry.dim if layers else 0), np.float32), []
    by_crs: dict[str, np.ndarray] = {}
    found: list[list[tuple[float, int, int]]] = [[] for _ in places]  # (iou, layer, tile) per place
    for li, layer in enumerate(layers):
        tiles = layer.tiles[layer.entry.state[layer.tiles] == EMBEDDED]
        if len(tiles) == 0:
            continue
        crs = layer.source.crs_wkt
        if crs not in by_crs:
            by_crs[crs] = _places_in(places, crs)
        polys = layer.grid.polygons(tiles)
        tree = shapely.STRtree(polys)
        for pi, geom in enumerate(by_crs[crs]):
            near = tree.query(geom, predicate="intersects")
            if len(near) == 0:
                continue
            inter = shapely.area(shapely.intersection(polys[near], geom))
            iou = inter / np.maximum(shapely.area(polys[near]) + geom.area - inter, 1e-12)
            found[pi] += [(float(v), li, int(tiles[j])) for v, j in zip(iou, near) if v > 0]
    vectors, used = [], []
    for pi, cands in enumerate(found):
        if not cands:
            continue
        chosen = [c for c in cands if c[0] >= min_iou] or [max(cands)]
        total = np.zeros(layers[0].entry.dim, np.float64)
        for iou, li, tile in chosen:
            total += iou * np.asarray(layers[li].entry.cls[tile], np.float64)
        vectors.append(unit(total))
        used.append(pi)
    dim = layers[0].entry.dim
    return (np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)), used


def _example_layers(embedder, sources, places: Sequence[Extent], options: SearchOptions, layers: list) -> list:
    """The index layers under the marked places (a plan over their union). A layer whose index entry
    the search plan opened already shares that entry object, so a tile is computed once and both
    see it."""
    crs = sources[0].crs_wkt
    union = shapely.union_all(_places_in(places, crs))
    try:
        examples, _ = plan(embedder, sources, Extent(union, crs), options)
    except SearchError as exc:
        if "outside every raster" not in str(exc):
            raise
        raise NoPlaceOverRaster("none of the marked places lies over a searched raster "
                                "(check the polygons and their CRS)") from None
    opened = {key_hash(layer.entry.key): layer.entry for layer in layers}
    out = []
    for layer in examples:
        entry = opened.get(key_hash(layer.entry.key))
        if entry is not None:
            for problem in entry.verify(layer.tiles):  # rows outside the search extent are checked too
                log.warning("%s; its tiles are computed again", problem)
        out.append(Layer(layer.source, layer.grid, entry or layer.entry, layer.tiles))
    return out


def _work_layers(layers: list, examples: list) -> list:
    """One layer per index entry covering the tiles of both plans (for computing what is missing)."""
    by_entry: dict[int, object] = {}
    for layer in layers + examples:
        seen = by_entry.get(id(layer.entry))
        by_entry[id(layer.entry)] = layer if seen is None else Layer(
            seen.source, seen.grid, seen.entry, np.union1d(seen.tiles, layer.tiles))
    return list(by_entry.values())


def mark_matches(matches: list[Match], like: Sequence[Extent], unlike: Sequence[Extent],
                 overlap: float = DEFAULT_SETTINGS.mark_overlap) -> list[str | None]:
    """For each match, LIKE or UNLIKE when it lies on a marked place (they share at least `overlap`
    of the smaller of the two), else None; a place liked and unliked counts as liked."""
    if not matches:
        return []
    crs = matches[0].crs_wkt
    marks: list[str | None] = [None] * len(matches)
    for label, places in ((UNLIKE, unlike), (LIKE, like)):
        if not places:
            continue
        geoms = _places_in(places, crs)
        areas = shapely.area(geoms)
        for i, m in enumerate(matches):
            inter = shapely.area(shapely.intersection(geoms, m.geometry))
            if (inter >= overlap * np.minimum(areas, m.geometry.area)).any() and inter.max() > 0:
                marks[i] = label
    return marks


def run_refined_search(embedder, sketch, sources: Sequence, extent: Extent | None = None,
                       options: SearchOptions | None = None, progress=None, is_cancelled=None,
                       like: Sequence[Extent] = (), unlike: Sequence[Extent] = (),
                       settings: RefineSettings = DEFAULT_SETTINGS) -> SearchResult:
    """engine.search.run_search with marked places; `sketch` may be None when `like` is given.
    Each match's `mark` says whether it lies on a liked or unliked place."""
    t0 = time.perf_counter()
    # Stage 2 compares sketch tokens with tile tokens; a refined query is no longer a sketch, so it is
    # not applied (and no tokens are computed for it).
    options = replace(options or SearchOptions(), stage2=False)
    check_options(options)
    like, unlike = list(like), list(unlike)
    if sketch is None and not like:
        raise SearchError("nothing to search for: give a sketch, places like the ones wanted, or both")
    _check_crs(like + unlike)
    sketch_vec = embedder.embed_sketches([sketch]).cls[0] if sketch is not None else None
    layers, _ = plan(embedder, sources, extent, options)
    examples = _example_layers(embedder, sources, like + unlike, options, layers) if like or unlike else []
    work = _work_layers(layers, examples)
    computed, skipped = compute_missing(embedder, work, options, progress, is_cancelled, "this search")
    cached = sum(len(layer.tiles) for layer in work) - computed - skipped
    require_something_to_search(layers, options, "nothing to search")

    liked, used = place_vectors(examples, like, settings.min_iou)
    unliked, _ = place_vectors(examples, unlike, settings.min_iou)
    if sketch is None and not used:
        raise SearchError("the places marked as liked hold no usable tiles (only nodata under them?)")
    query = refined_vector(sketch_vec, liked, unliked, background_vector(layers), settings)
    hits = stage1(query, layers, max(options.candidates, 10 * options.top_k))
    matches = merge(hits, layers, options, sources)
    for m, mark in zip(matches, mark_matches(matches, like, unlike, settings.mark_overlap)):
        m.mark = mark
    return SearchResult(matches, computed, cached, skipped, time.perf_counter() - t0)
