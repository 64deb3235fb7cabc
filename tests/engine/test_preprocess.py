"""Sketch and image preprocessing: forms of sketches, odd sizes, empty sketches."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.preprocess import (EmptySketchError, load_array, preprocess_image, preprocess_sketch, sketch_canvas,
                               sketch_on_white)


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


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _blank_bilevel_png(path, side: int) -> None:
    """A valid 1-bit PNG of side x side px, all white, written directly (fast at any size)."""
    import struct
    import zlib

    row = b"\x00" + b"\xff" * ((side + 7) // 8)  # filter byte + one bit per pixel
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body)
                     + _png_chunk(b"IEND", b""))


def _correlation(a, b) -> float:
    a, b = np.asarray(a) - np.mean(a), np.asarray(b) - np.mean(b)
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_huge_sketch_file_is_read_shrunk_without_warnings(tmp_path):
    """A 14000 x 14000 px sketch (196 Mpx: PIL alone warns above 89 Mpx and refuses above 179 Mpx)."""
    import warnings

    from engine.preprocess import WORK_SIDE, prepare_sketch

    im = Image.new("L", (14000, 14000), 255)
    draw = ImageDraw.Draw(im)
    draw.line([(2000, 7000), (12000, 7000)], fill=0, width=120)
    draw.ellipse([(5000, 3000), (9000, 11000)], outline=0, width=120)
    im.save(tmp_path / "huge.png", compress_level=1)
    pil_limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arr = load_array(tmp_path / "huge.png")
        big = prepare_sketch(tmp_path / "huge.png", 160)
    assert not caught, [str(w.message) for w in caught]
    assert Image.MAX_IMAGE_PIXELS == pil_limit  # raised for our own open only
    assert max(arr.shape[:2]) <= WORK_SIDE and arr.shape[2] == 3
    small = prepare_sketch(np.asarray(im.resize((1400, 1400), Image.BILINEAR)), 160)
    assert _correlation(big, small) > 0.85  # the same drawing at the model's size (unrelated ones: about 0)


def test_too_large_sketch_file_is_refused_in_one_line(tmp_path):
    from engine.preprocess import ImageTooLargeError, SketchError

    _blank_bilevel_png(tmp_path / "vast.png", 20000)  # 400 Mpx, more than MAX_FILE_PIXELS
    with pytest.raises(ImageTooLargeError) as info:
        load_array(tmp_path / "vast.png")
    message = str(info.value)
    assert "\n" not in message and "20000 x 20000 px (400 Mpx)" in message and "scale it down" in message
    assert isinstance(info.value, SketchError) and isinstance(info.value, ValueError)  # a user error for the CLI


def test_sketch_file_bytes_and_jpeg_draft(tmp_path):
    """Bytes of a file work like the file (the worker receives the plugin's canvas as PNG bytes);
    a large JPEG is decoded at a reduced size."""
    import io

    im = Image.new("RGB", (5000, 3000), "white")
    draw = ImageDraw.Draw(im)
    draw.line([(800, 600), (4200, 2500)], fill="black", width=60)
    draw.ellipse([(1500, 700), (3000, 2000)], outline="black", width=40)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    assert np.array_equal(load_array(buf.getvalue()), load_array(im.reduce(2)))
    im.save(tmp_path / "big.jpg", quality=90)
    arr = load_array(tmp_path / "big.jpg")
    assert arr.shape == (1500, 2500, 3)  # JPEG draft at 1/2: DCT scaling, no full decode
    assert _correlation(preprocess_sketch(tmp_path / "big.jpg").numpy(), preprocess_sketch(im).numpy()) > 0.9


def test_widening_thickens_strokes_where_the_sketch_is_shrunk():
    thin = Image.new("RGB", (512, 512), "white")
    ImageDraw.Draw(thin).line([(40, 256), (470, 256)], fill="black", width=2)
    ImageDraw.Draw(thin).line([(256, 40), (256, 470)], fill="black", width=2)
    as_drawn, widened = sketch_canvas(thin, 160), sketch_canvas(thin, 160, widen=3)
    dark = lambda a: (a.mean(axis=2) < 128)  # noqa: E731
    # a 2 px pen shrinks to under a pixel: faint; widened it is about 3 px of full black
    assert dark(as_drawn).sum() < 0.5 * dark(widened).sum()
    assert dark(widened)[:, 30].sum() >= 3 and widened.shape == (160, 160, 3)  # a column across the line
    assert (widened[:, :, 0] < 250).sum() > (as_drawn[:, :, 0] < 250).sum()
    assert np.array_equal(sketch_canvas(thin, 160, widen=1), as_drawn)
