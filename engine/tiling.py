"""Tiles in ground units over a raster: a regular grid per scale, anchored at the raster's pixel
(0, 0), so every search over any extent reuses the same tiles (and the same index entries).

Default scales 60, 120 and 240 m with 50 % overlap: the objects analysts sketch span about
20-80 m (tennis courts 24 x 11 m, aeroplanes 30-70 m, roundabouts 20-80 m, storage tanks
20-60 m) up to a few hundred metres (rows of tanks, sports grounds, harbours). The model was
trained on scene images in which the object fills a good part of the frame, so a 60 m tile frames
a single small object, 120 m a large one or a group, 240 m a facility. 50 % overlap means any
object no larger than half a tile lies wholly inside at least one tile.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
import shapely.geometry
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_geom

from .raster.source import Window

MIN_TILE_PX = 16          # a scale finer than this many source pixels per tile carries no detail
METRES_PER_DEG_LAT = 110_574.0
METRES_PER_DEG_LON = 111_320.0   # at the equator; times cos(latitude)


class TilingError(ValueError):
    """Tiling settings or an extent that cannot be used; one-line message for the user."""


@lru_cache(maxsize=256)
def parse_crs(text: str) -> CRS:
    """Any CRS a user or a file gives (EPSG:xxxx, WKT, PROJ string) -> rasterio CRS."""
    try:
        crs = CRS.from_user_input(text)
    except (CRSError, ValueError) as exc:
        raise TilingError(f"unknown CRS {text[:60]!r}: {str(exc).splitlines()[0]}") from None
    return crs


def pixel_size_m(crs_wkt: str, transform: Affine, width: int, height: int) -> tuple[float, float]:
    """Ground size of one pixel along columns and along rows, in metres (works for rotated transforms
    and for geographic CRSs, where degrees are converted at the raster's centre latitude)."""
    crs = parse_crs(crs_wkt)
    col_step = math.hypot(transform.a, transform.d)
    row_step = math.hypot(transform.b, transform.e)
    if crs.is_geographic:
        lat = transform.d * width / 2 + transform.e * height / 2 + transform.f
        coslat = max(math.cos(math.radians(lat)), 1e-6)
        # For a north-up geographic raster columns run east, rows run south; a rotation mixes both.
        ang_c = math.atan2(transform.d, transform.a)
        ang_r = math.atan2(transform.e, transform.b)
        def metres(step, ang):
            return step * math.hypot(math.cos(ang) * METRES_PER_DEG_LON * coslat, math.sin(ang) * METRES_PER_DEG_LAT)
        return metres(col_step, ang_c), metres(row_step, ang_r)
    factor = crs.linear_units_factor[1] if crs.is_projected else 1.0
    return col_step * factor, row_step * factor


@dataclass(frozen=True)
class Grid:
    """The tiles of one scale over one raster. Tile t = row * cols + col covers source pixels
    [col * stride_c, col * stride_c + tile_c) x [row * stride_r, row * stride_r + tile_r)."""
    tile_m: float
    overlap: float
    tile_c: float      # tile size in source pixels along columns / rows
    tile_r: float
    stride_c: float
    stride_r: float
    cols: int
    rows: int
    transform: Affine
    crs_wkt: str

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def window(self, tile: int) -> Window:
        r, c = divmod(int(tile), self.cols)
        return Window(c * self.stride_c, r * self.stride_r, self.tile_c, self.tile_r)

    def corners_px(self, tiles: np.ndarray) -> np.ndarray:
        """(T, 4, 2) pixel (col, row) corners of the tiles, clockwise from the top left."""
        r, c = np.divmod(np.asarray(tiles, np.int64), self.cols)
        x0, y0 = c * self.stride_c, r * self.stride_r
        x1, y1 = x0 + self.tile_c, y0 + self.tile_r
        return np.stack([np.stack([x0, y0], -1), np.stack([x1, y0], -1),
                         np.stack([x1, y1], -1), np.stack([x0, y1], -1)], axis=1).astype(np.float64)

    def polygons(self, tiles: np.ndarray) -> np.ndarray:
        """Tile polygons in the raster's CRS (rotated transforms give rotated squares)."""
        px = self.corners_px(tiles)
        t = self.transform
        xs = t.a * px[..., 0] + t.b * px[..., 1] + t.c
        ys = t.d * px[..., 0] + t.e * px[..., 1] + t.f
        return shapely.polygons(np.stack([xs, ys], -1))

    def select(self, area_px: "shapely.Geometry | None") -> np.ndarray:
        """Ids of the tiles that intersect `area_px` (a geometry in pixel coordinates), or all."""
        if area_px is None:
            return np.arange(self.count, dtype=np.int64)
        if area_px.is_empty:
            return np.zeros(0, np.int64)
        minx, miny, maxx, maxy = area_px.bounds
        c0 = max(0, math.floor((minx - self.tile_c) / self.stride_c))
        c1 = min(self.cols - 1, math.floor(maxx / self.stride_c))
        r0 = max(0, math.floor((miny - self.tile_r) / self.stride_r))
        r1 = min(self.rows - 1, math.floor(maxy / self.stride_r))
        if c1 < c0 or r1 < r0:
            return np.zeros(0, np.int64)
        rr, cc = np.meshgrid(np.arange(r0, r1 + 1), np.arange(c0, c1 + 1), indexing="ij")
        ids = (rr * self.cols + cc).ravel().astype(np.int64)
        boxes = shapely.polygons(self.corners_px(ids))
        keep = shapely.intersects(boxes, area_px) & ~shapely.touches(boxes, area_px)
        return ids[keep]


def make_grid(source, tile_m: float, overlap: float) -> Grid | None:
    """The grid of one scale over a source, or None when the raster is too coarse for that scale
    (fewer than MIN_TILE_PX pixels per tile)."""
    if not math.isfinite(tile_m) or tile_m <= 0:
        raise TilingError(f"tile size must be a positive number of metres, got {tile_m}")
    if not (math.isfinite(overlap) and 0.0 <= overlap < 1.0):
        raise TilingError(f"overlap must be at least 0 and below 1, got {overlap}")
    pc, pr = pixel_size_m(source.crs_wkt, source.transform, source.width, source.height)
    tile_c, tile_r = tile_m / pc, tile_m / pr
    if min(tile_c, tile_r) < MIN_TILE_PX:
        return None
    stride_c, stride_r = tile_c * (1 - overlap), tile_r * (1 - overlap)
    # Enough tiles to reach the last pixel; the last row/column may hang over the edge (its
    # outside part reads as nodata and tiles mostly outside are skipped).
    cols = max(1, math.ceil(max(source.width - tile_c, 0) / stride_c - 1e-9) + 1)
    rows = max(1, math.ceil(max(source.height - tile_r, 0) / stride_r - 1e-9) + 1)
    return Grid(float(tile_m), float(overlap), tile_c, tile_r, stride_c, stride_r, cols, rows,
                source.transform, source.crs_wkt)


def area_in_pixels(geometry, geometry_crs: str, source) -> "shapely.Geometry":
    """An extent geometry (in its CRS) -> the same area in the source's pixel coordinates."""
    src_crs, ext_crs = parse_crs(source.crs_wkt), parse_crs(geometry_crs)
    geom = geometry
    if src_crs != ext_crs:
        geom = shapely.geometry.shape(transform_geom(ext_crs, src_crs, shapely.geometry.mapping(
            shapely.segmentize(geometry, max_segment_length=_segment(geometry)))))
    inv = ~source.transform
    return shapely.transform(geom, lambda xy: np.stack([
        inv.a * xy[:, 0] + inv.b * xy[:, 1] + inv.c, inv.d * xy[:, 0] + inv.e * xy[:, 1] + inv.f], -1))


def _segment(geometry) -> float:
    """Densify extents before reprojection so their curved images are followed (64 pieces a side)."""
    minx, miny, maxx, maxy = geometry.bounds
    return max(maxx - minx, maxy - miny, 1e-9) / 64


def reproject(geoms: np.ndarray, src_wkt: str, dst_wkt: str) -> np.ndarray:
    """Shapely geometries from one CRS to another (identity when they are the same)."""
    src, dst = parse_crs(src_wkt), parse_crs(dst_wkt)
    if src == dst or len(geoms) == 0:
        return np.asarray(geoms)
    feats = [shapely.geometry.mapping(g) for g in geoms]
    return np.array([shapely.geometry.shape(f) for f in transform_geom(src, dst, feats)], dtype=object)
