"""Sketch and image preprocessing: forms of sketches, odd sizes, empty sketches."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.preprocess import EmptySketchError, load_array, preprocess_image, preprocess_sketch, sketch_on_white


def _strokes(size=(300, 180), ink=(0, 0, 0), paper=(255, 255, 255), mode="RGB"):
    im = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(im)
    draw.line([(40, 30), (250, 150)], fill=ink, width=6)
    draw.ellipse([(100, 40), (180, 120)], outline=ink, width=4)
    return im


def test_black_on_white_white_on_transparent_and_inverted_agree():
    ref = preprocess_sketch(_strokes())
    transparent = _strokes(ink=(255, 255, 255, 255), paper=(0, 0, 0, 0), mode="RGBA")
    inverted = _strokes(ink=(255, 255, 255), paper=(0, 0, 0))
    for other in (transparent, inverted, np.asarray(transparent), np.asarray(_strokes()).astype(np.float32) / 255):
        assert (preprocess_sketch(other) - ref).abs().mean() < 0.01


def test_sketch_is_cropped_scaled_and_centred():
    t = preprocess_sketch(_strokes(size=(1000, 400)), size=224)
    assert t.shape == (3, 224, 224)
    ink = (t.mean(0) < 0).numpy()
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    assert cols[0] < 20 and cols[-1] > 204  # the longer side fills the square (less the 10 px margin)
    assert abs((rows[0] + rows[-1]) / 2 - 111.5) < 4  # centred vertically
    assert t.min() >= -1 and t.max() <= 1


@pytest.mark.parametrize("shape", [(5, 500), (700, 3), (9, 9)])
def test_odd_sizes(shape):
    arr = np.full(shape, 255, np.uint8)
    arr[shape[0] // 2, :] = 0  # one dark line across the paper
    assert preprocess_sketch(arr).shape == (3, 224, 224)
    assert preprocess_image(np.full(shape + (3,), 200, np.uint8), size=64).shape == (3, 64, 64)


@pytest.mark.parametrize("blank", [np.full((64, 64, 3), 255, np.uint8), np.zeros((64, 64, 4), np.uint8),
                                   np.full((50, 80), 250, np.uint8)])
def test_empty_sketch_is_a_clear_error(blank):
    with pytest.raises(EmptySketchError, match="empty"):
        preprocess_sketch(blank)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_array(tmp_path / "nope.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        load_array(tmp_path / "junk.png")
    with pytest.raises(ValueError, match="expected an H x W"):
        load_array(np.zeros((4, 4, 2), np.uint8))


def test_files_on_disk(tmp_path):
    _strokes().save(tmp_path / "s.png")
    _strokes(ink=(255, 255, 255, 255), paper=(0, 0, 0, 0), mode="RGBA").save(tmp_path / "t.png")
    assert torch.allclose(preprocess_sketch(tmp_path / "s.png"), preprocess_sketch(tmp_path / "t.png"), atol=0.02)
    assert sketch_on_white(tmp_path / "t.png").shape == (180, 300, 3)


def test_image_normalisation():
    t = preprocess_image(np.full((10, 10, 3), 255, np.uint8), size=10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    assert torch.allclose(t[:, 0, 0], torch.tensor([2.0, 1.0, 0.5]))


def test_faint_pencil_strokes_are_cropped_as_a_whole():
    """Light-grey strokes (R+G+B > 300 everywhere, as in several real Earth-on-Canvas sketches) must
    not be taken for an empty sketch, and the crop must hold the whole drawing."""
    grey = (150, 150, 150)  # sum 450: no pixel passes the official threshold
    faint = preprocess_sketch(_strokes(ink=grey))
    dark = preprocess_sketch(_strokes())
    ink_faint, ink_dark = (faint.mean(0) < 0.6).numpy(), (dark.mean(0) < 0).numpy()
    assert ink_faint.any()
    assert (ink_faint == ink_dark).mean() > 0.97  # same framing as the same drawing in black
