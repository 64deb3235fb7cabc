"""What stage 1 computes from a batch of images, in one place for the PyTorch embedder and the ONNX
export: the model's encoder tokens and, under fusion, the descriptor's global vector (and, under a
drawing_weight, the descriptor's vector of each tile drawn as a sketch).

A descriptor registered with `shared_from` continues from the output of that module of the model's
own trunk (its frozen early blocks, the same ImageNet weights) instead of running those blocks on the
image a second time: about 0.3 GFLOP less per tile for the Lite0 GeM partner (BENCHMARKS.md). Those
blocks are frozen in training (`freeze_upto` 4); a run that trained them would change the partner too,
consistently for sketches and tiles, but it would no longer be the ImageNet descriptor.
"""
from __future__ import annotations

import torch
from torch import nn

from .retrieval import FUSION_DESCRIPTORS
from .tile_drawing import draw_tiles


class SharedTrunkError(ValueError):
    """The model's trunk does not expose the feature map a shared descriptor continues from."""


def shared_level(model: nn.Module, descriptor_name: str) -> int | None:
    """Index, among the model's trunk levels, of the map the descriptor continues from; None when the
    descriptor reads the image itself. Raises SharedTrunkError when the model lacks that map."""
    shared_from = FUSION_DESCRIPTORS[descriptor_name].shared_from
    if shared_from is None:
        return None
    trunk = getattr(model.encoder.tokenizer, "trunk", None)
    names = trunk.feature_info.module_name() if trunk is not None else []
    if shared_from not in names or getattr(model.cfg, "trunk", None) != "efficientnet_lite0":
        raise SharedTrunkError(f"the descriptor {descriptor_name} continues from {shared_from} of an "
                               f"efficientnet_lite0 trunk; this model's trunk levels are {names or 'none'}")
    return names.index(shared_from)


def stage1_outputs(model: nn.Module, descriptor: nn.Module | None, level: int | None,
                   images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Normalised images (B, 3, S, S) -> (encoder tokens, descriptor vector or None). `level` is
    `shared_level(...)`: with it the trunk runs once and the descriptor continues from that map."""
    if descriptor is None:
        return model.forward_features(images), None
    if level is None:
        return model.forward_features(images), descriptor(images)
    tokenizer = model.encoder.tokenizer
    maps = tokenizer.trunk(images)
    tokens = model.encoder.encode_tokens(tokenizer.project(maps))
    block = int(tokenizer.trunk.feature_info.module_name()[level].split(".")[1])  # "blocks.4" -> 4
    if hasattr(descriptor, "from_shared"):  # a pair: its second descriptor reads the image
        return tokens, descriptor.from_shared(images, maps[level], block + 1)
    return tokens, descriptor.from_block(maps[level], block + 1)


def drawing_vector(descriptor: nn.Module, images: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised tiles (B, 3, S, S) -> the descriptor of each tile drawn as a sketch
    (engine.model.tile_drawing): the full pretrained network, since a drawing shares no blocks with the photo."""
    return descriptor(draw_tiles(images, mean, std))
