"""Synthetic hand-drawn sketches from aerial images.

Real Earth-on-Canvas sketches are thin dark outlines of the main objects on a white 256 x 256
sheet: closed shapes, little texture, wobbly lines of one pen width, sometimes only part of the
scene drawn. This generator imitates that: smooth the image (simplification), find edges, drop
short fragments (texture) and a random share of what is left (missing strokes), optionally keep
only a window of the scene, redraw the remaining contours as simplified, jittered polylines with
one random pen width, add a few stray strokes, and distort the whole sheet slightly. With
`salient_prob`, a sketch keeps only the few longest outlines instead: people draw the main objects of
a scene, not everything Canny finds.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CANVAS = 256  # the size of the real sketches
INK_GREY = 100  # engine.preprocess counts R+G+B <= 300 as ink


@dataclass(frozen=True)
class SketchStyle:
    """Ranges the random style is drawn from (each a (low, high) pair)."""
    blur_sigma: tuple[float, float] = (0.8, 2.5)
    edge_fraction: tuple[float, float] = (0.04, 0.12)  # share of pixels Canny may mark as edge
    min_fragment: tuple[int, int] = (10, 40)  # shortest kept edge fragment, pixels at CANVAS size
    drop_share: tuple[float, float] = (0.0, 0.3)  # missing strokes
    simplify_px: tuple[float, float] = (0.8, 3.0)  # polygon simplification tolerance
    jitter_px: tuple[float, float] = (0.0, 1.5)  # hand tremor per vertex
    pen_px: tuple[int, int] = (1, 3)  # stroke width
    window_prob: float = 0.3  # draw only part of the scene
    extra_prob: float = 0.3  # a few stray strokes
    warp_deg: float = 6.0  # overall rotation wobble
    salient_prob: float = 0.0  # draw only the longest few outlines (the main objects), no window
    salient_parts: tuple[int, int] = (1, 4)  # how many outlines such a sketch keeps


def _rand(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def edge_map(gray: np.ndarray, sigma: float, fraction: float) -> np.ndarray:
    """Canny edges with thresholds set so that about `fraction` of pixels pass the high one."""
    smooth = cv2.GaussianBlur(gray, (0, 0), sigma)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    high = float(np.quantile(mag, 1.0 - fraction))
    if high <= 0:
        return np.zeros_like(gray)
    return cv2.Canny(smooth, 0.5 * high, high, L2gradient=True)


def keep_fragments(edges: np.ndarray, min_size: int, drop_share: float, window: tuple[int, int, int, int] | None,
                   rng: np.random.Generator) -> np.ndarray:
    """Remove short fragments, a random share of the rest, and those outside `window` (x0, y0, x1, y1)."""
    n, labels, stats, centroids = cv2.connectedComponentsWithStats((edges > 0).astype(np.uint8), connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    keep = sizes >= min_size
    if window is not None:
        x0, y0, x1, y1 = window
        cx, cy = centroids[1:, 0], centroids[1:, 1]
        keep &= (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
    keep &= rng.random(len(sizes)) >= drop_share
    if not keep.any() and len(sizes):
        keep[np.argmax(sizes)] = True  # never return an empty sheet when there was anything to draw
    lut = np.concatenate([[0], keep.astype(np.uint8)])
    return (lut[labels] * 255).astype(np.uint8)


def longest_fragments(edges: np.ndarray, count: int) -> np.ndarray:
    """Only the `count` largest connected edge fragments."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((edges > 0).astype(np.uint8), connectivity=8)
    keep = np.zeros(n, np.uint8)
    keep[1 + np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable")[:count]] = 1
    return (keep[labels] * 255).astype(np.uint8)


def _line_type(pen: int) -> int:
    # anti-aliased one-pixel lines are grey, lighter than the preprocessing's ink threshold
    return cv2.LINE_AA if pen > 1 else cv2.LINE_8


def draw_strokes(edges: np.ndarray, simplify: float, jitter: float, pen: int, rng: np.random.Generator) -> np.ndarray:
    """Redraw edge fragments as simplified, jittered open polylines on white."""
    sheet = np.full(edges.shape, 255, np.uint8)
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    for c in contours:
        # a contour of a one-pixel-wide fragment walks it out and back: draw only the outward half
        pts = c[: max(2, (len(c) + 1) // 2)] if len(c) > 4 else c
        pts = cv2.approxPolyDP(pts, simplify, closed=False).reshape(-1, 2).astype(np.float32)
        if jitter > 0:
            pts += rng.normal(0.0, jitter, pts.shape).astype(np.float32)
        cv2.polylines(sheet, [np.round(pts).astype(np.int32)], False, 0, pen, lineType=_line_type(pen))
    return sheet


def stray_strokes(sheet: np.ndarray, count: int, pen: int, rng: np.random.Generator) -> None:
    h, w = sheet.shape
    for _ in range(count):
        p0 = rng.uniform(0, [w, h])
        p1 = p0 + rng.normal(0, w / 8, 2)
        cv2.line(sheet, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 0, pen, lineType=_line_type(pen))


def synth_sketch(image: np.ndarray, rng: np.random.Generator, style: SketchStyle = SketchStyle(),
                 valid: np.ndarray | None = None) -> np.ndarray:
    """An RGB uint8 image (H, W, 3) -> a synthetic sketch: (256, 256, 3) uint8, dark strokes on white.

    `valid` (H, W bool) marks real image pixels; edges along its border (e.g. black corners of a
    rotated tile) are not drawn.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    gray = cv2.cvtColor(cv2.resize(image, (CANVAS, CANVAS), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    inside = None
    if valid is not None:
        inside = cv2.resize(valid.astype(np.uint8), (CANVAS, CANVAS), interpolation=cv2.INTER_NEAREST)
        inside = cv2.erode(inside, np.ones((7, 7), np.uint8)) > 0
    # featureless scenes (desert, calm water) may leave nothing: retry with laxer settings
    for attempt in range(3):
        sheet = _draw(gray, inside, rng, style, laxness=2.0 ** attempt)
        if (sheet <= INK_GREY).any():
            break
    else:
        cv2.rectangle(sheet, (16, 16), (CANVAS - 17, CANVAS - 17), 0, 2)  # an outline of the scene itself
    angle = rng.uniform(-style.warp_deg, style.warp_deg)
    matrix = cv2.getRotationMatrix2D((CANVAS / 2, CANVAS / 2), angle, rng.uniform(0.9, 1.05))
    sheet = cv2.warpAffine(sheet, matrix, (CANVAS, CANVAS), flags=cv2.INTER_NEAREST, borderValue=255)
    return np.repeat(sheet[:, :, None], 3, axis=2)


def _draw(gray: np.ndarray, inside: np.ndarray | None, rng: np.random.Generator, style: SketchStyle,
          laxness: float) -> np.ndarray:
    edges = edge_map(gray, _rand(rng, style.blur_sigma), min(0.5, _rand(rng, style.edge_fraction) * laxness))
    if inside is not None:
        edges[~inside] = 0
    window = None
    # drawn only when asked for, so the default style's random stream (and v3's training set) is unchanged
    salient = style.salient_prob > 0 and rng.random() < style.salient_prob
    if not salient and rng.random() < style.window_prob and laxness == 1.0:
        side = int(CANVAS * rng.uniform(0.4, 0.8))
        x0, y0 = (int(v) for v in rng.integers(0, CANVAS - side + 1, 2))
        window = (x0, y0, x0 + side, y0 + side)
    min_size = max(2, int(rng.integers(*style.min_fragment, endpoint=True) / laxness))
    edges = keep_fragments(edges, min_size, 0.0 if salient else _rand(rng, style.drop_share), window, rng)
    if salient:
        edges = longest_fragments(edges, int(rng.integers(*style.salient_parts, endpoint=True)))
    pen = int(rng.integers(*style.pen_px, endpoint=True))
    sheet = draw_strokes(edges, _rand(rng, style.simplify_px), _rand(rng, style.jitter_px), pen, rng)
    if rng.random() < style.extra_prob:
        stray_strokes(sheet, int(rng.integers(1, 4)), pen, rng)
    return sheet
