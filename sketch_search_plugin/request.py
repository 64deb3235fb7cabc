"""A search request as the plugin keeps it until the worker gets it. Free of QGIS (web layers among
the sources are opaque objects here), so the search flow can be tested without it."""
from __future__ import annotations

from dataclasses import dataclass

from .options import SearchSettings


@dataclass
class SearchRequest:
    sketch_png: str | None       # base64 PNG, black strokes on white; None: search by example (like)
    sketch_label: str            # names the result layer
    sources: list                # protocol source dicts, or RenderedLayer (built on the main thread)
    extent: dict | None          # protocol extent {"wkt", "crs"}, or None
    options: dict                # engine.search.SearchOptions fields by name
    checkpoint: str | None = None
    device: str | None = None
    like: list | None = None     # refining: places marked right / wanted, protocol {"wkt", "crs"} dicts
    unlike: list | None = None   # ... and places marked wrong

    @classmethod
    def from_settings(cls, settings: SearchSettings, sketch_png: str | None, sketch_label: str, sources: list,
                      extent: dict | None, output_crs: str | None) -> SearchRequest:
        """The dock's search: its sketch, what to search and its options."""
        return cls(sketch_png=sketch_png, sketch_label=sketch_label, sources=list(sources), extent=extent,
                   options=settings.protocol(output_crs), checkpoint=settings.checkpoint or None,
                   device=settings.device or "auto")

    def params(self) -> dict:
        """The request's parameters in the worker protocol (after rendering)."""
        if not all(isinstance(s, dict) for s in self.sources):
            raise RuntimeError("web layers must be rendered before the request is sent")
        from .shared_index import with_index_dir

        params = {"sources": self.sources, "extent": self.extent, "options": with_index_dir(self.options),
                  "checkpoint": self.checkpoint, "device": self.device or "auto"}
        if self.like or self.unlike:  # optional fields of protocol 1 (see refine.py)
            params.update(like=list(self.like or []), unlike=list(self.unlike or []))
        return params
