"""Model configurations of the MLAGT family.

A configuration is plain data (it goes into every checkpoint's model card), so a checkpoint can be
rebuilt without code knowing which backbone it was trained from.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build an MLAGT network.

    tokenizer:
      "conv"  - the paper's tokenizer: a patch-size conv embedding averaged with a stack of four
                bias-free convs (3->64->128->256->width, total stride 16).
      "timm"  - a pretrained timm CNN trunk; its feature maps at several strides are projected to
                `width`, resampled to the token grid and averaged (multi-level tokenization).
    """

    name: str = "custom"
    img_size: int = 224
    patch_size: int = 16
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    ln_eps: float = 1e-5  # the official code uses PyTorch's default LayerNorm eps
    # Fraction of patch tokens kept after each block's attention (1.0 = no filtering).
    keep_rates: tuple[float, ...] = ()
    ca_heads: int = 12
    ca_ff_dim: int = 1024
    tokenizer: str = "conv"
    trunk: str = ""  # timm model name when tokenizer == "timm"
    trunk_levels: tuple[int, ...] = ()  # timm feature_info indices used as token levels
    # Preprocessing: per-channel mean/std applied to [0, 1] RGB.
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.width % self.heads or self.width % self.ca_heads:
            raise ValueError(f"width {self.width} must divide by heads {self.heads} and ca_heads {self.ca_heads}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")
        if self.tokenizer not in ("conv", "timm"):
            raise ValueError(f"unknown tokenizer {self.tokenizer!r} (expected 'conv' or 'timm')")
        if self.tokenizer == "timm" and not (self.trunk and self.trunk_levels):
            raise ValueError("tokenizer 'timm' needs trunk and trunk_levels")
        if self.keep_rates and len(self.keep_rates) != self.depth:
            raise ValueError(f"keep_rates has {len(self.keep_rates)} entries for {self.depth} blocks")
        if any(not 0.0 < r <= 1.0 for r in self.keep_rates):
            raise ValueError(f"keep rates must lie in (0, 1]: {self.keep_rates}")

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens entering the encoder: CLS + grid x grid patches."""
        return 1 + self.grid * self.grid

    def block_keep_rates(self) -> tuple[float, ...]:
        return self.keep_rates or (1.0,) * self.depth

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        tuples = {"keep_rates", "trunk_levels", "mean", "std"}
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})

    def replace(self, **changes: Any) -> "ModelConfig":
        return ModelConfig.from_dict({**self.to_dict(), **changes})


# The paper's configuration (ViT-B/16, 224 px), without token filtering, as the published code runs
# it (replace(keep_rates=...) filters).
PAPER_VITB16 = ModelConfig(name="mlagt-vitb16")

# A small configuration with the paper's conv tokenizer, for tests and CPU benchmarks.
VIT_TINY = ModelConfig(name="mlagt-vit-tiny", width=192, depth=12, heads=3, mlp_dim=768,
                       ca_heads=3, ca_ff_dim=256)

# The default model's shape: an ImageNet EfficientNet-Lite0 trunk as the multi-level tokenizer
# (stride-8, -16 and -32 features averaged onto the token grid: 12x12 at the 192 px here), two
# transformer blocks, filtering a quarter of the patch tokens in the second block. The shipped model
# is this shape trained at 160 px (10x10 grid: `model_overrides` in configs/*.json).
LITE0_DEFAULT = ModelConfig(name="mlagt-lite0", img_size=192, patch_size=16, width=256, depth=2,
                            heads=4, mlp_dim=768, keep_rates=(1.0, 0.75), ca_heads=4, ca_ff_dim=512,
                            tokenizer="timm", trunk="efficientnet_lite0", trunk_levels=(2, 3, 4))

CONFIGS: dict[str, ModelConfig] = {c.name: c for c in (PAPER_VITB16, VIT_TINY, LITE0_DEFAULT)}
