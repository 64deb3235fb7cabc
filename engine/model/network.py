"""The MLAGT network: a shared self-attention encoder for sketches and images, plus the
cross-attention module that scores sketch-image token pairs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .cross_attention import CrossAttention
from .encoder import Encoder


class MLAGT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.cross = CrossAttention(cfg.width, cfg.ca_heads, cfg.ca_ff_dim)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, S, S) -> encoder tokens (B, 1 + kept patches, width), CLS first
        (timm's name for the tokens before any pooling)."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    @staticmethod
    def global_vector(tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, width) -> the global vector of each row (B, width): the CLS token, which
        stage 1 ranks by."""
        return tokens[:, 0]

    def cross_cls(self, sketch_tokens: torch.Tensor, image_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CLS rows of both sides after cross attention, for pairs (sketch_tokens[i], image_tokens[i])."""
        s, i = self.cross(sketch_tokens, image_tokens)
        return self.global_vector(s), self.global_vector(i)


def l2_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise L2 distance between L2-normalised vectors (the official retrieval distance)."""
    return (F.normalize(a, dim=-1) - F.normalize(b, dim=-1)).norm(dim=-1)
