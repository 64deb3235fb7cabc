"""A training run's settings: one JSON file per run, copied into the run folder.

Paths may use environment variables; $SKETCH_SEARCH_DATA defaults to ../shared/data beside the
repository, where the project's data lives.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model.retrieval import Fusion, RetrievalSettings

if TYPE_CHECKING:
    from .synth import SketchStyle

REPO = Path(__file__).resolve().parents[2]
DATA_VARIABLE = re.compile(r"\$(SKETCH_SEARCH_DATA\b|\{SKETCH_SEARCH_DATA\})")


def expand_path(path: str) -> Path:
    """~ and environment variables expanded, $SKETCH_SEARCH_DATA defaulting to ../shared/data beside
    the repository (without setting it in this process's environment); relative to the repository."""
    data = os.environ.get("SKETCH_SEARCH_DATA") or str(REPO.parent / "shared" / "data")
    p = Path(os.path.expandvars(os.path.expanduser(DATA_VARIABLE.sub(lambda _: data, path))))
    return p if p.is_absolute() else (REPO / p)


@dataclass(frozen=True)
class RealSketches:
    """Real sketches declared for training: a class-folder tree and QUERYCLASS -> image class."""
    dir: str
    map: dict[str, str]


@dataclass(frozen=True)
class TrainConfig:
    name: str
    images: str  # class-folder tree of training images (AID layout, or RSketch's image/ side)
    holdout: tuple[str, ...] = ()  # classes never trained on (the zero-shot protocol)
    real_sketches: tuple[RealSketches, ...] = ()
    per_class: int = 200  # images per class used for training (seeded choice)
    views: int = 2  # augmented (image, synthetic sketch) pairs per image, cached once
    model: str = "mlagt-lite0"  # a name in engine.model.CONFIGS
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init: str = "efficientnet_lite0"  # pretrained trunk: the packaged Lite0, a weights file, or ""
    freeze_upto: int = 4  # trunk blocks 0..freeze_upto stay at their pretrained values (their output is cached)
    seed: int = 0
    steps: int = 1000
    classes_per_batch: int = 16
    pairs_per_class: int = 4
    lr: float = 3e-4
    lr_trunk: float = 1e-4
    weight_decay: float = 0.05
    warmup: int = 50
    temperature: float = 0.07  # InfoNCE on the stage-1 CLS vectors
    instance_weight: float = 0.5  # share of the InfoNCE target on the sketch's own image (rest: its class)
    triplet_weight: float = 1.0  # MLAGT triplet on cross-attended CLS rows
    triplet_margin: float = 1.0
    checkpoint_every: int = 100
    log_every: int = 10
    threads: int = 0  # torch CPU threads (0: torch's default)
    # How the trained model is used for retrieval, written into every checkpoint's card (see
    # engine.model.retrieval): a pretrained descriptor fused into the stage-1 vector, and sketch views.
    # The JSON form is the card's: {"descriptor": ..., "model_weight": ...}.
    stage1_fusion: Fusion | None = None
    sketch_views: int = 1
    sketch_widen: int = 1  # also applied to the training sketches, as queries will be
    # Train for that use: InfoNCE on the fused stage-1 score (w cos CLS + (1 - w) cos descriptor), so
    # the CLS part learns what the fixed descriptor misses; and turn/mirror each cached sketch and
    # image feature map at random (aerial scenes and sketches have no "up").
    fused_infonce: bool = False
    rotate_pairs: bool = False
    # Overrides of the synthetic sketches' style (engine.training.synth.SketchStyle fields by name).
    sketch_style: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.classes_per_batch < 2 or self.pairs_per_class < 1 or self.views < 1:
            raise ValueError("steps, views and pairs_per_class must be >= 1 and classes_per_batch >= 2")
        if self.per_class < self.pairs_per_class:
            raise ValueError(f"per_class {self.per_class} is below pairs_per_class {self.pairs_per_class}")
        if not 0.0 <= self.instance_weight <= 1.0:
            raise ValueError("instance_weight must lie in [0, 1]")
        fusion = self.stage1_fusion
        card = {"stage1_fusion": fusion.to_card() if isinstance(fusion, Fusion) else fusion,
                "sketch_views": self.sketch_views, "sketch_widen": self.sketch_widen}
        object.__setattr__(self, "stage1_fusion", RetrievalSettings.from_card(card).fusion)  # JSON gives a dict
        if self.sketch_style:
            _ = self.style  # unknown or ill-typed keys fail here, before any work
        if self.fused_infonce and self.stage1_fusion is None:
            raise ValueError("fused_infonce needs a stage1_fusion entry (the descriptor and weight to train against)")

    @property
    def retrieval(self) -> RetrievalSettings:
        """How the trained model is used for retrieval (goes into every checkpoint's card)."""
        return RetrievalSettings(self.stage1_fusion, self.sketch_views, self.sketch_widen)

    @property
    def style(self) -> "SketchStyle":
        """The synthetic sketches' style: the defaults with sketch_style's overrides (lists as tuples)."""
        from .synth import SketchStyle  # OpenCV: the training extra, not imported with the config

        known = {f.name for f in fields(SketchStyle)}
        unknown = set(self.sketch_style) - known
        if unknown:
            raise ValueError(f"unknown sketch_style keys: {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(known))})")
        return SketchStyle(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.sketch_style.items()})

    def resolved(self, path: str) -> Path:
        return expand_path(path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        data["holdout"] = tuple(data.get("holdout", ()))
        data["real_sketches"] = tuple(RealSketches(**r) for r in data.get("real_sketches", ()))
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config not found: {path}")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        except TypeError as exc:
            raise ValueError(f"{path}: {exc}") from None
