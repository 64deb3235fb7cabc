"""A tile drawn as a sketch: its strongest edges in black on white.

A sketch and an aerial photo are far apart for any image network; a sketch and a drawing of the
photo's outlines are much closer. Under a card's `drawing_weight` (engine.model.retrieval), each tile
is also drawn this way and its drawing described by the fusion descriptor, which the sketch's own
descriptor is then compared with. Chosen on the validation sketches (BENCHMARKS.md, "Drawn tiles").

How it is drawn, on the normalised tile at the model's input size: grey level, Gaussian blur
(sigma BLUR_SIGMA pixels), Sobel gradient magnitude, and the EDGE_SHARE of pixels with the strongest
gradient inked. Plain convolutions, a top-k and a comparison: the same arithmetic runs in PyTorch and
in the exported ONNX graph, on CPU or GPU, with no image library. Importing this module needs no torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch

BLUR_SIGMA = 1.5  # pixels at the model's input size (160 px for the default model)
EDGE_SHARE = 0.12  # share of a tile's pixels drawn as ink
# Part of index keys (through engine.model.retrieval.Fusion.key): a change to how tiles are drawn
# must come with a new name, or old indexes would be searched with vectors of another kind.
DRAWING_NAME = f"sobel-blur{BLUR_SIGMA}-top{EDGE_SHARE}"


def _gaussian(sigma: float) -> "torch.Tensor":
    import torch

    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return kernel / kernel.sum()


def draw_tiles(images: "torch.Tensor", mean: Sequence[float], std: Sequence[float]) -> "torch.Tensor":
    """Normalised tiles (B, 3, S, S) -> their drawings (B, 3, S, S), normalised the same way: white
    paper, black ink on the EDGE_SHARE strongest edges. A featureless tile gives blank paper."""
    import torch
    import torch.nn.functional as F

    m = torch.tensor(list(mean), dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(list(std), dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    grey = (images * s + m).mean(1, keepdim=True)
    k = _gaussian(BLUR_SIGMA).to(images.device, images.dtype)
    r = len(k) // 2
    grey = F.conv2d(F.pad(grey, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    grey = F.conv2d(F.pad(grey, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=images.dtype,
                         device=images.device).view(1, 1, 3, 3)
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(padded, sobel), F.conv2d(padded, sobel.transpose(2, 3))
    magnitude = torch.sqrt(gx * gx + gy * gy)
    flat = magnitude.flatten(1)
    k_top = max(1, int(EDGE_SHARE * flat.shape[1]))
    threshold = torch.topk(flat, k_top, dim=1).values[:, -1].view(-1, 1, 1, 1)
    ink = ((magnitude >= threshold) & (magnitude > 1e-6)).to(images.dtype)
    return ((1.0 - ink) - m) / s
