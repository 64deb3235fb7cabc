"""Reading weight files without running code: weights-only loaders, checksums, and loading a state
dict into a model with every mismatch reported. Every failure is one CheckpointError naming the file.

Importing this module needs no torch (the ONNX Runtime path uses its errors and checksums).
"""
from __future__ import annotations

import hashlib
import pickle
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:
    import torch


class CheckpointError(ValueError):
    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = Path(path), problem


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def existing_file(path: Path | str) -> Path:
    """The path, expanded, if it names a non-empty file; else a CheckpointError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "file is empty")
    return path


def torch_load_weights_only(path: Path | str) -> Any:
    """torch.load with weights_only=True and errors in plain words."""
    import torch

    path = existing_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(path, f"refused: it holds more than plain weights and would run code on load ({first})") \
            from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, struct.error) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(path, f"not a readable PyTorch checkpoint, truncated or corrupt ({first})") from None


def load_safetensors(path: Path | str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(path, f"not a readable safetensors file ({exc})") from None


def read_weights_file(path: Path | str) -> dict[str, torch.Tensor]:
    """A plain state dict from .safetensors, .npz or a weights-only .pth/.bin."""
    import torch

    path = existing_file(path)
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    if path.suffix == ".npz":
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
