"""The published MLAGT checkpoints (`.pth`, `{'model': state_dict, ...}`): their key names mapped
onto our modules, the architecture read from the tensor shapes, the heads given as a setting."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from .config import ModelConfig
from .weight_files import CheckpointError, load_state_into, torch_load_weights_only

if TYPE_CHECKING:
    import torch

    from .network import MLAGT

_OFFICIAL_BLOCK = {
    "layer_norm_input": "norm1", "attention.to_qkv": "attn.qkv", "attention.to_out.0": "attn.proj",
    "layer_norm_out": "norm2", "mlp.net.0": "mlp.fc1", "mlp.net.3": "mlp.fc2",
}
_OFFICIAL_CA = {"self_attention.linears.0": "q", "self_attention.linears.1": "k",
                "self_attention.linears.2": "v", "self_attention.linears.3": "out",
                "feed_forward.w_1": "w1", "feed_forward.w_2": "w2",
                "sublayer.0.norm": "norm_attn", "sublayer.1.norm": "norm_ff"}
_OFFICIAL_FIXED = {"sa.model.pos_embedding": "encoder.pos_embed", "sa.model.cls": "encoder.cls_token",
                   "sa.model.embedding.weight": "encoder.tokenizer.proj.weight",
                   "sa.model.embedding.bias": "encoder.tokenizer.proj.bias"}


def official_key_to_ours(key: str) -> str | None:
    """Map one official key onto our module names; None for weights the official code never uses."""
    if key.startswith("ca.encoder.layers."):
        return None  # defined but unused by the published forward pass
    if key in _OFFICIAL_FIXED:
        return _OFFICIAL_FIXED[key]
    if key.startswith("sa.model.scale.seq."):
        return "encoder.tokenizer.multilevel." + key[len("sa.model.scale.seq."):]
    if key.startswith("sa.model.transformer.encoder_norm."):
        return "encoder.norm." + key.rsplit(".", 1)[1]
    if key.startswith("sa.model.transformer.layers."):
        n, rest = key[len("sa.model.transformer.layers."):].split(".", 1)
        rest = rest[2:]  # drop the inner ".0." of layers.N.0.*
        for theirs, ours in _OFFICIAL_BLOCK.items():
            if rest.startswith(theirs + "."):
                return f"encoder.blocks.{n}.{ours}{rest[len(theirs):]}"
    for side, ours_side in (("ca.encoder.layer1.0.", "cross.sketch_layer."),
                            ("ca.encoder.layer2.0.", "cross.image_layer.")):
        if key.startswith(side):
            rest = key[len(side):]
            for theirs, ours in _OFFICIAL_CA.items():
                if rest.startswith(theirs + "."):
                    return f"{ours_side}{ours}{rest[len(theirs):]}"
    raise KeyError(key)


def config_from_official(state: Mapping[str, torch.Tensor], heads: int, ca_heads: int | None,
                         keep_rates: tuple[float, ...] = ()) -> ModelConfig:
    width = state["sa.model.cls"].shape[-1]
    depth = len({k.split(".")[4] for k in state if k.startswith("sa.model.transformer.layers.")})
    tokens = state["sa.model.pos_embedding"].shape[1]
    patch = state["sa.model.embedding.weight"].shape[-1]
    grid = round((tokens - 1) ** 0.5)
    return ModelConfig(
        name="mlagt-official", img_size=grid * patch, patch_size=patch, width=width, depth=depth,
        heads=heads, mlp_dim=state["sa.model.transformer.layers.0.0.mlp.net.0.weight"].shape[0],
        keep_rates=keep_rates, ca_heads=ca_heads or heads,
        ca_ff_dim=state["ca.encoder.layer1.0.feed_forward.w_1.weight"].shape[0])


def load_official(path: Path | str, heads: int = 12, ca_heads: int | None = None,
                  keep_rates: tuple[float, ...] = ()) -> MLAGT:
    """Load an official checkpoint (`{'model': state_dict, ...}`). Heads cannot be read from the
    shapes: the official default is 12. keep_rates=() runs it as the published code does."""
    from .network import MLAGT

    blob = torch_load_weights_only(path)
    state = blob.get("model", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or "sa.model.cls" not in state:
        raise CheckpointError(path, "not an official MLAGT checkpoint (no 'model' dict with 'sa.model.*' keys)")
    try:
        cfg = config_from_official(state, heads, ca_heads, keep_rates)
        mapped = {}
        for key, value in state.items():
            ours = official_key_to_ours(key)
            if ours is not None:
                mapped[ours] = value
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(path, f"unexpected official checkpoint content ({exc})") from None
    model = MLAGT(cfg)
    load_state_into(model, mapped, path)
    return model.eval()
