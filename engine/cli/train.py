"""`sketch-search train`: train an MLAGT model from a run config (JSON); resumable."""
from __future__ import annotations

import json
from pathlib import Path

from . import UserError, require_torch


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model from a JSON run config (continues an interrupted run)")
    p.add_argument("config", help="run config JSON (see configs/default.json)")
    p.add_argument("--run-dir", help="run folder (default: runs/<config name>)")
    p.add_argument("--steps", type=int, help="override the config's number of steps")
    p.add_argument("--device", default="auto", help="auto (a GPU when present), cpu, cuda, mps")
    p.set_defaults(handler=run)


def run(args) -> int:
    from dataclasses import replace

    require_torch("train")

    from ..training.config import REPO, TrainConfig
    from ..training.loop import train

    cfg = TrainConfig.load(args.config)
    if args.steps is not None:
        if args.steps < 1:
            raise UserError(f"--steps must be at least 1, got {args.steps}")
        cfg = replace(cfg, steps=args.steps)
    run_dir = Path(args.run_dir) if args.run_dir else REPO / "runs" / cfg.name
    final = train(cfg, run_dir, on_log=lambda rec: print(json.dumps(rec), flush=True), device=args.device)
    print(f"trained {cfg.name}: {final}")
    return 0
