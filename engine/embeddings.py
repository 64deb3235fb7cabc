"""What an encoder returns, shared by the PyTorch (`engine.embedder`) and ONNX Runtime
(`engine.onnx_embedder`) paths; importing it needs no torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Embeddings:
    cls: np.ndarray  # (B, D) float32, L2-normalised: the stage-1 vectors
    tokens: Any = None  # torch.Tensor (B, N, D) on the CPU, for stage 2 (None unless asked for; PyTorch path only)
