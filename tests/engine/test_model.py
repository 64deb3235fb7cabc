"""Shapes, attention-guided token filtering and configurations of the MLAGT network."""
import math

import pytest
import torch

from engine.model import MLAGT, ModelConfig, VIT_TINY
from engine.model.encoder import cls_attention, run_block

SMALL = dict(img_size=64, patch_size=16, width=32, depth=2, heads=2, mlp_dim=64, ca_heads=2, ca_ff_dim=64)


def test_token_counts_follow_keep_rates():
    torch.manual_seed(0)
    model = MLAGT(ModelConfig(**SMALL, keep_rates=(0.5, 0.75))).eval()
    with torch.inference_mode():
        tokens = model(torch.randn(3, 3, 64, 64))
    after_first = math.ceil(0.5 * 16)
    after_second = math.ceil(0.75 * after_first)
    assert tokens.shape == (3, 1 + after_second, 32)


def test_filtering_keeps_highest_cls_attention_in_order():
    """Recompute one block by hand: the kept patch tokens are exactly the top-k by head-averaged
    CLS attention, in their original order, and the MLP sees only them."""
    torch.manual_seed(1)
    model = MLAGT(ModelConfig(**SMALL)).eval()
    blk = model.encoder.blocks[0]
    x = torch.randn(2, 17, 32)
    with torch.inference_mode():
        full = run_block(blk, x, heads=2, keep_rate=1.0)
        filtered = run_block(blk, x, heads=2, keep_rate=0.25)
        B, N, C = x.shape
        qkv = blk.attn.qkv(blk.norm1(x)).reshape(B, N, 3, 2, C // 2).permute(2, 0, 3, 1, 4)
        q, k, _ = qkv.unbind(0)
        scores = ((q[:, :, :1] @ k.transpose(-2, -1)) / math.sqrt(C // 2)).softmax(-1).mean(1)[:, 0, 1:]
        assert torch.allclose(scores, cls_attention(q, k))
        for b in range(B):
            keep = sorted(scores[b].topk(4).indices.tolist())
            after_attn = x[b] + blk.attn.proj(torch.nn.functional.scaled_dot_product_attention(
                q[b:b + 1], k[b:b + 1], qkv[2][b:b + 1]).transpose(1, 2).reshape(1, N, C))[0]
            rows = after_attn[[0] + [i + 1 for i in keep]]
            expected = rows + blk.mlp(blk.norm2(rows))
            assert torch.allclose(filtered[b], expected, atol=1e-5)
    assert filtered.shape == (2, 5, 32) and full.shape == (2, 17, 32)


def test_filtering_is_not_the_published_bug():
    """The published filtering branch continued from the block *input* rows (dropping the attention
    update); ours continues from the attention-updated rows."""
    torch.manual_seed(2)
    model = MLAGT(ModelConfig(**SMALL)).eval()
    blk = model.encoder.blocks[0]
    x = torch.randn(1, 17, 32)
    with torch.inference_mode():
        out = run_block(blk, x, heads=2, keep_rate=0.5)
        B, N, C = x.shape
        q, k, _ = blk.attn.qkv(blk.norm1(x)).reshape(B, N, 3, 2, C // 2).permute(2, 0, 3, 1, 4).unbind(0)
        keep = [0] + [i + 1 for i in sorted(cls_attention(q, k)[0].topk(8).indices.tolist())]
        rows = x[0, keep]
        published = rows + blk.mlp(blk.norm2(rows))
    assert out.shape == (1, 9, 32)
    assert not torch.allclose(out[0], published, atol=1e-3)


def test_cross_attention_needs_equal_token_counts():
    model = MLAGT(ModelConfig(**SMALL)).eval()
    with pytest.raises(ValueError, match="equal token shapes"):
        model.cross_cls(torch.randn(1, 17, 32), torch.randn(1, 9, 32))


def test_paper_configuration_parameter_count_matches_official():
    """ViT-B/16 with the multi-level tokenizer and both cross-attention layers: the official model has
    99,766,464 parameters including its unused `ca.encoder.layers.0`; ours omits that layer."""
    from engine.model import PAPER_VITB16
    model = MLAGT(PAPER_VITB16)
    n = sum(p.numel() for p in model.parameters())
    width, ff = 768, 1024
    unused_layer = 4 * (width * width + width) + (width * ff + ff) + (ff * width + width) + 4 * width
    assert n == 99_766_464 - unused_layer


@pytest.mark.parametrize("bad", [dict(width=33), dict(img_size=70), dict(tokenizer="resnet"),
                                 dict(keep_rates=(1.0,)), dict(keep_rates=(0.0, 1.0)),
                                 dict(tokenizer="timm")])
def test_bad_configurations_are_refused(bad):
    with pytest.raises(ValueError):
        ModelConfig(**{**SMALL, **bad})


def test_config_round_trips_through_dict():
    assert ModelConfig.from_dict(VIT_TINY.to_dict()) == VIT_TINY
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**VIT_TINY.to_dict(), "colour": "red"})


def test_timm_trunk_tokenizer_shapes():
    cfg = ModelConfig(img_size=96, patch_size=16, width=32, depth=1, heads=2, mlp_dim=64, ca_heads=2,
                      ca_ff_dim=64, tokenizer="timm", trunk="efficientnet_lite0", trunk_levels=(2, 3, 4))
    model = MLAGT(cfg).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 96, 96)).shape == (2, 1 + 36, 32)
