"""Splitting the tokenizer's CNN trunk into a frozen prefix and a trained suffix.

On a small CPU most of a training step goes into the early, high-resolution trunk blocks. Kept at
their pretrained values, their outputs for every training view can be computed once and cached;
training then runs only the suffix blocks, the level projections, the transformer and the cross
attention. The prefix computes exactly what the full model computes at inference (BatchNorm is in
eval mode), so the trained model needs no change to be used.
"""
from __future__ import annotations

import torch
from torch import nn

from ..model import MLAGT


def level_blocks(model: MLAGT) -> list[int]:
    """Index of the trunk block after which each token level is taken (timm feature_info)."""
    trunk = model.encoder.tokenizer.trunk
    return [int(m.split(".")[1]) for m in trunk.feature_info.module_name()]


def check_split(model: MLAGT, upto: int) -> list[int]:
    """Levels computed inside the prefix; the split must fall on a level so the suffix starts from one."""
    if model.cfg.tokenizer != "timm":
        raise ValueError("the frozen-prefix cache needs a model with a timm trunk tokenizer")
    blocks = level_blocks(model)
    if upto not in blocks:
        raise ValueError(f"freeze_upto must be one of the level blocks {blocks}, got {upto}")
    return [i for i, b in enumerate(blocks) if b <= upto]


def freeze_prefix(model: MLAGT, upto: int) -> None:
    """Stop gradients into the stem and blocks 0..upto; keep every trunk BatchNorm in eval mode."""
    trunk = model.encoder.tokenizer.trunk
    for name, p in trunk.named_parameters():
        if name.startswith(("conv_stem", "bn1")) or (name.startswith("blocks.") and int(name.split(".")[1]) <= upto):
            p.requires_grad_(False)
    trunk_bn_eval(model)


def trunk_bn_eval(model: MLAGT) -> None:
    for m in model.encoder.tokenizer.trunk.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.no_grad()
def prefix_levels(model: MLAGT, x: torch.Tensor, upto: int) -> list[torch.Tensor]:
    """Normalised images -> the feature maps of the levels inside the prefix (last = block `upto` output)."""
    trunk = model.encoder.tokenizer.trunk
    wanted = set(level_blocks(model))
    x = trunk.bn1(trunk.conv_stem(x))
    out = []
    for i, block in enumerate(trunk.blocks[:upto + 1]):
        x = block(x)
        if i in wanted:
            out.append(x)
    return out


def tokens_from_prefix(model: MLAGT, levels: list[torch.Tensor], upto: int) -> torch.Tensor:
    """Cached prefix levels -> encoder output tokens, running the suffix blocks with gradients."""
    trunk = model.encoder.tokenizer.trunk
    wanted = set(level_blocks(model))
    x, levels = levels[-1], list(levels)
    for i in range(upto + 1, len(trunk.blocks)):
        x = trunk.blocks[i](x)
        if i in wanted:
            levels.append(x)
    return model.encoder.encode_tokens(model.encoder.tokenizer.project(levels))
