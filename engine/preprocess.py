"""Preprocessing of sketches and images, as the paper's code does it.

Images: RGB, resized to size x size, scaled to [0, 1], normalised by the model's mean/std.
Sketches: converted to dark ink on white, cropped to the box of ink pixels (RGB sum <= 300) padded
by 10 px, resized so the longer side is `size` keeping the aspect, padded with white to a square.

The work is done in NumPy and PIL (`prepare_sketch`, `prepare_image` give float32 (3, S, S)
arrays), so the ONNX Runtime search path runs without PyTorch; `preprocess_sketch` and
`preprocess_image` wrap them as torch tensors for the PyTorch path and training.
"""
from __future__ import annotations

import io
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np
from PIL import Image, ImageFilter

if TYPE_CHECKING:
    import torch

ImageLike = Union[str, Path, bytes, np.ndarray, Image.Image]

INK_RGB_SUM = 300  # official threshold: a pixel is ink when R + G + B <= 300
CROP_MARGIN = 10

# Image files larger than this are refused before decoding (256 Mpx, e.g. 16384 x 16384 px: about
# 1 GiB of RGBA while decoding); PIL's own bomb check (a warning at 89 Mpx, an error at 179 Mpx) is
# replaced by this limit for our opens only.
MAX_FILE_PIXELS = 1 << 28
# Files with a longer side than this are shrunk right after opening (JPEG while decoding, others by
# an integer box reduction): a sketch ends up at the model's input size (160-224 px), so the detail
# lost cannot matter, and an ordinary file (up to 4096 px) is read exactly as before.
WORK_SIDE = 4096


class SketchError(ValueError):
    """A sketch that cannot be used; the message is one line meant for the user."""


class EmptySketchError(SketchError):
    """The sketch has no strokes."""


class ImageTooLargeError(SketchError):
    """An image file with more pixels than MAX_FILE_PIXELS."""


_open_lock = threading.Lock()  # PIL's bomb limit is a module global: raise it for one open at a time


