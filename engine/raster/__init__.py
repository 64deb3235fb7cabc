"""Reading rasters: the source interface and its implementations."""
from .source import RasterSource, Window

__all__ = ["RasterSource", "Window"]
