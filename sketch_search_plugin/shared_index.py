"""Which tile index the engine searches: the setting SketchSearch/index_dir.

A team indexes its imagery once (`sketch-search index build --index-dir /share/index ...`, on a
cluster with `--dask`) and every analyst points this setting at that folder, typically a read-only
network share: searches then read the stored vectors and compute only tiles the index lacks, in
memory (the engine never writes to a folder it cannot write). Empty: the engine's own default
(SKETCH_SEARCH_INDEX, else the user's cache). The dock and the Processing algorithm send it as the
`index_dir` search option of the worker protocol.
"""
from __future__ import annotations

import os

from .installer import setting

SETTING_INDEX_DIR = "SketchSearch/index_dir"


def index_dir() -> str | None:
    """The index folder the setting names (~ and $VARIABLES expanded), or None for the engine's default."""
    value = setting(SETTING_INDEX_DIR)
    return os.path.expandvars(os.path.expanduser(value)) if value else None


def with_index_dir(options: dict) -> dict:
    """Search options with the setting's index folder, unless they name one themselves."""
    folder = index_dir()
    if folder and not options.get("index_dir"):
        return {**options, "index_dir": folder}
    return options
