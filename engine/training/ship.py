"""Make a trained checkpoint the shipped default: half-precision weights plus a model card with
the architecture summary, training recipe, measured figures and licences.

    python -m engine.training.ship runs/lite0-default/step_01200.safetensors --figures figures.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..embedder import MODELS_DIR
from ..model.checkpoints import load_checkpoint, save_checkpoint
from .loop import LICENCES

MAX_BYTES = 25 * 1024 * 1024


def architecture_summary(cfg: dict) -> str:
    return (f"MLAGT with an ImageNet EfficientNet-Lite0 trunk as multi-level tokenizer (levels {cfg['trunk_levels']}, "
            f"averaged onto a {cfg['img_size'] // cfg['patch_size']}x{cfg['img_size'] // cfg['patch_size']} grid at "
            f"{cfg['img_size']} px), {cfg['depth']} transformer blocks of width {cfg['width']} ({cfg['heads']} heads, "
            f"keep rates {cfg['keep_rates']}), one cross-attention layer ({cfg['ca_heads']} heads) for stage-2 re-ranking")


def ship(checkpoint: Path, figures: dict, out: Path = MODELS_DIR / "default.safetensors", name: str | None = None) -> Path:
    model, card = load_checkpoint(checkpoint)
    training = card.get("training", {})
    new_card = {
        "name": name or card.get("name", model.cfg.name),
        "architecture": architecture_summary(model.cfg.to_dict()),
        "training": {**training, "source_checkpoint": checkpoint.name, "source_sha256": card.get("weights_sha256")},
        "figures": figures,
        "licences": LICENCES,
    }
    path = save_checkpoint(model, out, new_card, half=True)
    if path.stat().st_size > MAX_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size} bytes, over the 25 MB budget")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="make a trained checkpoint the shipped default model")
    p.add_argument("checkpoint")
    p.add_argument("--figures", required=True, help="JSON file of measured figures for the card")
    p.add_argument("--name")
    p.add_argument("--out", default=str(MODELS_DIR / "default.safetensors"))
    args = p.parse_args(argv)
    path = ship(Path(args.checkpoint), json.loads(Path(args.figures).read_text()), Path(args.out), args.name)
    print(f"shipped {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
