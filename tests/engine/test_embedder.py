"""The encoder API: embeddings, pair scores, batching, device choice, CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.device import pick_device
from engine.embedder import Embedder
from engine.model.checkpoints import CheckpointError


@pytest.fixture(scope="module")
def embedder(tiny_checkpoint):
    return Embedder.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=3)


def _sketch():
    im = Image.new("RGB", (100, 100), "white")
    ImageDraw.Draw(im).rectangle([20, 30, 80, 70], outline="black", width=3)
    return im


def test_embeddings_are_normalised_and_batch_independent(embedder):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (7, 64, 64, 3), dtype=np.uint8)
    out = embedder.embed_images(images, with_tokens=True)
    assert out.cls.shape == (7, 64) and out.cls.dtype == np.float32
    assert np.allclose(np.linalg.norm(out.cls, axis=1), 1, atol=1e-5)
    n_tokens = 1 + int(np.ceil(0.75 * 16))  # tiny config filters a quarter of 4x4 patches in block 2
    assert out.tokens.shape == (7, n_tokens, 64)
    one_by_one = np.concatenate([embedder.embed_images(images[i:i + 1]).cls for i in range(7)])
    assert np.allclose(out.cls, one_by_one, atol=1e-5)
    assert not torch.is_grad_enabled() or out.tokens.requires_grad is False


def test_fixed_batch_runs_one_shape_and_gives_the_same_vectors(tiny_checkpoint):
    # what a GPU does (fixed_batch is on for CUDA only): short chunks padded to batch_size
    rng = np.random.default_rng(2)
    images = rng.integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    plain = Embedder.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    fixed = Embedder.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    assert plain.fixed_batch is False
    fixed.fixed_batch = True
    shapes = []
    forward = fixed.model.forward_features
    fixed.model.forward_features = lambda x: shapes.append(len(x)) or forward(x)
    a, b = plain.embed_images(images, with_tokens=True), fixed.embed_images(images, with_tokens=True)
    assert shapes == [4, 4]  # 4 tiles, then 1 tile padded to 4
    assert b.cls.shape == a.cls.shape and b.tokens.shape == a.tokens.shape
    assert np.allclose(a.cls, b.cls, atol=1e-5) and torch.allclose(a.tokens, b.tokens, atol=1e-5)
    assert np.allclose(plain.embed_sketches([_sketch()]).cls, fixed.embed_sketches([_sketch()]).cls, atol=1e-5)


def test_pair_scores_match_the_cross_attention_module(embedder):
    sk = embedder.embed_sketches([_sketch()], with_tokens=True)
    tiles = np.random.default_rng(1).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    im = embedder.embed_images(tiles, with_tokens=True)
    scores = embedder.pair_scores(sk.tokens[0], im.tokens)
    assert scores.shape == (5,)
    with torch.inference_mode():
        s_cls, i_cls = embedder.model.cross_cls(sk.tokens[:1].expand(5, -1, -1), im.tokens)
        expected = torch.nn.functional.cosine_similarity(s_cls, i_cls).numpy()
    assert np.allclose(scores, expected, atol=1e-5)
    pairwise = embedder.pair_scores(sk.tokens.expand(5, -1, -1), im.tokens)
    assert np.allclose(pairwise, scores, atol=1e-5)


def test_identity_follows_the_weights(embedder, tiny_checkpoint):
    card = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    assert embedder.identity == card["weights_sha256"]


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    auto = pick_device(None)
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    else:
        mps = getattr(torch.backends, "mps", None)
        assert auto.type == ("mps" if mps is not None and mps.is_available() else "cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu9")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Embedder.from_checkpoint(tmp_path / "none.safetensors")


def test_cli_embed_and_info(tiny_checkpoint, tmp_path):
    folder = tmp_path / "sk"
    folder.mkdir()
    _sketch().save(folder / "a.png")
    _sketch().transpose(Image.Transpose.ROTATE_90).save(folder / "b.png")
    out = tmp_path / "v.npy"
    cmd = [sys.executable, "-m", "engine.cli", "embed", str(folder), "--as", "sketch", "--out", str(out),
           "--checkpoint", str(tiny_checkpoint)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert np.load(out).shape == (2, 64)
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr and again.stderr.count("\n") == 1
    blank = tmp_path / "blank"
    blank.mkdir()
    Image.new("RGB", (50, 50), "white").save(blank / "e.png")
    empty = subprocess.run(cmd[:4] + [str(blank)] + cmd[5:8] + [str(tmp_path / "e.npy")] + cmd[9:],
                           capture_output=True, text=True)
    assert empty.returncode == 2 and "sketch is empty" in empty.stderr and "Traceback" not in empty.stderr
    info = subprocess.run([sys.executable, "-m", "engine.cli", "info", "--checkpoint", str(tiny_checkpoint)],
                          capture_output=True, text=True)
    assert info.returncode == 0 and json.loads(info.stdout)["model"] == "test-tiny"


def _card_with(tiny_checkpoint, tmp_path, **entries):
    """A copy of the tiny checkpoint whose card has the given entries added."""
    import shutil
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_checkpoint.with_suffix(suffix), tmp_path)
    card_path = tmp_path / tiny_checkpoint.with_suffix(".json").name
    card = json.loads(card_path.read_text())
    card.update(entries)
    card_path.write_text(json.dumps(card))
    return card_path.with_suffix(".safetensors")


def _fused_card(tiny_checkpoint, tmp_path, weight, descriptor="efficientnet_lite0_gap", **entries):
    return _card_with(tiny_checkpoint, tmp_path, stage1_fusion={"descriptor": descriptor, "model_weight": weight},
                      **entries)


def test_stage1_fusion_with_the_pretrained_descriptor(tiny_checkpoint, tmp_path, embedder):
    """A card's stage1_fusion makes the stage-1 vector [sqrt(w) CLS, sqrt(1-w) GAP], so dot products
    are w cos(CLS) + (1 - w) cos(GAP); the index key changes with it."""
    from engine.model.pretrained import lite0_gap_network
    from engine.preprocess import preprocess_image

    fused = Embedder.from_checkpoint(_fused_card(tiny_checkpoint, tmp_path, 0.3), device="cpu")
    images = np.random.default_rng(3).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    vectors = fused.embed_images(images).cls
    assert vectors.shape == (4, 64 + 1280) == (4, fused.vector_dim)
    plain = embedder.embed_images(images).cls
    with torch.inference_mode():
        gap = torch.nn.functional.normalize(
            lite0_gap_network()(torch.stack([preprocess_image(im, 64) for im in images])), dim=-1).numpy()
    expected = 0.3 * plain @ plain.T + 0.7 * gap @ gap.T
    assert np.allclose(vectors @ vectors.T, expected, atol=1e-4)
    # the index key of every fused index built so far: the weights' sha256, then +DESCRIPTOR@WEIGHT
    assert fused.identity == embedder.card["weights_sha256"] + "+efficientnet_lite0_gap@0.3"


def test_unusable_fusion_entry_is_a_clear_error(tiny_checkpoint, tmp_path):
    path = _fused_card(tiny_checkpoint, tmp_path, 1.5)
    with pytest.raises(CheckpointError, match="stage1_fusion"):
        Embedder.from_checkpoint(path, device="cpu")


def test_gem_descriptor_pools_the_head_features_with_p3(tiny_checkpoint, tmp_path):
    """The GeM partner is (mean of x^3)^(1/3) over the Lite0 head features, not their average."""
    from engine.model.pretrained import lite0_gap_network, lite0_gem_network

    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        head = lite0_gap_network().net.forward_features(x)
        gem = lite0_gem_network()(x)
    assert torch.allclose(gem, head.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3), atol=1e-5)
    assert not torch.allclose(gem, head.mean((2, 3)), atol=1e-3)
    fused_card = _fused_card(tiny_checkpoint, tmp_path, 0.5, "efficientnet_lite0_gem")
    fused = Embedder.from_checkpoint(fused_card, device="cpu")
    assert fused.vector_dim == 64 + 1280 and "efficientnet_lite0_gem" in fused.identity


def _arrow():
    """An asymmetric sketch: each rotation and mirror image of it is a different picture. Its strokes
    reach all four edges, so the crop to the strokes is the whole square and commutes with turning."""
    im = Image.new("RGB", (120, 120), "white")
    d = ImageDraw.Draw(im)
    d.line([0, 60, 119, 60], fill="black", width=4)
    d.line([119, 60, 80, 0], fill="black", width=4)
    d.line([0, 60, 30, 119], fill="black", width=4)
    return np.asarray(im)


@pytest.mark.parametrize("views", [4, 8])
def test_sketch_views_average_the_rotated_sketch(tiny_checkpoint, tmp_path, embedder, views):
    """With sketch_views the stage-1 vector is the normalised mean over the rotations (and mirror
    images) of the sketch: the same for the sketch turned by 90 degrees, and the mean of what the
    plain model gives for each view. Image vectors do not change."""
    multi = Embedder.from_checkpoint(_card_with(tiny_checkpoint, tmp_path, sketch_views=views), device="cpu")
    arrow = _arrow()
    vec = multi.embed_sketches([arrow]).cls
    turned = multi.embed_sketches([np.rot90(arrow)]).cls
    assert np.allclose(vec, turned, atol=1e-4)
    mirrored = multi.embed_sketches([arrow[:, ::-1]]).cls
    assert np.allclose(vec, mirrored, atol=1e-4) == (views == 8)
    each = [embedder.embed_sketches([np.rot90(a, k)]).cls[0] for a in (arrow, arrow[:, ::-1])[:views // 4]
            for k in range(4)]
    mean = np.mean(each, 0)
    assert np.allclose(vec[0], mean / np.linalg.norm(mean), atol=1e-4)
    assert not np.allclose(vec, embedder.embed_sketches([arrow]).cls, atol=1e-3)
    images = np.random.default_rng(5).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    assert np.allclose(multi.embed_images(images).cls, embedder.embed_images(images).cls, atol=1e-6)
    assert multi.identity == embedder.identity  # tile vectors are the same, so is the index
    with_tokens = multi.embed_sketches([arrow], with_tokens=True)
    assert with_tokens.tokens.shape[0] == 1
    assert torch.allclose(with_tokens.tokens, embedder.embed_sketches([arrow], with_tokens=True).tokens, atol=1e-5)


def test_sketch_views_with_fusion_average_each_part(tiny_checkpoint, tmp_path):
    """Under fusion each part is averaged over the views and re-normalised on its own, so the
    w / (1 - w) balance holds for the averaged vector too."""
    multi = Embedder.from_checkpoint(_fused_card(tiny_checkpoint, tmp_path, 0.25, sketch_views=4), device="cpu")
    vec = multi.embed_sketches([_arrow()]).cls[0]
    assert np.isclose(np.linalg.norm(vec[:64]) ** 2, 0.25, atol=1e-5)
    assert np.isclose(np.linalg.norm(vec[64:]) ** 2, 0.75, atol=1e-5)


def test_no_sketches_give_no_vectors(embedder):
    assert embedder.embed_sketches([]).cls.shape == (0, embedder.vector_dim)


def test_unusable_sketch_views_is_a_clear_error(tiny_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="sketch_views"):
        Embedder.from_checkpoint(_card_with(tiny_checkpoint, tmp_path, sketch_views=3), device="cpu")
