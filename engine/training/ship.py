"""Make a trained checkpoint the shipped default: half-precision weights plus a model card with
the architecture summary, training recipe, measured figures, licences, and how retrieval uses the
model (stage-1 fusion, sketch views and widening: taken from the checkpoint's card, which has them
from the run config, unless given here).

    python -m engine.training.ship runs/lite0-v3/step_00450.safetensors --figures figures.json \
        [--fusion efficientnet_lite0_gem_shared:0.5[:DRAWING]] [--sketch-views 8] [--sketch-widen 3]
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ..model.checkpoints import load_checkpoint, save_checkpoint
from ..model.retrieval import SKETCH_VIEW_CHOICES, SKETCH_WIDEN_CHOICES, Fusion, RetrievalSettings
from ..runtime import DEFAULT_CHECKPOINT
from .loop import LICENCES

MAX_BYTES = 25 * 1024 * 1024


def architecture_summary(cfg: dict) -> str:
    return (f"MLAGT with an ImageNet EfficientNet-Lite0 trunk as multi-level tokenizer (levels {cfg['trunk_levels']}, "
            f"averaged onto a {cfg['img_size'] // cfg['patch_size']}x{cfg['img_size'] // cfg['patch_size']} grid at "
            f"{cfg['img_size']} px), {cfg['depth']} transformer blocks of width {cfg['width']} ({cfg['heads']} heads, "
            f"keep rates {cfg['keep_rates']}), one cross-attention layer ({cfg['ca_heads']} heads) "
            "for stage-2 re-ranking")


UNSET = object()


def ship(checkpoint: Path, figures: dict, out: Path = DEFAULT_CHECKPOINT, name: str | None = None,
         fusion: Fusion | None = UNSET, sketch_views: int | None = None, sketch_widen: int | None = None,
         query_expansion: int | None = None) -> Path:
    """fusion: a Fusion, None for none, or UNSET to keep the checkpoint's; sketch_views, sketch_widen
    and query_expansion: None keeps the checkpoint's."""
    model, card = load_checkpoint(checkpoint)
    retrieval = RetrievalSettings.from_card(card)
    if fusion is not UNSET:
        retrieval = replace(retrieval, fusion=fusion)
    if sketch_views:
        retrieval = replace(retrieval, sketch_views=sketch_views)
    if sketch_widen:
        retrieval = replace(retrieval, sketch_widen=sketch_widen)
    if query_expansion is not None:
        retrieval = replace(retrieval, query_expansion=query_expansion)
    training = card.get("training", {})
    new_card = {
        "name": name or card.get("name", model.cfg.name),
        "architecture": architecture_summary(model.cfg.to_dict()),
        "training": {**training, "source_checkpoint": checkpoint.name, "source_sha256": card.get("weights_sha256")},
        "figures": figures,
        "licences": LICENCES,
        **retrieval.to_card(),
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
    p.add_argument("--out", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--fusion", help="stage-1 fusion as DESCRIPTOR:WEIGHT (model share) or "
                                    "DESCRIPTOR:WEIGHT:DRAWING_WEIGHT (also the share of the tiles' drawings), "
                                    "or 'none' (default: as in the checkpoint's card)")
    p.add_argument("--sketch-views", type=int, choices=SKETCH_VIEW_CHOICES,
                   help="average each sketch over its 4 rotations or 8 rotations and mirrors (default: as in the card)")
    p.add_argument("--sketch-widen", type=int, choices=SKETCH_WIDEN_CHOICES,
                   help="thicken sketch strokes with an N x N minimum filter at the model's input size "
                        "(default: as in the card)")
    p.add_argument("--query-expansion", type=int, metavar="N",
                   help="searches run stage 1 again toward their N best distinct matches; 0: none "
                        "(default: as in the card)")
    args = p.parse_args(argv)
    try:
        fusion = UNSET if args.fusion is None else Fusion.parse(args.fusion)
    except ValueError as exc:
        p.error(f"--fusion: {exc}")
    try:
        path = ship(Path(args.checkpoint), json.loads(Path(args.figures).read_text()), Path(args.out), args.name,
                    fusion, args.sketch_views, args.sketch_widen, args.query_expansion)
    except ValueError as exc:
        p.error(str(exc))
    print(f"shipped {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
