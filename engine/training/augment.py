"""Image augmentation for training pairs: the views the gallery side will meet.

The UC Merced copies used for evaluation are rotated and colour-jittered by a third party, with
black corners; AID tiles are not. So training views get right-angle turns and flips, a crop,
colour jitter, and sometimes a free rotation with black corners. The synthetic sketch is drawn
from the same view, so the pair stays aligned.
"""
from __future__ import annotations

import cv2
import numpy as np


def augment_view(image: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 -> (view (size, size, 3) uint8, valid (size, size) bool: not a black corner)."""
    h, w = image.shape[:2]
    scale = rng.uniform(0.6, 1.0)
    ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    view = cv2.resize(image[y0:y0 + ch, x0:x0 + cw], (size, size), interpolation=cv2.INTER_AREA)
    view = np.rot90(view, int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        view = view[:, ::-1]
    view = np.ascontiguousarray(view)
    valid = np.ones((size, size), bool)
    if rng.random() < 0.3:
        m = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-45, 45), 1.0)
        view = cv2.warpAffine(view, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        valid = cv2.warpAffine(valid.astype(np.uint8), m, (size, size), flags=cv2.INTER_NEAREST, borderValue=0) > 0
    return jitter_colour(view, rng), valid


def jitter_colour(view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation jitter of about +-20 %."""
    f = view.astype(np.float32)
    grey = f.mean(axis=2, keepdims=True)
    f = grey + (f - grey) * rng.uniform(0.7, 1.3)  # saturation
    f = f.mean() + (f - f.mean()) * rng.uniform(0.8, 1.2)  # contrast
    f = f * rng.uniform(0.8, 1.2)  # brightness
    return np.clip(f, 0, 255).astype(np.uint8)
