"""Marked places from vector files, for `sketch-search search --like/--unlike FILE`."""
from __future__ import annotations

from pathlib import Path

from ..search_types import Extent
from . import UserError


def read_places(path: str, option: str) -> list:
    """Every polygon of a vector file (a multipolygon's parts one by one) as an engine.search.Extent
    in the file's own CRS. A missing or unreadable file, one without polygons or without a CRS is a
    UserError naming the option."""
    import fiona
    from shapely.geometry import shape

    if not Path(path).exists():
        raise UserError(f"{option} file not found: {path}")
    try:
        with fiona.open(path) as layer:
            geoms = [shape(f["geometry"]) for f in layer if f["geometry"] is not None]
            crs = layer.crs_wkt
    except Exception as exc:  # fiona raises several driver-specific errors
        raise UserError(f"cannot read {option} {path}: {str(exc).splitlines()[0]}") from None
    polygons = [part for g in geoms for part in getattr(g, "geoms", [g])
                if part.geom_type == "Polygon" and not part.is_empty and part.area > 0]
    if not polygons:
        raise UserError(f"{option} {path} holds no polygons")
    if not crs:
        raise UserError(f"{option} {path} has no CRS")
    return [Extent(p, crs) for p in polygons]


def read_all(paths, option: str) -> list:
    return [place for path in paths or () for place in read_places(path, option)]
