"""Checkpoint files: our format's round trip and verification, bad files, timm backbone weights."""
import json
import shutil

import pytest
import torch

from engine.model import MLAGT, ModelConfig
from engine.model.backbone_init import load_backbone_weights
from engine.model.checkpoints import CheckpointError, load_any, load_checkpoint, save_checkpoint
from engine.model.official import load_official

SMALL = ModelConfig(img_size=64, width=32, depth=2, heads=2, mlp_dim=64, ca_heads=2, ca_ff_dim=64)


def _same(a: MLAGT, b: MLAGT, atol=0.0):
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        return torch.allclose(a(x), b(x), atol=atol)


def test_round_trip_float32_and_half(tmp_path):
    torch.manual_seed(0)
    model = MLAGT(SMALL).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", card={"name": "m", "licence": "GPL-2.0-or-later"})
    loaded, card = load_checkpoint(path)
    assert _same(model, loaded)
    assert card["name"] == "m" and ModelConfig.from_dict(card["config"]) == SMALL and len(card["weights_sha256"]) == 64
    half = save_checkpoint(model, tmp_path / "h", half=True)
    assert half.stat().st_size < path.stat().st_size * 0.6
    loaded_half, card_half = load_checkpoint(half.with_suffix(".json"))  # the card path works too
    assert card_half["weights_dtype"] == "float16" and _same(model, loaded_half, atol=5e-2)
    assert not list(tmp_path.glob("*.tmp"))


def test_changed_weights_are_refused(tmp_path):
    path = save_checkpoint(MLAGT(SMALL), tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


def test_truncated_weights_are_refused(tmp_path):
    path = save_checkpoint(MLAGT(SMALL), tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"m\.safetensors"):
        load_checkpoint(path)


def test_card_of_another_architecture_is_refused(tmp_path):
    path = save_checkpoint(MLAGT(SMALL), tmp_path / "m.safetensors")
    card = json.loads(path.with_suffix(".json").read_text())
    card["config"]["depth"] = 3
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="1 missing|missing"):
        load_checkpoint(path)


def test_missing_files_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="nothere.safetensors.*not found"):
        load_any(tmp_path / "nothere.safetensors")
    lone = tmp_path / "lone.safetensors"
    shutil.copy(save_checkpoint(MLAGT(SMALL), tmp_path / "x.safetensors"), lone)
    with pytest.raises(CheckpointError, match="model card lone.json not found"):
        load_checkpoint(lone)


def test_truncated_official_checkpoint(tmp_path, reference_dir):
    data = (reference_dir / "mlagt_tiny_official_format.pth").read_bytes()
    bad = tmp_path / "cut.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth: not a readable PyTorch checkpoint"):
        load_official(bad, heads=3)


def test_official_checkpoint_with_wrong_heads_is_refused(reference_dir):
    with pytest.raises(CheckpointError, match="must divide"):
        load_official(reference_dir / "mlagt_tiny_official_format.pth", heads=5)


def test_pickled_code_is_never_run(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_official(path)


def test_not_an_official_checkpoint(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"weight": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not an official MLAGT checkpoint"):
        load_official(path)


def test_timm_vit_backbone_weights_initialise_the_encoder(tmp_path):
    import timm
    from safetensors.torch import save_file

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    cfg = ModelConfig(img_size=128, width=192, depth=12, heads=3, mlp_dim=768, ca_heads=3, ca_ff_dim=64)
    model = MLAGT(cfg)
    loaded = load_backbone_weights(model, tmp_path / "vit.pth")
    assert "encoder.blocks.11.mlp.fc2.weight" in loaded and "encoder.tokenizer.proj.weight" in loaded
    assert torch.equal(model.encoder.blocks[3].attn.qkv.weight, vit.blocks[3].attn.qkv.weight)
    assert model.encoder.pos_embed.shape == (1, 65, 192)  # resampled from 14x14 to 8x8
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    assert load_backbone_weights(MLAGT(cfg), tmp_path / "vit.safetensors") == loaded


def test_backbone_weights_of_the_wrong_kind(tmp_path):
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="neither timm ViT weights nor a CNN trunk"):
        load_backbone_weights(MLAGT(SMALL), tmp_path / "w.pth")
