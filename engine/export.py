"""Writing polygons with attributes as a GIS layer: .shp (+ .shx .dbf .prj .cpg), .gpkg or
.geojson, chosen by the extension. Written under a temporary name in the same folder and renamed
into place, so a failure leaves no partial output; an existing output is kept unless overwrite.

Shapefiles and GeoPackages keep the CRS they are given. GeoJSON is written as RFC 7946 requires:
longitude/latitude in WGS 84 (EPSG:4326), whatever the given CRS; GDAL's RFC7946 option does the
reprojection (and the standard's winding order, antimeridian splitting and 7-decimal precision,
about 1 cm).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from shapely.geometry import mapping

DRIVERS = {".shp": "ESRI Shapefile", ".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")


class ExportError(ValueError):
    """An output that cannot be written; one-line message for the user."""


def outputs_of(path: Path) -> list[Path]:
    """Every file a layer at `path` consists of (a shapefile has several)."""
    if path.suffix.lower() == ".shp":
        return [path.with_suffix(s) for s in SHAPEFILE_PARTS]
    return [path]


def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate an output path before any work is done: known extension, writable folder,
    no existing file unless overwrite. Returns the path."""
    path = Path(path)
    if path.suffix.lower() not in DRIVERS:
        raise ExportError(f"unknown output format {path.suffix or '(none)'!r} for {path}: use .shp, .gpkg or .geojson")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise ExportError(f"output folder is not writable: {folder}")
    existing = [p for p in outputs_of(path) if p.exists()]
    if existing and not overwrite:
        raise ExportError(f"{existing[0]} exists (use --overwrite to replace it)")
    return path


def _field_type(values: np.ndarray) -> str:
    if np.issubdtype(values.dtype, np.integer):
        return "int"
    if np.issubdtype(values.dtype, np.floating):
        return "float"
    return "str"


def _python(value):
    return value.item() if isinstance(value, np.generic) else value


def write_polygons(path: str | os.PathLike, geometries: Sequence, fields: dict[str, Sequence], crs_wkt: str,
                   overwrite: bool = False, layer: str | None = None) -> Path:
    """Write polygons with attribute columns. Field names must be at most 10 characters (the
    shapefile limit), so every format carries the same names."""
    import fiona
    from fiona.crs import CRS as FionaCRS

    path = check_output(path, overwrite)
    for name in fields:
        if len(name) > 10:
            raise ExportError(f"field name {name!r} is longer than 10 characters (shapefile limit)")
    columns = {name: np.asarray(values) for name, values in fields.items()}
    schema = {"geometry": "Polygon", "properties": {n: _field_type(v) for n, v in columns.items()}}
    driver = DRIVERS[path.suffix.lower()]
    tmpdir = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
    try:
        tmp = tmpdir / path.name
        extra = {"ENCODING": "UTF-8"} if driver == "ESRI Shapefile" else {}
        if driver == "GPKG":
            extra["layer"] = layer or path.stem
        if driver == "GeoJSON":
            extra["RFC7946"] = "YES"  # reprojects to EPSG:4326 (lon/lat) when the CRS is another
        with fiona.open(tmp, "w", driver=driver, schema=schema, crs=FionaCRS.from_wkt(crs_wkt), **extra) as dst:
            for i, geom in enumerate(geometries):
                if geom.geom_type == "MultiPolygon":
                    geom = max(geom.geoms, key=lambda g: g.area)
                props = {n: _python(v[i]) for n, v in columns.items()}
                dst.write({"geometry": mapping(geom), "properties": props})
        if overwrite:
            for old in outputs_of(path):
                if old.exists():
                    old.unlink()
        for part in sorted(tmpdir.iterdir()):
            os.replace(part, path.parent / part.name)
    except ExportError:
        raise
    except Exception as exc:
        if _disk_full(path.parent):  # GDAL words it as an SQL or driver error
            raise ExportError(f"cannot write {path}: the disk is full (free some space or write elsewhere)") from None
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"cannot write {path}: {reason[:300]}") from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def write_matches(path: str | os.PathLike, matches: Sequence, crs_wkt: str | None = None,
                  overwrite: bool = False) -> Path:
    """Search matches -> a layer with fields rank, score, source, scale (tile size in m), merged.
    A .geojson output is reprojected to WGS 84 lon/lat (RFC 7946); .shp/.gpkg keep the CRS."""
    if not matches and crs_wkt is None:
        raise ExportError("no matches and no CRS to write an empty layer with")
    crs = crs_wkt or matches[0].crs_wkt
    fields = {
        "rank": np.array([m.rank for m in matches], np.int64),
        "score": np.array([m.score for m in matches], np.float64),
        "source": np.array([m.source for m in matches], object),
        "scale": np.array([m.scale for m in matches], np.float64),
        "merged": np.array([m.merged for m in matches], np.int64),
    }
    return write_polygons(path, [m.geometry for m in matches], fields, crs, overwrite)
