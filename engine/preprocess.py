"""Preprocessing of sketches and images, as the paper's code does it.

Images: RGB, resized to size x size, scaled to [0, 1], normalised by the model's mean/std.
Sketches: converted to dark ink on white, cropped to the box of ink pixels (RGB sum <= 300) padded
by 10 px, resized so the longer side is `size` keeping the aspect, padded with white to a square.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

ImageLike = Union[str, Path, np.ndarray, Image.Image]

INK_RGB_SUM = 300  # official threshold: a pixel is ink when R + G + B <= 300
CROP_MARGIN = 10


class EmptySketchError(ValueError):
    """The sketch has no strokes."""


def load_array(source: ImageLike) -> np.ndarray:
    """Any image-like input -> uint8 array (H, W, 3) or (H, W, 4)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            with Image.open(path) as im:
                source = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P", "PA") else "RGB")
        except OSError as exc:
            raise ValueError(f"cannot read image {path}: {exc}") from None
    if isinstance(source, Image.Image):
        source = np.asarray(source.convert("RGBA" if source.mode in ("RGBA", "LA", "PA") else "RGB"))
    arr = np.asarray(source)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W, H x W x 3 or H x W x 4 image, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image has no pixels: shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    return arr


def sketch_on_white(source: ImageLike) -> np.ndarray:
    """A sketch in any common form -> dark strokes on a white RGB background (uint8, H x W x 3).

    RGBA with real transparency: the alpha channel is the ink (white-on-transparent and
    black-on-transparent both work). RGB: a mostly dark picture is taken as light strokes on dark
    and inverted.
    """
    arr = load_array(source)
    if arr.shape[2] == 4:
        alpha = arr[:, :, 3]
        if alpha.min() < 255:
            grey = 255 - alpha
            return np.repeat(grey[:, :, None], 3, axis=2)
        arr = arr[:, :, :3]
    if np.median(arr.astype(np.float32).mean(axis=2)) < 128:
        arr = 255 - arr
    return np.ascontiguousarray(arr)


def _normalise(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    t = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).float().div_(255.0)
    return (t - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def ink_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels that are strokes. The official rule (R + G + B <= 300) misses faint pencil-grey
    strokes (several real Earth-on-Canvas sketches have none or a handful of such pixels, and the
    crop then collapses onto noise). When it finds less than half of the pixels darker than halfway
    between the paper and the darkest stroke, that halfway level is used instead."""
    total = rgb.astype(np.int32).sum(axis=2)
    official = total <= INK_RGB_SUM
    paper = int(np.median(total))
    halfway = (int(total.min()) + paper) // 2
    if halfway <= INK_RGB_SUM or paper - int(total.min()) < 60:  # dark strokes, or no contrast at all
        return official
    faint = total <= halfway
    return official if official.sum() >= 0.5 * faint.sum() else faint


def preprocess_sketch(source: ImageLike, size: int = 224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> torch.Tensor:
    """One sketch -> normalised (3, size, size) tensor. Raises EmptySketchError without strokes."""
    rgb = sketch_on_white(source)
    ink = ink_mask(rgb)
    if not ink.any():
        raise EmptySketchError("the sketch is empty: draw at least one dark stroke (or give strokes on transparency)")
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    h, w = ink.shape
    # the official crop ends 10 px past the last ink row/column, exclusive
    # the official crop ends CROP_MARGIN px past the last ink row/column, exclusive
    top, bottom = max(rows[0] - CROP_MARGIN, 0), min(rows[-1] + CROP_MARGIN, h)
    left, right = max(cols[0] - CROP_MARGIN, 0), min(cols[-1] + CROP_MARGIN, w)
    crop = Image.fromarray(rgb[top:bottom, left:right])
    scale = size / max(crop.size)
    new_w, new_h = max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale))
    crop = crop.resize((new_w, new_h), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(crop, ((size - new_w) // 2, (size - new_h) // 2))
    return _normalise(np.asarray(canvas), mean, std)


def preprocess_image(source: ImageLike, size: int = 224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> torch.Tensor:
    """One image -> normalised (3, size, size) tensor."""
    arr = load_array(source)[:, :, :3]
    if arr.shape[0] != size or arr.shape[1] != size:
        arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR))
    return _normalise(arr, mean, std)
