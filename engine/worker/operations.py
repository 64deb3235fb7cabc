"""What each request does. A handler takes the request's parameters and a Context and returns the
`result` object; it raises to fail (engine/worker/errors.py turns that into the reply)."""
from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Callable

import engine
from engine import runtime
from engine.search import build_index, run_search
from engine.search import estimate as estimate_search
from engine.tiling import parse_crs

from . import PROTOCOL, messages
from .models import ModelCache, default_model_path, model_files, self_check


@dataclass
class Context:
    models: ModelCache
    progress: Callable[[int, int, str], None]
    is_cancelled: Callable[[], bool]


def hello(params: dict, ctx: Context) -> dict:
    default = default_model_path()
    installed = any(p.is_file() for p in model_files(default) if p.suffix != ".json")
    return {"protocol": PROTOCOL, "engine": engine.__version__, "python": platform.python_version(),
            "runtime": runtime.runtime_name(), "devices": runtime.available_devices(),
            "default_model": str(default) if installed else None}


def load(params: dict, ctx: Context) -> dict:
    embedder = ctx.models.get(params.get("checkpoint"), params.get("device"))
    self_check(embedder)
    return {"model": embedder.name, "device": embedder.device_description, "vector_dim": int(embedder.vector_dim)}


def estimate(params: dict, ctx: Context) -> dict:
    extent, options = messages.extent(params.get("extent")), messages.options(params.get("options"))
    sources = messages.sources(params.get("sources"))
    try:
        embedder = ctx.models.get(params.get("checkpoint"), params.get("device"))
        est = estimate_search(embedder, sources, extent, options)
    finally:
        messages.close(sources)
    return {"tiles": est.tiles, "cached": est.cached, "to_compute": est.to_compute, "seconds": est.seconds,
            "skipped_scales": list(est.skipped_scales), "describe": est.describe()}


def search(params: dict, ctx: Context) -> dict:
    like, unlike = messages.places(params.get("like"), "like"), messages.places(params.get("unlike"), "unlike")
    # Optional when places are liked (search by example); refined searches: see engine/refine.py.
    if params.get("sketch") is None and not like:
        raise messages.UserError("give a sketch, or places like the ones wanted (like), or both")
    sketch = messages.sketch(params["sketch"]) if params.get("sketch") is not None else None
    extent, options = messages.extent(params.get("extent")), messages.options(params.get("options"))
    thumbnail = messages.thumbnail_size(params.get("thumbnail", 0))
    sources = messages.sources(params.get("sources"))
    try:
        embedder = ctx.models.get(params.get("checkpoint"), params.get("device"))
        result = run_search(embedder, sketch, sources, extent, options, ctx.progress, ctx.is_cancelled,
                            like, unlike)
        matches = [messages.match_json(m, sources, thumbnail) for m in result.matches]
        crs_wkt = (result.matches[0].crs_wkt if result.matches
                   else parse_crs(options.output_crs or sources[0].crs_wkt).to_wkt())
    finally:
        messages.close(sources)
    return {"matches": matches, "crs_wkt": crs_wkt, "model": embedder.name, "device": embedder.device_description,
            "seconds": result.seconds, "computed": result.computed, "cached": result.cached,
            "skipped": result.skipped}


def index(params: dict, ctx: Context) -> dict:
    extent, options = messages.extent(params.get("extent")), messages.options(params.get("options"))
    sources = messages.sources(params.get("sources"))
    try:
        embedder = ctx.models.get(params.get("checkpoint"), params.get("device"))
        result = build_index(embedder, sources, extent, options, ctx.progress, ctx.is_cancelled)
    finally:
        messages.close(sources)
    return {"computed": result.computed, "cached": result.cached, "skipped": result.skipped,
            "seconds": result.seconds}


# The requests served in turn by the main thread (cancel and shutdown are handled on arrival).
HANDLERS = {"hello": hello, "load": load, "estimate": estimate, "search": search, "index": index}
