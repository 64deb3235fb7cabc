"""Multi-level tokenizers: turn a normalised image batch into a grid of patch tokens.

Both produce (B, grid*grid, width) tokens, flattened row-major like the official code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class ConvTokenizer(nn.Module):
    """The paper's tokenizer: patch embedding averaged with a four-conv multi-level stack."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.patch_size != 16:
            raise ValueError("the conv tokenizer's multi-level stack has stride 16; patch_size must be 16")
        self.proj = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size)  # timm: patch_embed.proj
        self.multilevel = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(128, 256, 3, stride=2, padding=1, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(256, cfg.width, 3, stride=2, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = (self.proj(x) + self.multilevel(x)) / 2
        return grid.flatten(2).transpose(1, 2)


class TimmTrunkTokenizer(nn.Module):
    """A pretrained timm CNN's feature maps at several strides, each projected to `width` by a 1x1
    conv, resampled to the token grid and averaged: multi-level tokens with pretrained features."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        import timm  # imported here: the conv tokenizer does not need it

        self.trunk = timm.create_model(cfg.trunk, pretrained=False, features_only=True,
                                       out_indices=cfg.trunk_levels)
        channels = self.trunk.feature_info.channels()
        self.level_proj = nn.ModuleList(nn.Conv2d(c, cfg.width, 1) for c in channels)
        self.grid = cfg.grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.trunk(x))

    def project(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """Trunk feature maps (one per level) -> tokens; separate so training can feed cached maps."""
        out = 0
        for feat, proj in zip(levels, self.level_proj):
            feat = proj(feat)
            if feat.shape[-1] != self.grid:
                # area pooling for finer levels, bilinear for coarser ones
                feat = (F.adaptive_avg_pool2d(feat, self.grid) if feat.shape[-1] > self.grid
                        else F.interpolate(feat, size=(self.grid, self.grid), mode="bilinear", align_corners=False))
            out = out + feat
        return (out / len(levels)).flatten(2).transpose(1, 2)


def build_tokenizer(cfg: ModelConfig) -> nn.Module:
    return ConvTokenizer(cfg) if cfg.tokenizer == "conv" else TimmTrunkTokenizer(cfg)
