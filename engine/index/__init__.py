"""The on-disk tile index: per raster and scale, the stage-1 vectors and stage-2 tokens of every
tile computed so far, keyed so that a stale entry is never used."""
from .store import IndexEntry, TileIndexError, default_index_dir, entry_key, list_entries, remove_entries

__all__ = ["IndexEntry", "TileIndexError", "default_index_dir", "entry_key", "list_entries", "remove_entries"]
