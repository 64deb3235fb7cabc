"""Choice of compute device for the PyTorch path: CUDA, then Apple MPS, then CPU, unless the
caller names one. torch is imported inside the functions, so this module imports without it."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def pick_device(requested: str | None = None) -> "torch.device":
    """'auto'/None picks the best available; an explicit device that is not available is an error
    in plain words rather than a failure deep inside PyTorch."""
    import torch

    name = (requested or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available on this machine")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {requested!r} requested but Apple MPS is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def describe_device(device: "torch.device") -> str:
    """Human-readable name of the device, for logs and the plugin's options."""
    import torch

    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    import platform
    return f"CPU: {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
