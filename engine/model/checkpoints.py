"""Our checkpoint format: two files side by side, `NAME.safetensors` (weights) and `NAME.json` (the
model card: architecture config, preprocessing, training data and recipe, metrics, licence, how
retrieval uses the model, and the sha256 of the weights, verified on every load). `load_any` also
opens the official format (engine.model.official). Every failure is a CheckpointError naming the file.

Importing this module needs no torch: the ONNX Runtime path reads cards and catches its errors.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .config import ModelConfig
from .official import load_official
from .weight_files import CheckpointError, existing_file, load_safetensors, load_state_into, sha256_of

if TYPE_CHECKING:
    from .network import MLAGT

__all__ = ["CARD_FORMAT", "CheckpointError", "card_path_for", "load_any", "load_checkpoint", "parse_card",
           "read_card", "save_checkpoint"]

CARD_FORMAT = "sketch-search-model/1"


def parse_card(card_file: Path) -> dict:
    """A model card's JSON, checked to be one; every failure a CheckpointError naming the file."""
    try:
        card = json.loads(Path(card_file).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(card_file, f"model card is not valid JSON ({exc})") from None
    if card.get("format") != CARD_FORMAT:
        raise CheckpointError(card_file, f"not a model card of format {CARD_FORMAT} (format: {card.get('format')!r})")
    return card


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
    card_file = existing_file(card_file) if card_file.exists() or path.suffix == ".json" else None
    if card_file is None:
        raise CheckpointError(path, f"model card {card_path_for(path).name} not found beside the weights")
    card = parse_card(card_file)
    weights = card_file.with_name(card.get("weights_file", card_file.with_suffix(".safetensors").name))
    return existing_file(weights), card


def load_checkpoint(path: Path | str) -> tuple[MLAGT, dict[str, Any]]:
    """Load our format, verifying the weights against the card's sha256. Returns (model, card); the
    card's "path" is the weights file (files the card names, such as a sketch mean, lie beside it)."""
    from .network import MLAGT

    weights, card = read_card(path)
    if sha256_of(weights) != card.get("weights_sha256"):
        raise CheckpointError(weights, "sha256 differs from the model card's: the file was changed or is truncated")
    try:
        cfg = ModelConfig.from_dict(card["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(card_path_for(weights), f"bad model config in card ({exc})") from None
    state = load_safetensors(weights)
    model = MLAGT(cfg)
    load_state_into(model, state, weights)
    return model.eval(), {**card, "path": str(weights)}


def load_any(path: Path | str, heads: int = 12) -> tuple[MLAGT, dict[str, Any]]:
    """Our format (.safetensors/.json) or the official one (.pth/.pt), by extension."""
    path = Path(path).expanduser()
    if path.suffix in (".safetensors", ".json"):
        return load_checkpoint(path)
    model = load_official(path, heads=heads)
    return model, {"name": path.stem, "config": model.cfg.to_dict(), "format": "mlagt-official"}
