"""The self-attention encoder: tokenizer, CLS token, position embedding, ViT blocks with
attention-guided token filtering, final norm.

Blocks are timm's `Block` modules (so timm ViT weights load by name); their forward pass is ours
because filtering needs the CLS row of the attention map, which timm's fused attention hides.
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from timm.models.vision_transformer import Block

from .config import ModelConfig
from .tokenizer import build_tokenizer


def cls_attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Attention of the CLS query on every patch key, averaged over heads: (B, N-1)."""
    scale = q.shape[-1] ** -0.5
    attn = (q[:, :, :1] * scale) @ k.transpose(-2, -1)  # B, H, 1, N
    return attn.softmax(dim=-1).mean(dim=1)[:, 0, 1:]


def keep_top_tokens(x: torch.Tensor, scores: torch.Tensor, keep_rate: float) -> torch.Tensor:
    """Keep CLS plus the ceil(keep_rate * patches) best-scored patch tokens, in original order."""
    patches = x.shape[1] - 1
    n_keep = math.ceil(keep_rate * patches)
    if n_keep >= patches:
        return x
    idx = scores.topk(n_keep, dim=1).indices.sort(dim=1).values
    kept = torch.gather(x[:, 1:], 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return torch.cat([x[:, :1], kept], dim=1)


def run_block(blk: Block, x: torch.Tensor, heads: int, keep_rate: float) -> torch.Tensor:
    """One pre-norm block; when keep_rate < 1, patch tokens with low CLS attention are dropped
    after the attention update and before the MLP (the paper's filtering)."""
    B, N, C = x.shape
    qkv = blk.attn.qkv(blk.norm1(x)).reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C)
    x = x + blk.ls1(blk.attn.proj(out))
    if keep_rate < 1.0:
        x = keep_top_tokens(x, cls_attention(q, k), keep_rate)
    return x + blk.ls2(blk.mlp(blk.norm2(x)))


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = build_tokenizer(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, cfg.width))
        norm = partial(nn.LayerNorm, eps=cfg.ln_eps)
        self.blocks = nn.ModuleList(
            Block(cfg.width, cfg.heads, mlp_ratio=cfg.mlp_dim / cfg.width, qkv_bias=True, norm_layer=norm)
            for _ in range(cfg.depth))
        self.norm = norm(cfg.width)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, S, S) -> tokens (B, 1 + kept patches, width), CLS first."""
        return self.encode_tokens(self.tokenizer(x))

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens from the tokenizer (B, grid*grid, width) -> encoder output tokens."""
        # shape[0], not len(): a traced export (engine.onnx_export) keeps the batch size dynamic
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        for blk, rate in zip(self.blocks, self.cfg.block_keep_rates()):
            tokens = run_block(blk, tokens, self.cfg.heads, rate)
        return self.norm(tokens)
