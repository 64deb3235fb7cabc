"""The plugin's search options and their defaults: the one place the dock and Processing take them from.

The defaults are the engine's (engine.search.SearchOptions), written out here because the plugin never
imports the engine. Free of QGIS, so it can be tested without it.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError

DEFAULT_TILE_SIZES_M = (60.0, 120.0, 240.0)
DEFAULT_TOP_K = 20
MAX_TOP_K = 1000            # one cap for the dock and Processing
DEFAULT_STAGE2 = False      # as SearchOptions().stage2: re-ranking lowered precision when measured
DEFAULT_EXPANSION = True    # as SearchOptions().expansion: the model card's query expansion
DEFAULT_MAX_TILES = 20000   # as SearchOptions().max_tiles: more new tiles than this are refused
CONFIRM_TILES = 3000        # the dock asks before computing more tiles (about a minute on a laptop CPU)


def format_tile_sizes(sizes) -> str:
    """(60.0, 120.0) -> "60, 120": how tile sizes are shown and typed."""
    return ", ".join(f"{float(s):g}" for s in sizes)


def parse_tile_sizes(text: str) -> list[float]:
    """"60, 120; 240" -> [60.0, 120.0, 240.0]; anything else is an InputError in plain words."""
    try:
        sizes = [float(s) for s in str(text).replace(";", ",").split(",") if s.strip()]
    except ValueError:
        raise InputError("Tile sizes must be numbers in metres separated by commas, e.g. 60, 120.") from None
    if not sizes or not all(0 < s < 1e6 for s in sizes):
        raise InputError("Give at least one positive tile size in metres.")
    return sizes


@dataclass
class SearchSettings:
    """What the user chose in the dock's options (or Processing's parameters)."""
    top_k: int = DEFAULT_TOP_K
    tile_sizes_m: tuple = DEFAULT_TILE_SIZES_M
    stage2: bool = DEFAULT_STAGE2
    expansion: bool = DEFAULT_EXPANSION  # search again toward the best few matches (as the model card says)
    web_resolution: float | None = None   # pixel size for web layers in map units; None = automatic
    device: str = "auto"
    checkpoint: str | None = None         # None = the shipped model

    def protocol(self, output_crs: str | None) -> dict:
        """The worker protocol's `options` (engine.search.SearchOptions fields by name)."""
        return {"top_k": int(self.top_k), "tile_sizes_m": [float(s) for s in self.tile_sizes_m],
                "stage2": bool(self.stage2), "expansion": bool(self.expansion), "output_crs": output_crs or None}
