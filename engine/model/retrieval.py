"""How a model is used for retrieval: the model card's `stage1_fusion` and `sketch_views` entries as
one typed, checked value, the registry of fusion descriptors, and the one function that fuses.

Stage-1 fusion: a card may name a pretrained global descriptor to use beside the CLS vector
(`"stage1_fusion": {"descriptor": "efficientnet_lite0_gem", "model_weight": 0.5}`). The stage-1
vector is then [sqrt(w) * CLS, sqrt(1 - w) * descriptor], each part unit length, so a dot product
is w * cos(CLS) + (1 - w) * cos(descriptor). Measured in BENCHMARKS.md: it lifts real aeroplane
sketches against UC Merced from mAP 0.52 (CLS alone) to 0.70 with average pooling, and GeM pooling
(`efficientnet_lite0_gem`) does better on the validation protocol.

Sketch views: aerial imagery has no "up", so a card may set `"sketch_views": 4` (the four right-angle
rotations) or `8` (those and their mirror images); a sketch's stage-1 vector is then the mean over
its views, each part averaged and made unit length again. Only queries change, not tile vectors.

Sketch widening: `"sketch_widen": 3` thickens a sketch's strokes with a 3 x 3 minimum filter once it
is shrunk to the model's input size (engine.preprocess.sketch_canvas); 1 leaves them as drawn. Only
queries change.

Drawn tiles: `"stage1_fusion": {..., "drawing_weight": 0.5}` also draws each tile as a sketch (its
strongest edges in black on white, engine.model.tile_drawing) and scores the sketch's descriptor
against the drawing's with that share (a sketch is compared with a drawing, not only with a photo).
The drawing shares the descriptor's slot of the vector (`fuse_drawn_tile`): vectors keep their size.
Tile vectors change, so it is part of index keys.

Query expansion: `"query_expansion": 3` runs stage 1 a second time with the sketch's vector moved
toward its 3 best distinct matches (engine/expansion.py); 0 (cards without the entry) does not. Only
queries change.

Importing this module needs no torch (the ONNX Runtime path reads cards too); descriptor networks
are built on demand.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:
    import torch

SKETCH_VIEW_CHOICES = (1, 4, 8)
SKETCH_WIDEN_CHOICES = (1, 3, 5, 7)
MAX_QUERY_EXPANSION = 20
CARD_ENTRIES = ("stage1_fusion", "sketch_views", "sketch_widen", "query_expansion")  # what RetrievalSettings reads


@dataclass(frozen=True)
class FusionDescriptor:
    """A pretrained global descriptor a card may fuse with the CLS vector. Its network maps
    normalised images (B, 3, S, S) to vectors (B, num_features); training with `fused_infonce` also
    needs `from_block(feature_map, block)` (see engine.model.pretrained.PooledTrunk)."""
    name: str  # as written in model cards and index keys: never rename one
    builder: str  # "module:function" (relative to engine.model) returning the network, in eval mode
    # The trunk module of the model whose output this descriptor continues from (its `from_block`),
    # instead of reading the image again: the frozen early blocks the model and descriptor share run
    # once per tile (engine.model.stage1). None: the descriptor runs on the image.
    shared_from: str | None = None

    def build(self) -> "torch.nn.Module":
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module, __package__), function)()


# Adding a descriptor is one entry here (its network lives in the module the entry names).
FUSION_DESCRIPTORS: dict[str, FusionDescriptor] = {d.name: d for d in (
    FusionDescriptor("efficientnet_lite0_gap", ".pretrained:lite0_gap_network"),
    FusionDescriptor("efficientnet_lite0_gem", ".pretrained:lite0_gem_network"),
    # the same GeM descriptor on the model's own (frozen, half-stored) blocks 0-4: one trunk pass
    FusionDescriptor("efficientnet_lite0_gem_shared", ".pretrained:lite0_gem_network", shared_from="blocks.4"),
    # that one beside the ImageNet EfficientNet-Lite2 GeM descriptor, which reads the tile (a second
    # view of it by a larger network; each part half of the descriptor's share)
    FusionDescriptor("efficientnet_lite0_gem_shared+lite2_gem", ".pretrained:lite0_lite2_gem_network",
                     shared_from="blocks.4"),
)}


def build_descriptor(name: str) -> "torch.nn.Module":
    """The descriptor network registered under `name`."""
    return FUSION_DESCRIPTORS[name].build()


def _join(a, b):
    if isinstance(a, np.ndarray):
        return np.concatenate([a, b], axis=-1)
    import torch  # only reached with tensors, so torch is there

    return torch.cat([a, b], dim=-1)


def fuse(model_part, descriptor_part, model_weight: float):
    """[sqrt(w) * model_part, sqrt(1 - w) * descriptor_part] along the last axis (torch tensors or
    numpy arrays). With unit-length parts, a dot product of two fused vectors is
    w * cos(model) + (1 - w) * cos(descriptor)."""
    return _join(model_part * model_weight ** 0.5, descriptor_part * (1 - model_weight) ** 0.5)


def fuse_drawn_tile(model_part, descriptor_part, drawing_part, model_weight: float, drawing_weight: float):
    """A tile's stage-1 vector when its drawing counts too: [sqrt(w) * model_part, (p * descriptor_part
    + e * drawing_part) / sqrt(p + e)] with e the drawing's weight and p = 1 - w - e the photo's. Against
    a sketch's `fuse(model_part, descriptor_part, w)` the dot product is w * cos(model) + p *
    cos(descriptor, photo) + e * cos(descriptor, drawing): the drawing shares the descriptor's slot, so
    the vector keeps its number of dimensions and indexes their size. Such tile vectors are shorter than 1."""
    photo = 1 - model_weight - drawing_weight
    slot = (photo * descriptor_part + drawing_weight * drawing_part) / max(photo + drawing_weight, 1e-12) ** 0.5
    return _join(model_part * model_weight ** 0.5, slot)


@dataclass(frozen=True)
class Fusion:
    """The card's `stage1_fusion`: which descriptor, and the model's share of the score."""
    descriptor: str
    model_weight: float  # kept as the card writes it (0.5, 1): it is part of tile index keys
    # The share of the score given to the descriptor of each tile drawn as a sketch
    # (engine.model.tile_drawing), taken from the photo's descriptor; 0: tiles are not drawn.
    drawing_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.descriptor not in FUSION_DESCRIPTORS:
            raise ValueError(f"unknown descriptor {self.descriptor!r} (one of {', '.join(FUSION_DESCRIPTORS)})")
        for name in ("model_weight", "drawing_weight"):
            w = getattr(self, name)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], not {w!r}")
        if self.model_weight + self.drawing_weight > 1:
            raise ValueError(f"model_weight and drawing_weight add up to more than 1 "
                             f"({self.model_weight} + {self.drawing_weight})")

    @classmethod
    def from_card(cls, entry: Mapping[str, Any]) -> "Fusion":
        if not isinstance(entry, Mapping):
            raise ValueError(f"expected {{'descriptor': ..., 'model_weight': ...}}, not {entry!r}")
        unknown = set(entry) - {"descriptor", "model_weight", "drawing_weight"}
        if unknown or "descriptor" not in entry or "model_weight" not in entry:
            raise ValueError(f"expected the keys descriptor, model_weight and optionally drawing_weight, "
                             f"got {sorted(entry)}")
        return cls(entry["descriptor"], entry["model_weight"], entry.get("drawing_weight", 0.0))

    @classmethod
    def parse(cls, text: str) -> "Fusion | None":
        """'DESCRIPTOR:WEIGHT' or 'DESCRIPTOR:WEIGHT:DRAWING_WEIGHT' (a command-line option) -> a
        Fusion; 'none' -> None."""
        if text.strip().lower() == "none":
            return None
        descriptor, *weights = text.split(":")
        try:
            if not 1 <= len(weights) <= 2:
                raise ValueError("expected one or two weights")
            return cls(descriptor, *(float(w) for w in weights))
        except ValueError as exc:
            raise ValueError(f"a fusion is DESCRIPTOR:WEIGHT[:DRAWING_WEIGHT] with DESCRIPTOR one of "
                             f"{', '.join(FUSION_DESCRIPTORS)} and weights in [0, 1] adding up to at most 1, "
                             f"or 'none'; got {text!r} ({exc})") from None

    def to_card(self) -> dict[str, Any]:
        card = {"descriptor": self.descriptor, "model_weight": self.model_weight}
        if self.drawing_weight:  # cards from before drawings stay byte-identical
            card["drawing_weight"] = self.drawing_weight
        return card

    @property
    def key(self) -> str:
        """What the fusion adds to a model's identity (and so to tile index keys): byte for byte
        what indexes made before this class existed hold; the drawing (with how it is drawn) when set."""
        from .tile_drawing import DRAWING_NAME  # no torch at import

        drawn = f"+drawn:{DRAWING_NAME}@{self.drawing_weight}" if self.drawing_weight else ""
        return f"+{self.descriptor}@{self.model_weight}{drawn}"


@dataclass(frozen=True)
class RetrievalSettings:
    fusion: Fusion | None = None
    sketch_views: int = 1
    sketch_widen: int = 1
    query_expansion: int = 0  # best distinct matches a search's second stage-1 pass moves toward

    def __post_init__(self) -> None:
        if self.fusion is not None and not isinstance(self.fusion, Fusion):
            raise ValueError(f"fusion must be a Fusion or None, not {self.fusion!r}")
        if isinstance(self.sketch_views, bool) or self.sketch_views not in SKETCH_VIEW_CHOICES:
            raise ValueError(f"unusable sketch_views entry {self.sketch_views!r} "
                             f"(one of {', '.join(map(str, SKETCH_VIEW_CHOICES))})")
        if isinstance(self.sketch_widen, bool) or self.sketch_widen not in SKETCH_WIDEN_CHOICES:
            raise ValueError(f"unusable sketch_widen entry {self.sketch_widen!r} "
                             f"(one of {', '.join(map(str, SKETCH_WIDEN_CHOICES))})")
        q = self.query_expansion
        if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= MAX_QUERY_EXPANSION:
            raise ValueError(f"unusable query_expansion entry {q!r} (a whole number from 0 to {MAX_QUERY_EXPANSION})")

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> "RetrievalSettings":
        """The retrieval entries of a model card (or of anything shaped like one); a ValueError
        whose message names the entry when one is unusable."""
        entry = card.get("stage1_fusion")
        try:
            fusion = Fusion.from_card(entry) if entry else None
        except ValueError as exc:
            raise ValueError(f"unusable stage1_fusion entry {entry}: {exc}") from None
        return cls(fusion, card.get("sketch_views", 1), card.get("sketch_widen", 1), card.get("query_expansion", 0))

    def to_card(self) -> dict[str, Any]:
        """The card entries, as cards have always written them (stage1_fusion only when set)."""
        card: dict[str, Any] = {"sketch_views": self.sketch_views}
        if self.sketch_widen != 1:  # cards from before the setting existed stay byte-identical
            card["sketch_widen"] = self.sketch_widen
        if self.query_expansion:
            card["query_expansion"] = self.query_expansion
        if self.fusion is not None:
            card["stage1_fusion"] = self.fusion.to_card()
        return card

    def apply_to(self, card: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `card` whose retrieval entries are exactly these settings (`card | to_card()`
        would keep an entry that to_card leaves out, such as a sketch_widen other than 1)."""
        kept = {k: v for k, v in card.items() if k not in CARD_ENTRIES}
        return kept | self.to_card()

    def fuse(self, parts: list):
        """A tile's stage-1 vector from its unit-length parts: [CLS] alone, [CLS, descriptor] fused,
        or [CLS, descriptor, descriptor of the drawn tile] under a drawing_weight."""
        if self.fusion is None:
            return parts[0]
        if len(parts) == 3:
            return fuse_drawn_tile(*parts, self.fusion.model_weight, self.fusion.drawing_weight)
        return fuse(parts[0], parts[1], self.fusion.model_weight)

    def fuse_sketch(self, parts: list):
        """A sketch's stage-1 vector from its unit-length parts [CLS] or [CLS, descriptor]. A sketch is
        already a drawing: its descriptor stands for both the photo's and the drawing's shares."""
        if self.fusion is None:
            return parts[0]
        return fuse(parts[0], parts[1], self.fusion.model_weight)

    @property
    def draws_tiles(self) -> bool:
        return self.fusion is not None and self.fusion.drawing_weight > 0

    def model_identity(self, card: Mapping[str, Any], name: str) -> str:
        """A model's identity in tile index keys: its weights (or name and path), plus the fusion,
        which changes tile vectors (sketch views, widening and expansion change only queries, so they are not in it)."""
        base = card.get("weights_sha256") or f"{name}:{card.get('path', '')}"
        return base + (self.fusion.key if self.fusion is not None else "")
