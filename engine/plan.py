"""What a search covers: for every (source, scale), the grid, the tiles in the extent and the
index entry that holds (or will hold) their vectors, as one `Layer` each.

`Layer` ("one raster at one scale", not a GIS layer) lives in engine/index/build.py beside the code
that fills it; it is re-exported here because planning is where layers are made."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .index import default_index_dir, entry_key
from .index.build import Layer, open_entry
from .search_types import Extent, SearchError, SearchOptions, check_options
from .tiling import TilingError, area_in_pixels, make_grid, parse_crs

__all__ = ["Layer", "plan"]


def plan(embedder, sources: Sequence, extent: Extent | None,
         options: SearchOptions) -> tuple[list[Layer], list[str]]:
    """Open the index entry of every (source, scale) read-only, check the rows the search covers
    and select those tiles. Returns (layers, skipped scale descriptions)."""
    if not sources:
        raise SearchError("no raster to search")
    check_options(options)
    try:
        if extent is not None:
            parse_crs(extent.crs)
        if options.output_crs:
            parse_crs(options.output_crs)
    except TilingError as exc:
        raise SearchError(str(exc)) from None
    root = None
    if options.use_index:
        root = Path(options.index_dir) if options.index_dir else default_index_dir()
    layers, skipped = [], []
    size, dim = embedder.cfg.img_size, embedder.vector_dim
    for source in sources:
        area = area_in_pixels(extent.geometry, extent.crs, source) if extent is not None else None
        for tile_m in options.tile_sizes_m:
            try:
                grid = make_grid(source, tile_m, options.overlap)
            except TilingError as exc:
                raise SearchError(str(exc)) from None
            if grid is None:
                skipped.append(f"{source.name}: {tile_m:g} m tiles are too small for its resolution")
                continue
            tiles = grid.select(area)
            if len(tiles) == 0:
                continue
            key = entry_key(source.identity, embedder.identity, tile_m, options.overlap, size, options.min_valid)
            info = {"raster": source.name, "crs_wkt": source.crs_wkt, "grid": {
                "rows": grid.rows, "cols": grid.cols, "tile_px": [grid.tile_c, grid.tile_r],
                "stride_px": [grid.stride_c, grid.stride_r], "transform": list(grid.transform)[:6]}}
            try:
                entry = open_entry(root, key, grid, dim, tiles, info)
            except OSError as exc:
                raise SearchError(f"cannot use the tile index folder {root}: {exc.strerror or exc} "
                                  f"(choose another with --index-dir or SKETCH_SEARCH_INDEX)") from None
            layers.append(Layer(source, grid, entry, tiles))
    if not layers:
        if extent is not None:
            raise SearchError("the extent lies outside every raster (check the bounding box and its CRS)")
        raise SearchError("; ".join(skipped) or "no tiles to search")
    return layers, skipped
