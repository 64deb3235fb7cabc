"""Which failures are the user's: every failed request becomes one `error` reply of kind `user`
(a one-line message the plugin shows as is), `cancelled`, or `internal` (a bug or a broken
installation: the traceback goes into `details`)."""
from __future__ import annotations

import errno
import sys
import traceback

# Engine exceptions meant for users, by module; looked up in sys.modules so that classifying an
# error never imports anything (an exception of a class can only exist once its module is loaded).
_USER_CLASSES = {
    "engine.search_types": ("SearchError",),
    "engine.model.checkpoints": ("CheckpointError",),
    "engine.preprocess": ("SketchError",),  # EmptySketchError, ImageTooLargeError
    "engine.index.store": ("TileIndexError",),
    "engine.raster.rasterio_source": ("RasterError",),
    "engine.tiling": ("TilingError",),
    "rasterio.errors": ("RasterioIOError",),  # a raster that became unreadable during a search
}
_CANCELLED_CLASSES = {
    "engine.search_types": ("SearchCancelled",),
    "engine.index.build": ("Cancelled",),
}


class UserError(ValueError):
    """A request that cannot be served as asked (a bad parameter); one-line message."""


def _loaded(table: dict) -> tuple[type, ...]:
    found = []
    for module, names in table.items():
        mod = sys.modules.get(module)
        found += [getattr(mod, n) for n in names if mod is not None and hasattr(mod, n)]
    return tuple(found)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(exc: BaseException) -> tuple[str, str, str]:
    """(kind, one-line message, details) for a failed request."""
    details = "".join(traceback.format_exception(exc))
    if isinstance(exc, _loaded(_CANCELLED_CLASSES)):
        return "cancelled", first_line(exc), ""
    if isinstance(exc, (UserError,) + _loaded(_USER_CLASSES)):
        return "user", first_line(exc), ""
    if isinstance(exc, MemoryError):
        return "user", ("out of memory: search a smaller extent, use fewer or larger tile sizes, "
                        "or turn re-ranking (stage 2) off"), details
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "user", f"the disk is full: {first_line(exc)} (free space or choose another index folder)", ""
    if isinstance(exc, ValueError):
        # Plain ValueErrors come from bad parameters reaching the engine (an image it cannot use,
        # a value out of range); the traceback is kept in case one was a bug after all.
        return "user", first_line(exc), details
    return "internal", f"{type(exc).__name__}: {first_line(exc)}", details
