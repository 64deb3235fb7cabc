"""Which encoder runs the model: one entry point for everything that loads a model for searching
(the engine worker, the command line).

`load_embedder` returns an object with the encoder API of `engine.embedder.Embedder` (name, identity,
vector_dim, cfg, batch_size, device_description, embed_images, embed_sketches; pair_scores for stage 2).
"""
from __future__ import annotations

from pathlib import Path


def runtime_name() -> str:
    """'torch' where PyTorch imports."""
    import torch  # noqa: F401

    return "torch"


def available_devices() -> list[str]:
    """Device choices a user may make here, 'auto' first."""
    import torch

    devices = ["auto"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]


def load_embedder(checkpoint: str | Path | None = None, device: str | None = None):
    """The encoder for a checkpoint (None = the shipped default model) on a device (None/'auto' = best)."""
    from .embedder import Embedder

    return Embedder.from_checkpoint(checkpoint, None if device in (None, "auto") else device)
