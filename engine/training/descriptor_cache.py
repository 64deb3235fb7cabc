"""The fusion partner's vectors for every cached training pair, computed once.

When a run trains against the fused stage-1 score (`fused_infonce`), the loss needs the pretrained
descriptor (e.g. GeM-pooled Lite0) of each cached sketch and image. The descriptor is fixed, so it is
computed once from the cached output of the frozen trunk prefix (identical to the pretrained
network's, since the prefix is never trained) and stored beside the feature cache.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..model.retrieval import build_descriptor
from .cache import FeatureCache

log = logging.getLogger(__name__)


@torch.inference_mode()
def descriptor_vectors(cache: FeatureCache, name: str, start_block: int, folder: Path,
                       batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(sketch, image) unit vectors (N, D) of descriptor `name` for every pair; cached in `folder`."""
    path = folder / f"descriptor_{name}.npz"
    if path.is_file():
        saved = np.load(path)
        if len(saved["sketch"]) == len(cache):
            return torch.from_numpy(saved["sketch"]).float(), torch.from_numpy(saved["image"]).float()
        log.info("descriptor cache %s does not match the feature cache: recomputing", path)
    net = build_descriptor(name)
    out = {}
    for side, levels in (("sketch", cache.sketch_levels[-1]), ("image", cache.image_levels[-1])):
        parts = [F.normalize(net.from_block(levels[i:i + batch].float(), start_block), dim=-1)
                 for i in range(0, len(levels), batch)]
        out[side] = torch.cat(parts).half().numpy()
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    log.info("descriptor cache: %s for %d pairs", name, len(cache))
    return torch.from_numpy(out["sketch"]).float(), torch.from_numpy(out["image"]).float()
