"""A model's forward replayed from CUDA graphs (an experiment, off by default: Embedder.cuda_graphs).

Eager PyTorch launches each of the stage-1 passes' many small kernels from Python, holding the
interpreter's lock that the tile reader's threads also need; a captured graph launches them all at
once. It needs one input shape per graph (Embedder.fixed_batch gives that) and no host
synchronisation inside the forward. Where capture fails, calls run eagerly from then on.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

log = logging.getLogger(__name__)

WARMUP_CALLS = 2  # eager calls on a side stream before capture: cuDNN plans and the allocator settle


class GraphedCalls:
    """fn(x, *static) -> tuple of tensors (or None), replayed from a graph captured per (shape,
    strides, dtype of x, static). Results are copies, valid after the next call."""

    def __init__(self, fn: Callable):
        self.fn, self.graphs, self.failed = fn, {}, False

    def __call__(self, x: torch.Tensor, *static):
        if self.failed or x.device.type != "cuda":
            return self.fn(x, *static)
        key = (tuple(x.shape), x.stride(), x.dtype, static)
        entry = self.graphs.get(key)
        if entry is None:
            try:
                entry = self.graphs[key] = self._capture(x, static)
            except RuntimeError as exc:  # an operation that cannot be captured: stay eager
                log.warning("CUDA graph capture failed, running eagerly: %s", exc)
                self.failed = True
                return self.fn(x, *static)
        graph, static_x, outputs = entry
        static_x.copy_(x)
        graph.replay()
        return tuple(None if o is None else o.clone() for o in outputs)

    def _capture(self, x: torch.Tensor, static: tuple):
        static_x = x.clone()  # keeps the memory format (channels-last)
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                self.fn(static_x, *static)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the reader threads pin memory meanwhile, which global mode would refuse
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outputs = self.fn(static_x, *static)
        return graph, static_x, outputs
