"""The cross-attention module exactly as the published MLAGT code computes it.

Each side is one layer: x = Norm(v + MHA(q, k, v)); x = Norm(x + W2 ReLU(W1 x)). For the sketch
q = v = sketch tokens and k = image tokens; for the image the roles swap. Both sides read the
inputs before either is updated, so both need the same token count.
"""
from __future__ import annotations

import torch
from torch import nn


class OfficialNorm(nn.Module):
    """m * (x - mean) / (std + eps) + n with the unbiased std (not nn.LayerNorm)."""

    def __init__(self, width: int, eps: float = 1e-6):
        super().__init__()
        self.m = nn.Parameter(torch.ones(width))
        self.n = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        return self.m * (x - mean) / (x.std(-1, keepdim=True) + self.eps) + self.n


class CrossAttentionLayer(nn.Module):
    def __init__(self, width: int, heads: int, ff_dim: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(width, width) for _ in range(4))
        self.w1 = nn.Linear(width, ff_dim)
        self.w2 = nn.Linear(ff_dim, width)
        self.norm_attn = OfficialNorm(width)
        self.norm_ff = OfficialNorm(width)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, N, C = q.shape
        split = lambda t: t.reshape(B, -1, self.heads, C // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(q)), split(self.k(k)), split(self.v(v))
        mixed = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out(mixed.transpose(1, 2).reshape(B, N, C))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        x = self.norm_attn(v + self.attend(q, k, v))
        return self.norm_ff(x + self.w2(torch.relu(self.w1(x))))


class CrossAttention(nn.Module):
    def __init__(self, width: int, heads: int, ff_dim: int):
        super().__init__()
        self.sketch_layer = CrossAttentionLayer(width, heads, ff_dim)
        self.image_layer = CrossAttentionLayer(width, heads, ff_dim)

    def forward(self, sketch: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token batches of equal shape -> (sketch tokens, image tokens) after cross attention."""
        if sketch.shape != image.shape:
            raise ValueError(f"cross attention needs equal token shapes, got {tuple(sketch.shape)} "
                             f"and {tuple(image.shape)}")
        return self.sketch_layer(sketch, image, sketch), self.image_layer(image, sketch, image)
