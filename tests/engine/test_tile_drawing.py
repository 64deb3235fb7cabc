"""Tiles drawn as sketches (engine.model.tile_drawing): what gets inked, in PyTorch and ONNX alike."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.model.tile_drawing import EDGE_SHARE, draw_tiles  # noqa: E402

MEAN = STD = (0.5, 0.5, 0.5)


def normalised(rgb: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5


def test_a_featureless_tile_is_blank_paper():
    drawing = draw_tiles(normalised(np.full((160, 160, 3), 90, np.uint8)), MEAN, STD)
    assert torch.equal(drawing, torch.ones_like(drawing))  # white, normalised


def test_a_building_is_drawn_as_its_outline_in_black_on_white():
    rgb = np.full((160, 160, 3), 60, np.uint8)
    rgb[50:110, 40:120] = 220  # a bright roof on dark ground
    drawing = draw_tiles(normalised(rgb), MEAN, STD)[0]
    assert torch.equal(drawing[0], drawing[1]) and torch.equal(drawing[0], drawing[2])  # grey: black or white
    ink = (drawing[0] == -1).numpy()
    assert set(np.unique(drawing[0].numpy())) == {-1.0, 1.0}
    assert abs(ink.mean() - EDGE_SHARE) < 0.02  # the strongest EDGE_SHARE of pixels
    ys, xs = np.nonzero(ink)
    assert ys.min() >= 50 - 6 and ys.max() < 110 + 6 and xs.min() >= 40 - 6 and xs.max() < 120 + 6  # on the edges
    assert not ink[70:90, 60:100].any() and not ink[:30].any()  # not inside the roof, not on the bare ground


def test_the_onnx_graph_draws_as_pytorch_does(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    class Draw(torch.nn.Module):
        def forward(self, x):
            return draw_tiles(x, MEAN, STD)

    rng = np.random.default_rng(0)
    tiles = torch.from_numpy(rng.integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)).permute(0, 3, 1, 2).float()
    tiles = (torch.nn.functional.avg_pool2d(tiles, 5, 1, 2) / 255 - 0.5) / 0.5  # smooth, so edges are not ties
    path = tmp_path / "draw.onnx"
    torch.onnx.export(Draw(), (tiles,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    onnx.checker.check_model(onnx.load(str(path)))
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["y"], {"x": tiles.numpy()})[0]
    expected = draw_tiles(tiles, MEAN, STD).numpy()
    assert (got != expected).mean() < 1e-3  # pixels right at the threshold may round either way
