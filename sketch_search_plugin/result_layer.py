"""The result layer: ranked match polygons in a memory layer, styled with the shipped .qml."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Sequence

from qgis.core import (QgsCoordinateReferenceSystem, QgsFeature, QgsField, QgsFields, QgsGeometry,
                       QgsVectorLayer)

from .compat import FIELD_DOUBLE, FIELD_INT, FIELD_STRING

STYLE = Path(__file__).resolve().parent / "styles" / "sketch_matches.qml"
# feedback: the analyst's mark, "like" (right) or "unlike" (wrong) or "" (none), in the words of the
# engine's places, so exported marks can go back as Processing's LIKE / UNLIKE layers.
FEEDBACK = "feedback"
LIKE, UNLIKE = "like", "unlike"
FIELDS = (("rank", FIELD_INT), ("score", FIELD_DOUBLE), ("source", FIELD_STRING), ("scale", FIELD_DOUBLE),
          (FEEDBACK, FIELD_STRING))


def layer_name(sketch_label: str | None, when: _dt.datetime | None = None) -> str:
    when = when or _dt.datetime.now()
    name = f"Sketch matches {when:%H:%M:%S}"
    return f"{name} {sketch_label}" if sketch_label else name


def result_fields() -> QgsFields:
    fields = QgsFields()
    for name, kind in FIELDS:
        fields.append(QgsField(name, kind))
    return fields


def match_attributes(match: dict) -> list:
    """The field values of a match, in the order of FIELDS; the engine's mark (the match lies on a
    place marked like / unlike) is its first feedback."""
    mark = match.get("mark")
    return [int(match["rank"]), float(match["score"]), str(match["source"]), float(match["scale"]),
            mark if mark in (LIKE, UNLIKE) else ""]


def build_result_layer(matches: Sequence, crs_wkt: str | None, name: str) -> QgsVectorLayer:
    """A new memory layer holding the matches (protocol match dicts: wkt, rank, score, source,
    scale, mark), in the matches' CRS.

    Must run on the main thread: the layer is parented to nothing and added to the project there.
    """
    crs = QgsCoordinateReferenceSystem.fromWkt(crs_wkt) if crs_wkt else QgsCoordinateReferenceSystem()
    layer = QgsVectorLayer("Polygon", name, "memory")
    layer.setCrs(crs)
    provider = layer.dataProvider()
    provider.addAttributes(list(result_fields()))
    layer.updateFields()
    features = []
    for match in matches:
        feature = QgsFeature(layer.fields())
        geometry = QgsGeometry.fromWkt(match["wkt"])
        if geometry.isNull():
            raise ValueError(f"match {match['rank']} has a geometry QGIS cannot read: {match['wkt'][:80]}")
        feature.setGeometry(geometry)
        feature.setAttributes(match_attributes(match))
        features.append(feature)
    ok, _ = provider.addFeatures(features)
    if not ok:
        raise RuntimeError(f"could not store {len(features)} matches in the result layer")
    layer.updateExtents()
    apply_style(layer)
    return layer


def apply_style(layer: QgsVectorLayer) -> None:
    """Graduated colours by rank (best = darkest red) with rank labels (and ✓ / ✗ after marked ones),
    from the shipped style."""
    message, ok = layer.loadNamedStyle(str(STYLE))
    if not ok:
        raise RuntimeError(f"the result style {STYLE.name} could not be applied: {message}")
    layer.triggerRepaint()
