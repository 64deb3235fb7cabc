"""The MLAGT network and its configurations.

The network (and so PyTorch) is imported on first use of MLAGT or l2_distance: the configurations,
model cards and checkpoint errors serve the ONNX Runtime path too, where torch is not installed."""
from .config import CONFIGS, LITE0_DEFAULT, PAPER_VITB16, VIT_TINY, ModelConfig

__all__ = ["CONFIGS", "LITE0_DEFAULT", "PAPER_VITB16", "VIT_TINY", "ModelConfig", "MLAGT", "l2_distance"]


def __getattr__(name: str):
    if name in ("MLAGT", "l2_distance"):
        from . import network

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
