"""Request JSON -> engine objects, and matches -> JSON. Anything malformed is a UserError naming
the parameter, raised before any work starts."""
from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from engine.raster.rasterio_source import RasterioSource
from engine.raster.source import Window
from engine.search import Extent, Match, SearchOptions

from .errors import UserError

THUMBNAIL_MARGIN = 0.1     # share of the tile added on each side, so the object's surroundings show
MAX_THUMBNAIL_PX = 1024


def sketch(raw) -> np.ndarray:
    """{"png_base64": ...} or {"path": ...} -> the sketch's pixels, read now (by the engine's own
    reader, with its size limits) so that a bad sketch fails before any model loads."""
    from engine.preprocess import SketchError, load_array

    if not isinstance(raw, dict) or len(raw.keys() & {"png_base64", "path"}) != 1:
        raise UserError('sketch must be {"png_base64": ...} or {"path": ...}')
    if "path" in raw:
        path = raw["path"]
        if not isinstance(path, str) or not Path(path).is_file():
            raise UserError(f"sketch file not found: {path}")
        return load_array(path)
    try:
        data = base64.b64decode(raw["png_base64"], validate=True)
    except (TypeError, ValueError, binascii.Error) as exc:
        raise UserError(f"the sketch is not base64 data: {exc}") from None
    try:
        return load_array(data)
    except SketchError:  # the engine's own one-line message (e.g. too many pixels)
        raise
    except ValueError:
        raise UserError("the sketch is not a readable image (PNG data expected)") from None


def sources(raw) -> list[RasterioSource]:
    """[{"path", "name", "bands"}, ...] -> opened RasterioSources (RasterError when one cannot be read)."""
    if not isinstance(raw, list):
        raise UserError("sources must be a list of {\"path\", \"name\", \"bands\"}")
    opened = []
    try:
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                raise UserError(f"source {i} must be an object with a \"path\" string")
            name, bands = item.get("name"), item.get("bands")
            if name is not None and not isinstance(name, str):
                raise UserError(f"source {i}: name must be a string")
            if bands is not None and not (isinstance(bands, list) and all(_is_int(b) for b in bands)):
                raise UserError(f"source {i}: bands must be a list of band numbers or null")
            opened.append(RasterioSource(item["path"], bands=tuple(bands) if bands else None, name=name or None))
    except BaseException:
        close(opened)
        raise
    return opened


def close(opened) -> None:
    for source in opened:
        source.close()


def extent(raw) -> Extent | None:
    """null -> None; {"wkt": polygon, "crs": WKT or EPSG:n} -> Extent."""
    if raw is None:
        return None
    return _polygon(raw, "extent")


def places(raw, name: str) -> list[Extent]:
    """null or [{"wkt": polygon, "crs": WKT or EPSG:n}, ...] -> Extents: the marked places of a
    refined search (`like`, `unlike`)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise UserError(f'{name} must be null or a list of {{"wkt": <polygon WKT>, "crs": <CRS>}}')
    return [_polygon(item, f"{name}[{i}]") for i, item in enumerate(raw)]


def _polygon(raw, name: str) -> Extent:
    if not isinstance(raw, dict) or not isinstance(raw.get("wkt"), str) or not isinstance(raw.get("crs"), str):
        shape = '{"wkt": <polygon WKT>, "crs": <CRS>}'
        raise UserError(f'{name} must be {"null or " if name == "extent" else ""}{shape}')
    import shapely.wkt
    from shapely.errors import ShapelyError

    try:
        geometry = shapely.wkt.loads(raw["wkt"])
    except (ShapelyError, ValueError) as exc:
        raise UserError(f"the {name} is not valid WKT: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if geometry.geom_type not in ("Polygon", "MultiPolygon") or geometry.is_empty or geometry.area <= 0:
        raise UserError(f"the {name} must be a polygon with an area, got {geometry.geom_type}")
    return Extent(geometry, raw["crs"])


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _option_value(name: str, value, default):
    """Check a value against the type of the option's default (bool, int, float, tuple of numbers,
    or text/null for options whose default is None)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = _is_int(value)
    elif isinstance(default, float):
        ok = _is_number(value)
        value = float(value) if ok else value
    elif isinstance(default, tuple):
        ok = isinstance(value, list) and all(_is_number(v) for v in value)
        value = tuple(float(v) for v in value) if ok else value
    else:  # None by default: a CRS or a folder
        ok = isinstance(value, str)
    if not ok:
        raise UserError(f"option {name}: {value!r} is not a valid value (like {default!r})")
    return value


def options(raw) -> SearchOptions:
    """{name: value} over SearchOptions' fields; null values and missing names take the defaults."""
    if raw is None:
        return SearchOptions()
    if not isinstance(raw, dict):
        raise UserError("options must be an object of option names and values")
    fields = {f.name: f.default for f in dataclasses.fields(SearchOptions)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UserError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                        f"(known: {', '.join(fields)})")
    return SearchOptions(**{name: _option_value(name, value, fields[name])
                            for name, value in raw.items() if value is not None})


def thumbnail_size(raw) -> int:
    if raw is None:
        return 0
    if not _is_int(raw) or not 0 <= raw <= MAX_THUMBNAIL_PX:
        raise UserError(f"thumbnail must be a side in pixels from 0 to {MAX_THUMBNAIL_PX}, got {raw!r}")
    return raw


def thumbnail_window(window: Window) -> Window:
    """The tile's window with a margin on every side."""
    dc, dr = window.width * THUMBNAIL_MARGIN, window.height * THUMBNAIL_MARGIN
    return Window(window.col_off - dc, window.row_off - dr, window.width + 2 * dc, window.height + 2 * dr)


def thumbnail_png(source, window: Window, side: int) -> str:
    """The match's tile and its surroundings as a side x side PNG, base64 (nodata is black)."""
    rgb, _ = source.read_rgb(thumbnail_window(window), (side, side))
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def match_json(match: Match, opened: list, thumbnail: int) -> dict:
    window = match.window
    return {
        "wkt": match.geometry.wkt, "rank": match.rank, "score": float(match.score), "source": match.source,
        "source_index": match.source_index, "scale": float(match.scale), "merged": match.merged,
        "window": [float(v) for v in (window.col_off, window.row_off, window.width, window.height)] if window else None,
        "thumbnail_png_base64": (thumbnail_png(opened[match.source_index], window, thumbnail)
                                 if thumbnail and window else None),
        "mark": match.mark,
    }
