"""Refining a search from the plugin: matches marked right or wrong, and search by example.

A result layer remembers its query in custom properties, saved with the project:
- `sketch_search/query`: JSON of the request that made it (sketch PNG, sources, extent, options,
  model, device, the places already liked and unliked) and the CRS of the layer's polygons;
- `sketch_search/marks`: JSON {rank: {"mark": "right" | "wrong", "wkt": polygon}}: the analyst's marks,
  with each match's polygon, so they hold even where the features themselves are not kept (a memory
  layer of QGIS 3.22 is saved empty).
The marks are also the layer's `feedback` field ("like", "unlike" or ""), kept in step by set_marks, so
they show in the style and go into exported files.
Refining sends that query again with `like` = its liked places + the matches marked right and `unlike`
= its unliked places + those marked wrong (the worker protocol's `search` in ARCHITECTURE.md).
"""
from __future__ import annotations

import json
from dataclasses import replace

from qgis.core import QgsVectorLayer

from .request import SearchRequest
from .result_layer import FEEDBACK, LIKE, UNLIKE

QUERY = "sketch_search/query"
MARKS = "sketch_search/marks"
RIGHT, WRONG = "right", "wrong"
# The engine's words for a match lying on a marked place -> the plugin's marks.
ENGINE_MARKS = {LIKE: RIGHT, UNLIKE: WRONG}
FEEDBACK_OF = {RIGHT: LIKE, WRONG: UNLIKE}   # the plugin's marks -> the feedback field


def remember_query(layer: QgsVectorLayer, request, matches: list, crs_wkt: str) -> None:
    """Stores the request (after rendering: sources are plain protocol dicts) on the new result layer,
    and marks the matches the engine found on places already marked."""
    query = {"version": 1, "sketch_png": request.sketch_png, "sketch_label": request.sketch_label,
             "sources": request.sources, "extent": request.extent, "options": request.options,
             "checkpoint": request.checkpoint, "device": request.device, "like": request.like or [],
             "unlike": request.unlike or [], "crs_wkt": crs_wkt}
    layer.setCustomProperty(QUERY, json.dumps(query))
    marks = {int(m["rank"]): {"mark": ENGINE_MARKS[m["mark"]], "wkt": m["wkt"]}
             for m in matches if m.get("mark") in ENGINE_MARKS}
    layer.setCustomProperty(MARKS, json.dumps(marks))


def query_of(layer) -> dict | None:
    """The remembered query of a result layer, or None for any other layer."""
    if not isinstance(layer, QgsVectorLayer):
        return None
    raw = layer.customProperty(QUERY)
    try:
        query = json.loads(raw) if raw else None
    except (TypeError, ValueError):
        return None
    return query if isinstance(query, dict) and query.get("version") == 1 else None


def marks_of(layer) -> dict[int, dict]:
    """{rank: {"mark", "wkt"}} of a result layer (empty when none or unreadable)."""
    raw = layer.customProperty(MARKS) if isinstance(layer, QgsVectorLayer) else None
    try:
        marks = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    return {int(rank): value for rank, value in marks.items()} if isinstance(marks, dict) else {}


def set_marks(layer: QgsVectorLayer, ranks, mark: str | None) -> int:
    """Marks the matches of these ranks RIGHT, WRONG, or clears them (None). Returns how many changed."""
    marks = marks_of(layer)
    wanted = {int(r) for r in ranks}
    polygons = {}
    if mark is not None and wanted:
        ids = ", ".join(str(r) for r in sorted(wanted))
        polygons = {int(f["rank"]): f.geometry().asWkt() for f in layer.getFeatures(f'"rank" IN ({ids})')}
    changed = 0
    for rank in wanted:
        if mark is None:
            changed += marks.pop(rank, None) is not None
        elif rank in polygons or rank in marks:
            wkt = polygons.get(rank) or marks[rank]["wkt"]
            changed += marks.get(rank, {}).get("mark") != mark
            marks[rank] = {"mark": mark, "wkt": wkt}
    layer.setCustomProperty(MARKS, json.dumps({str(r): v for r, v in sorted(marks.items())}))
    write_feedback(layer, marks)
    return changed


def write_feedback(layer: QgsVectorLayer, marks: dict[int, dict]) -> None:
    """The feedback field of every feature set from the marks (a layer without the field is left alone)."""
    index = layer.fields().indexOf(FEEDBACK)
    if index < 0:
        return
    changes = {}
    for feature in layer.getFeatures():
        value = FEEDBACK_OF.get(marks.get(int(feature["rank"]), {}).get("mark"), "")
        if (feature[FEEDBACK] or "") != value:
            changes[feature.id()] = {index: value}
    if changes:
        layer.dataProvider().changeAttributeValues(changes)
        layer.triggerRepaint()


def selected_ranks(layer: QgsVectorLayer) -> list[int]:
    """Ranks of the features selected on the map (or in the attribute table)."""
    return sorted(int(f["rank"]) for f in layer.selectedFeatures())


def refine_places(layer) -> tuple[list[dict], list[dict]]:
    """(like, unlike) for a refined search: the query's places plus the layer's marks."""
    query = query_of(layer) or {}
    crs = query.get("crs_wkt") or layer.crs().toWkt()
    like, unlike = list(query.get("like") or []), list(query.get("unlike") or [])
    for rank, value in sorted(marks_of(layer).items()):
        place = {"wkt": value["wkt"], "crs": crs}
        (like if value.get("mark") == RIGHT else unlike).append(place)
    return _unique(like), _unique(unlike)


def _unique(places: list[dict]) -> list[dict]:
    seen, out = set(), []
    for p in places:
        key = (p["wkt"], p["crs"])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def request_from_query(query: dict, like: list[dict], unlike: list[dict], sketch: bool = True, label: str = ""):
    """A SearchRequest repeating a remembered query with these places (sketch=False: by example)."""
    return SearchRequest(sketch_png=query.get("sketch_png") if sketch else None,
                         sketch_label=label or query.get("sketch_label") or "sketch",
                         sources=list(query.get("sources") or []), extent=query.get("extent"),
                         options=dict(query.get("options") or {}), checkpoint=query.get("checkpoint"),
                         device=query.get("device"), like=like, unlike=unlike)


def example_request(request, place_wkt: str, crs_wkt: str, label: str = "example"):
    """A search by example: what `request` searches (sources, extent, options), with the sketch
    replaced by one liked place."""
    return replace(request, sketch_png=None, sketch_label=label, like=[{"wkt": place_wkt, "crs": crs_wkt}],
                   unlike=[])
