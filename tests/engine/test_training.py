"""Training runs end to end on a few generated images: checkpoints, resume, config errors, and
the shipped default model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from dataclasses import replace

from engine.cli import main as cli_main
from engine.training.config import TrainConfig
from engine.training.loop import learning_rate_factor, train

SHAPES = {"discs": "ellipse", "boxes": "rectangle", "bars": "line"}


def make_image_tree(root: Path, per_class: int = 4) -> Path:
    """Class folders of 96 px scenes, each class with its own kind of drawn object."""
    rng = np.random.default_rng(0)
    for cls, shape in SHAPES.items():
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            im = Image.new("RGB", (96, 96), tuple(int(v) for v in rng.integers(60, 120, 3)))
            d = ImageDraw.Draw(im)
            for _ in range(3):
                x, y = (int(v) for v in rng.integers(5, 60, 2))
                box = [x, y, x + 30, y + 25]
                if shape == "line":
                    d.line(box, fill=(230, 230, 230), width=5)
                else:
                    getattr(d, shape)(box, fill=(230, 230, 230), width=4)
            im.save(root / cls / f"{cls}_{i}.jpg")
    return root


def tiny_config(images: Path, **changes) -> TrainConfig:
    base = dict(name="tiny", images=str(images), holdout=["bars"], per_class=4, views=1,
                model="mlagt-lite0", init="",
                model_overrides={"img_size": 64, "width": 32, "depth": 1, "heads": 2, "mlp_dim": 64,
                                 "keep_rates": [0.75], "ca_heads": 2, "ca_ff_dim": 32},
                steps=2, classes_per_batch=2, pairs_per_class=2, warmup=10, checkpoint_every=1, log_every=1,
                seed=3)
    return TrainConfig.from_dict({**base, **changes})


@pytest.fixture()
def images(tmp_path) -> Path:
    return make_image_tree(tmp_path / "images")


def test_two_steps_write_checkpoints_the_embedder_loads(images, tmp_path):
    from engine.embedder import Embedder

    run = tmp_path / "run"
    final = train(tiny_config(images), run)
    assert (run / "last.pt").is_file() and (run / "step_00001.safetensors").is_file()
    log = [json.loads(line) for line in (run / "train.log").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["total"]) for r in log)
    card = json.loads(final.with_suffix(".json").read_text())
    assert card["training"]["step"] == 2 and card["training"]["trained_classes"] == ["boxes", "discs"]
    emb = Embedder.from_checkpoint(final, device="cpu")
    vec = emb.embed_images(np.zeros((2, 64, 64, 3), np.uint8)).cls
    assert vec.shape == (2, 32) and np.allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-5)


def test_training_changes_the_weights_it_should(images, tmp_path):
    from engine.model.checkpoints import load_checkpoint
    from engine.training.loop import build_model

    cfg = tiny_config(images)
    before = build_model(cfg).state_dict()
    after = load_checkpoint(train(cfg, tmp_path / "run"))[0].state_dict()
    frozen = "encoder.tokenizer.trunk.blocks.1.0.conv_dw.weight"  # inside the frozen prefix
    trained = "encoder.tokenizer.trunk.blocks.5.0.conv_pw.weight"  # a suffix block
    assert torch.equal(before[frozen], after[frozen])
    assert not torch.equal(before[trained], after[trained])
    assert not torch.equal(before["cross.sketch_layer.q.weight"], after["cross.sketch_layer.q.weight"])


def test_resumed_run_equals_an_uninterrupted_one(images, tmp_path):
    from engine.model.checkpoints import load_checkpoint

    # 2 steps, stop, continue to 3; against 3 steps straight (warm-up spans all, so the LR agrees)
    train(tiny_config(images), tmp_path / "a")
    resumed = train(tiny_config(images, steps=3), tmp_path / "a")
    straight = train(tiny_config(images, steps=3), tmp_path / "b")
    steps = [json.loads(line)["step"] for line in (tmp_path / "a" / "train.log").read_text().splitlines()]
    assert steps == [1, 2, 3]  # the resumed run did only the missing step
    wa, wb = load_checkpoint(resumed)[0].state_dict(), load_checkpoint(straight)[0].state_dict()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=1e-5), key


def test_run_folder_refuses_different_settings(images, tmp_path):
    train(tiny_config(images), tmp_path / "run")
    with pytest.raises(ValueError, match="different settings"):
        train(tiny_config(images, lr=1e-2), tmp_path / "run")


def test_learning_rate_schedule():
    cfg = TrainConfig(name="s", images=".", steps=100, warmup=10)
    assert learning_rate_factor(0, cfg) == pytest.approx(0.1)
    assert learning_rate_factor(9, cfg) == pytest.approx(1.0)
    assert learning_rate_factor(10, cfg) == pytest.approx(1.0)
    assert learning_rate_factor(100, cfg) == pytest.approx(0.05)


def test_cli_reports_bad_configs_in_one_line(tmp_path, capsys, images):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "images": str(images), "stepz": 3}))
    assert cli_main(["train", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown training config keys: stepz" in err and "\n" not in err
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"name": "x", "images": str(images), "holdout": ["nosuch"]}))
    assert cli_main(["train", str(missing), "--run-dir", str(tmp_path / "r")]) == 2
    assert "nosuch" in capsys.readouterr().err


def test_retrieval_settings_travel_from_run_config_to_shipped_card(images, tmp_path):
    """stage1_fusion and sketch_views in a run config reach every checkpoint's card, and ship keeps
    them unless told otherwise, so `make train` + ship reproduces how the default is used."""
    from engine.embedder import Embedder
    from engine.training.ship import main as ship_main

    fusion = {"descriptor": "efficientnet_lite0_gem", "model_weight": 0.5}
    run = tmp_path / "run"
    final = train(tiny_config(images, stage1_fusion=fusion, sketch_views=8), run)
    card = json.loads(final.with_suffix(".json").read_text())
    assert card["stage1_fusion"] == fusion and card["sketch_views"] == 8
    figures = tmp_path / "figures.json"
    figures.write_text("{}")
    kept = tmp_path / "kept.safetensors"
    assert ship_main([str(final), "--figures", str(figures), "--out", str(kept)]) == 0
    emb = Embedder.from_checkpoint(kept, device="cpu")
    assert emb.card["stage1_fusion"] == fusion and emb.sketch_views == 8
    changed = tmp_path / "changed.safetensors"
    assert ship_main([str(final), "--figures", str(figures), "--out", str(changed),
                      "--fusion", "none", "--sketch-views", "4"]) == 0
    emb = Embedder.from_checkpoint(changed, device="cpu")
    assert "stage1_fusion" not in emb.card and emb.sketch_views == 4 and emb.vector_dim == 32
    with pytest.raises(SystemExit):
        ship_main([str(final), "--figures", str(figures), "--out", str(changed), "--fusion", "sift:0.5"])


def test_fused_infonce_scores_with_the_fixed_descriptor():
    """The fused loss ranks by w cos(CLS) + (1 - w) cos(descriptor): with w = 0 the CLS vectors do
    not matter at all, and with w = 1 it is the plain loss."""
    from engine.model.retrieval import fuse
    from engine.training.losses import pair_infonce

    g = torch.Generator().manual_seed(0)
    sk, im = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    ds = torch.nn.functional.normalize(torch.randn(6, 5, generator=g), dim=-1)
    di = torch.nn.functional.normalize(ds + 0.1 * torch.randn(6, 5, generator=g), dim=-1)
    labels, inst = torch.tensor([0, 0, 1, 1, 2, 2]), torch.ones(6, dtype=torch.bool)
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731

    def fused(s, i, w):
        return pair_infonce(fuse(unit(s), ds, w), fuse(unit(i), di, w), labels, inst, 0.1, 0.5)

    plain = pair_infonce(sk, im, labels, inst, 0.1, 0.5)
    assert torch.isclose(fused(sk, im, 1.0), plain)
    only_desc = fused(sk, im, 0.0)
    assert torch.isclose(only_desc, fused(torch.randn(6, 8), torch.randn(6, 8), 0.0))
    assert not torch.isclose(only_desc, plain)


def test_turned_feature_maps_are_what_turning_gives():
    from engine.training.loop import turn_feature_maps

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    out = turn_feature_maps([x], torch.tensor([1, 6]))[0]
    assert torch.equal(out[0], torch.rot90(x[0], 1, dims=(1, 2)))
    assert torch.equal(out[1], torch.rot90(torch.flip(x[1], dims=(2,)), 2, dims=(1, 2)))


def test_run_with_fused_infonce_and_turns(images, tmp_path):
    """A run that trains against the fused score caches the descriptor vectors once (checked
    against the pretrained network on the cached prefix output) and resumes to the same weights."""
    from engine.model.retrieval import build_descriptor
    from engine.training.cache import load_cache
    from engine.training.descriptor_cache import descriptor_vectors

    fusion = {"descriptor": "efficientnet_lite0_gem", "model_weight": 0.5}
    cfg = tiny_config(images, stage1_fusion=fusion, fused_infonce=True, rotate_pairs=True, steps=2)
    final = train(cfg, tmp_path / "run")
    cached = tmp_path / "run" / "cache" / "descriptor_efficientnet_lite0_gem.npz"
    assert cached.is_file()
    cache = load_cache(tmp_path / "run" / "cache")
    sk, im = descriptor_vectors(cache, "efficientnet_lite0_gem", 5, tmp_path / "run" / "cache")
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(build_descriptor("efficientnet_lite0_gem").from_block(
            cache.image_levels[-1][:3].float(), 5), dim=-1)
    assert torch.allclose(im[:3], ref, atol=2e-3) and sk.shape == im.shape == (len(cache), 1280)
    from engine.model.checkpoints import load_checkpoint

    train(replace(cfg, steps=1), tmp_path / "again")
    again = train(cfg, tmp_path / "again")
    wa, wb = load_checkpoint(final)[0].state_dict(), load_checkpoint(again)[0].state_dict()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=1e-5), key


@pytest.mark.parametrize("changes", [{"sketch_views": 3}, {"fused_infonce": True},
                                     {"stage1_fusion": {"descriptor": "sift", "model_weight": 0.5}},
                                     {"stage1_fusion": {"descriptor": "efficientnet_lite0_gem", "model_weight": 2}},
                                     {"sketch_style": {"salient": 1.0}}])
def test_bad_retrieval_settings_are_refused(images, changes):
    with pytest.raises(ValueError):
        tiny_config(images, **changes)


def test_sketch_style_overrides_reach_the_synthesiser(images):
    cfg = tiny_config(images, sketch_style={"salient_prob": 0.5, "salient_parts": [2, 3]})
    assert cfg.style.salient_prob == 0.5 and cfg.style.salient_parts == (2, 3)
    assert tiny_config(images).style.salient_prob == 0.0


def test_shipped_default_model():
    from engine.embedder import Embedder
    from engine.runtime import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("no default model shipped yet")
    assert DEFAULT_CHECKPOINT.stat().st_size <= 25 * 1024 * 1024
    emb = Embedder.from_checkpoint(None, device="cpu")
    card = emb.card
    for field in ("name", "architecture", "training", "figures", "licences", "weights_sha256"):
        assert field in card, field
    square = np.pad(np.zeros((40, 40, 3), np.uint8), ((50, 50), (50, 50), (0, 0)), constant_values=255)
    vec = emb.embed_sketches([square]).cls
    assert vec.shape == (1, emb.vector_dim) and np.isfinite(vec).all()
    assert abs(float(np.linalg.norm(vec)) - 1) < 1e-5
    # how the figures in BENCHMARKS.md were measured: the Lite0 GeM partner on the shared trunk beside the
    # Lite2 GeM partner, a third of the score each with the CLS vector; 8 sketch views, strokes widened by 3 px
    assert card["stage1_fusion"] == {"descriptor": "efficientnet_lite0_gem_shared+lite2_gem", "model_weight": 0.333}
    assert card["sketch_views"] == 8 and card["sketch_widen"] == 3
