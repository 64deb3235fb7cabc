"""Which encoder runs the model: one entry point for everything that loads a model for searching
(the engine worker, the command line).

Two runtimes give the same stage-1 vectors (and share one tile index):
- "torch": `engine.embedder.Embedder` (PyTorch + timm): any checkpoint, GPUs, stage 2, training;
- "onnx": `engine.onnx_embedder.OnnxEmbedder` (ONNX Runtime, no torch): stage 1 on the CPU from the
  ONNX file exported beside a checkpoint (`python -m engine.onnx_export`). It lets a machine without
  a GPU search with a small environment (numpy, onnxruntime, pillow, rasterio, shapely, fiona).
The torch runtime is used where torch imports, unless SKETCH_SEARCH_RUNTIME=onnx says otherwise.

`load_embedder` returns an object with the encoder API of `engine.embedder.Embedder` (name, identity,
vector_dim, cfg, batch_size, device_description, embed_images, embed_sketches; pair_scores for stage 2).
This module imports neither torch nor onnxruntime until asked.
"""
from __future__ import annotations

import os
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_CHECKPOINT = MODELS_DIR / "default.safetensors"
RUNTIME_VARIABLE = "SKETCH_SEARCH_RUNTIME"
RUNTIMES = ("torch", "onnx")


def default_model_path() -> Path:
    """The shipped default model (overridable with SKETCH_SEARCH_CHECKPOINT); its ONNX file, where
    exported, lies beside it with the suffix .onnx."""
    return Path(os.environ.get("SKETCH_SEARCH_CHECKPOINT") or DEFAULT_CHECKPOINT)


def runtime_name() -> str:
    """'torch' where PyTorch imports, else 'onnx'; SKETCH_SEARCH_RUNTIME=onnx (or torch) chooses."""
    wanted = os.environ.get(RUNTIME_VARIABLE, "").strip().lower()
    if wanted and wanted not in RUNTIMES:
        raise ValueError(f"{RUNTIME_VARIABLE}={wanted!r}: use one of {', '.join(RUNTIMES)}")
    if wanted == "onnx":
        return "onnx"
    try:
        import torch  # noqa: F401
    except ImportError:
        if wanted == "torch":
            raise ValueError(f"{RUNTIME_VARIABLE}=torch, but PyTorch is not installed in this Python") from None
        return "onnx"
    return "torch"


def available_devices() -> list[str]:
    """Device choices a user may make here, 'auto' first."""
    if runtime_name() == "onnx":
        from .onnx_embedder import onnx_devices

        return onnx_devices()
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
    device = None if device in (None, "auto") else device
    if runtime_name() == "onnx":
        from .onnx_embedder import OnnxEmbedder

        return OnnxEmbedder.from_checkpoint(checkpoint, device)
    from .embedder import Embedder

    return Embedder.from_checkpoint(checkpoint, device)

