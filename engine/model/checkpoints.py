"""Checkpoint files: the official MLAGT format, our own format, timm backbone weights.

Our format is two files side by side: `NAME.safetensors` (weights) and `NAME.json` (the model
card: architecture config, preprocessing, training data and recipe, metrics, licence and the
sha256 of the weights, verified on every load). Only weights-only loaders are used: a checkpoint
never executes code. Every failure is a CheckpointError naming the file and what is wrong.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .config import ModelConfig

if TYPE_CHECKING:  # torch is imported where weights are read, so cards and errors need no torch
    import torch

    from .network import MLAGT

CARD_FORMAT = "sketch-search-model/1"


class CheckpointError(ValueError):
    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = Path(path), problem



def parse_card(card_file: Path) -> dict:
    """A model card's JSON, checked to be one; every failure a CheckpointError naming the file."""
    try:
        card = json.loads(Path(card_file).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(card_file, f"model card is not valid JSON ({exc})") from None
    if card.get("format") != CARD_FORMAT:
        raise CheckpointError(card_file, f"not a model card of format {CARD_FORMAT} (format: {card.get('format')!r})")
    return card

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _existing(path: Path | str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "file is empty")
    return path


def torch_load_weights_only(path: Path | str) -> Any:
    """torch.load with weights_only=True and errors in plain words."""
    import torch

    path = _existing(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(path, f"refused: it holds more than plain weights and would run code on load ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, struct.error) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(path, f"not a readable PyTorch checkpoint, truncated or corrupt ({first})") from None


def load_state_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path | str,
                    strict: bool = True) -> None:
    """Load a state dict, reporting missing, unexpected and wrongly shaped tensors in one message."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state)) if strict else []
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} (model {tuple(own[k].shape)})"
             for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            problems.append(f"{len(items)} {label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}")
    if problems:
        raise CheckpointError(path, "does not match the model: " + "; ".join(problems))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=strict)


# --- the official format ---------------------------------------------------------------------

_OFFICIAL_BLOCK = {
    "layer_norm_input": "norm1", "attention.to_qkv": "attn.qkv", "attention.to_out.0": "attn.proj",
    "layer_norm_out": "norm2", "mlp.net.0": "mlp.fc1", "mlp.net.3": "mlp.fc2",
}
_OFFICIAL_CA = {"self_attention.linears.0": "q", "self_attention.linears.1": "k",
                "self_attention.linears.2": "v", "self_attention.linears.3": "out",
                "feed_forward.w_1": "w1", "feed_forward.w_2": "w2",
                "sublayer.0.norm": "norm_attn", "sublayer.1.norm": "norm_ff"}


def official_key_to_ours(key: str) -> str | None:
    """Map one official key onto our module names; None for weights the official code never uses."""
    if key.startswith("ca.encoder.layers."):
        return None  # defined but unused by the published forward pass
    fixed = {"sa.model.pos_embedding": "encoder.pos_embed", "sa.model.cls": "encoder.cls_token",
             "sa.model.embedding.weight": "encoder.tokenizer.proj.weight",
             "sa.model.embedding.bias": "encoder.tokenizer.proj.bias"}
    if key in fixed:
        return fixed[key]
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
    for side, ours_side in (("ca.encoder.layer1.0.", "cross.sketch_layer."), ("ca.encoder.layer2.0.", "cross.image_layer.")):
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


# --- our own format --------------------------------------------------------------------------

def card_path_for(path: Path | str) -> Path:
    return Path(path).with_suffix(".json")


def save_checkpoint(model: MLAGT, path: Path | str, card: Mapping[str, Any] | None = None,
                    half: bool = False) -> Path:
    """Write NAME.safetensors and NAME.json atomically. Returns the weights path."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp))
    full_card = {**(card or {}), "format": CARD_FORMAT, "config": model.cfg.to_dict(),
                 "weights_file": path.name, "weights_sha256": sha256_of(tmp),
                 "weights_dtype": "float16" if half else "float32",
                 "parameters": sum(v.numel() for v in state.values())}
    card_tmp = card_path_for(path).with_suffix(".json.tmp")
    card_tmp.write_text(json.dumps(full_card, indent=2) + "\n")
    tmp.replace(path)
    card_tmp.replace(card_path_for(path))
    return path


def read_card(path: Path | str) -> tuple[Path, dict[str, Any]]:
    """Given NAME.safetensors or NAME.json, return (weights path, card)."""
    path = Path(path).expanduser()
    card_file = path if path.suffix == ".json" else card_path_for(path)
    card_file = _existing(card_file) if card_file.exists() or path.suffix == ".json" else None
    if card_file is None:
        raise CheckpointError(path, f"model card {card_path_for(path).name} not found beside the weights")
    card = parse_card(card_file)
    weights = card_file.with_name(card.get("weights_file", card_file.with_suffix(".safetensors").name))
    return _existing(weights), card


def load_checkpoint(path: Path | str) -> tuple[MLAGT, dict[str, Any]]:
    """Load our format, verifying the weights against the card's sha256. Returns (model, card)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .network import MLAGT

    weights, card = read_card(path)
    if sha256_of(weights) != card.get("weights_sha256"):
        raise CheckpointError(weights, "sha256 differs from the model card's: the file was changed or is truncated")
    try:
        cfg = ModelConfig.from_dict(card["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(card_path_for(weights), f"bad model config in card ({exc})") from None
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(weights, f"not a readable safetensors file ({exc})") from None
    model = MLAGT(cfg)
    load_state_into(model, state, weights)
    return model.eval(), card


def load_any(path: Path | str, heads: int = 12) -> tuple[MLAGT, dict[str, Any]]:
    """Our format (.safetensors/.json) or the official one (.pth/.pt), by extension."""
    path = Path(path).expanduser()
    if path.suffix in (".safetensors", ".json"):
        return load_checkpoint(path)
    model = load_official(path, heads=heads)
    return model, {"name": path.stem, "config": model.cfg.to_dict(), "format": "mlagt-official"}


# --- timm backbone weights for initialisation -------------------------------------------------

def read_weights_file(path: Path | str) -> dict[str, torch.Tensor]:
    """A plain state dict from .safetensors, .npz or a weights-only .pth/.bin."""
    import torch

    path = _existing(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(path, f"not a readable safetensors file ({exc})") from None
    if path.suffix == ".npz":
        import numpy as np
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: torch.from_numpy(npz[k]) for k in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise CheckpointError(path, f"not a readable .npz archive ({exc})") from None
    blob = torch_load_weights_only(path)
    for key in ("state_dict", "model"):
        if isinstance(blob, dict) and isinstance(blob.get(key), dict):
            blob = blob[key]
    if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise CheckpointError(path, "does not hold a state dict of tensors")
    return blob


def load_backbone_weights(model: MLAGT, path: Path | str) -> list[str]:
    """Initialise from timm-format weights: a ViT (patch_embed/blocks/norm keys) into the encoder,
    or a CNN trunk into the timm tokenizer. Classifier heads are ignored. Returns the loaded keys."""
    state = read_weights_file(path)
    own = model.state_dict()
    if "blocks.0.attn.qkv.weight" in state:  # a timm ViT
        mapped = {("encoder.tokenizer.proj." + k.split(".", 2)[2]) if k.startswith("patch_embed.proj.")
                  else "encoder." + k: v for k, v in state.items() if not k.startswith(("head", "fc_norm"))}
        if "encoder.pos_embed" in mapped and mapped["encoder.pos_embed"].shape != own["encoder.pos_embed"].shape:
            from timm.layers import resample_abs_pos_embed
            grid = model.cfg.grid
            mapped["encoder.pos_embed"] = resample_abs_pos_embed(mapped["encoder.pos_embed"], (grid, grid), num_prefix_tokens=1)
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