def _open_file(source: Path | bytes, label: str) -> Image.Image:
    """Open an image file (or its bytes) of any size up to MAX_FILE_PIXELS, shrunk to WORK_SIDE.
    Returns a loaded PIL image in its own mode."""
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    with _open_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # no DecompressionBombWarning/Error: our own limit follows
        try:
            im = Image.open(fp)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    w, h = im.size
    if w * h > MAX_FILE_PIXELS:
        im.close()
        raise ImageTooLargeError(f"{label} is {w} x {h} px ({w * h / 1e6:.0f} Mpx), more than the "
                                 f"{MAX_FILE_PIXELS / 1e6:.0f} Mpx an image may have: scale it down and try again")
    factor = math.ceil(max(w, h) / WORK_SIDE)
    if factor > 1 and im.format == "JPEG":
        im.draft(im.mode, (w // factor, h // factor))  # DCT scaling: decodes at 1/2, 1/4 or 1/8 size
    im.load()
    factor = math.ceil(max(im.size) / WORK_SIDE)
    if factor > 1:
        if im.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
            im = im.convert("RGBA" if im.mode in ("P", "PA") else "L")  # 1-bit and palette files
        im = im.reduce(factor)
    return im


def load_array(source: ImageLike) -> np.ndarray:
    """Any image-like input (a path, a file's bytes, a PIL image, an array) -> uint8 array (H, W, 3)
    or (H, W, 4). Files of any size up to MAX_FILE_PIXELS are accepted, larger than WORK_SIDE
    shrunk while reading; larger ones are refused with ImageTooLargeError."""
    if isinstance(source, (str, Path, bytes)):
        label = "image data" if isinstance(source, bytes) else Path(source)
        if not isinstance(source, bytes) and not Path(source).is_file():
            raise FileNotFoundError(f"image file not found: {source}")
        try:
            im = _open_file(source if isinstance(source, bytes) else Path(source), str(label))
            with im:
                source = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P", "PA") else "RGB")
        except (OSError, Image.DecompressionBombError, SyntaxError) as exc:
            raise ValueError(f"cannot read image {label}: {exc}") from None
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


def normalise(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, H, W) scaled to [0, 1] and normalised (all in float32, so the
    result is bit-identical to the same steps in PyTorch)."""
    x = np.ascontiguousarray(np.asarray(rgb, np.uint8).transpose(2, 0, 1)).astype(np.float32) / np.float32(255.0)
    return (x - np.asarray(mean, np.float32).reshape(3, 1, 1)) / np.asarray(std, np.float32).reshape(3, 1, 1)


def normalise_batch(images: np.ndarray, mean: Sequence[float], std: Sequence[float],
                    channels_last: bool = False) -> np.ndarray:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W), bit-identical to `normalise` per image but several
    times faster: each channel's 256 possible results are computed once (with the same float32
    steps) and looked up. channels_last: the same values as a (B, H, W, 3) array (what a
    channels-last CNN reads; `.transpose(0, 3, 1, 2)` gives the (B, 3, H, W) view)."""
    images = np.asarray(images, np.uint8)
    lut = (np.arange(256, dtype=np.float32)[None] / np.float32(255.0)
           - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]
    uniform = bool((lut == lut[0]).all())  # one table serves all channels (mean = std = 0.5...)
    if channels_last:
        if uniform:
            return np.take(lut[0], images)
        out = np.empty(images.shape, np.float32)
        for c in range(3):
            out[..., c] = np.take(lut[c], images[..., c])
        return out
    planar = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    if uniform:
        return np.take(lut[0], planar)
    out = np.empty(planar.shape, np.float32)
    for c in range(3):
        out[:, c] = np.take(lut[c], planar[:, c])
    return out


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


def sketch_canvas(source: ImageLike, size: int = 224, widen: int = 1) -> np.ndarray:
    """One sketch -> the uint8 (size, size, 3) square the model sees. Raises EmptySketchError without strokes.

    `widen` (odd, >= 1) thickens the strokes with a widen x widen minimum filter after the sketch is
    shrunk to `size`: a thin pen stroke shrinks to a faint pixel-wide line there, which features
    trained on photographs barely respond to (the model card's `sketch_widen`, BENCHMARKS.md)."""
    rgb = sketch_on_white(source)
    ink = ink_mask(rgb)
    if not ink.any():
        raise EmptySketchError("the sketch is empty: draw at least one dark stroke (or give strokes on transparency)")
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    h, w = ink.shape
    # the official crop ends CROP_MARGIN px past the last ink row/column, exclusive
    top, bottom = max(rows[0] - CROP_MARGIN, 0), min(rows[-1] + CROP_MARGIN, h)
    left, right = max(cols[0] - CROP_MARGIN, 0), min(cols[-1] + CROP_MARGIN, w)
    crop = Image.fromarray(rgb[top:bottom, left:right])
    scale = size / max(crop.size)
    new_w, new_h = max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale))
    crop = crop.resize((new_w, new_h), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(crop, ((size - new_w) // 2, (size - new_h) // 2))
    if widen > 1:
        canvas = canvas.filter(ImageFilter.MinFilter(widen))  # dark strokes on white: min widens them
    return np.asarray(canvas)


def prepare_sketch(source: ImageLike, size: int = 224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                   widen: int = 1) -> np.ndarray:
    """One sketch -> normalised float32 (3, size, size) array. Raises EmptySketchError without strokes."""
    return normalise(sketch_canvas(source, size, widen), mean, std)


def prepare_image(source: ImageLike, size: int = 224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> np.ndarray:
    """One image -> normalised float32 (3, size, size) array."""
    arr = load_array(source)[:, :, :3]
    if arr.shape[0] != size or arr.shape[1] != size:
        arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR))
    return normalise(arr, mean, std)


def dihedral_views(batch: np.ndarray, views: int) -> np.ndarray:
    """(B, C, S, S) -> (B * views, C, S, S): each input followed by its rotations by 90, 180, 270
    degrees, then (views == 8) the same four of its mirror image (the mirror flips the last axis)."""
    out = []
    for image in batch:
        for k in range(views):
            turned = np.rot90(image, k % 4, axes=(1, 2))
            out.append(np.flip(turned, axis=2) if k >= 4 else turned)
    return np.ascontiguousarray(np.stack(out))


def preprocess_sketch(source: ImageLike, size: int = 224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                      widen: int = 1) -> "torch.Tensor":
    """prepare_sketch as a torch tensor (the PyTorch path and training)."""
    import torch

    return torch.from_numpy(prepare_sketch(source, size, mean, std, widen))


def preprocess_image(source: ImageLike, size: int = 224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> "torch.Tensor":
    """prepare_image as a torch tensor (the PyTorch path and training)."""
    import torch

    return torch.from_numpy(prepare_image(source, size, mean, std))
