"""Export a checkpoint's stage-1 encoder to one ONNX file, for the ONNX Runtime search path
(`engine.onnx_embedder`), which needs neither PyTorch nor timm.

    python -m engine.onnx_export [--checkpoint C.safetensors] [--out C.onnx]

The graph maps a normalised (B, 3, S, S) float32 batch (any B) to the stage-1 vectors exactly as
`engine.embedder.Embedder` computes them for images: the CLS vector, unit length, and under the
card's `stage1_fusion` the pretrained descriptor beside it, fused by `engine.model.retrieval.fuse`
([sqrt(w) * CLS, sqrt(1 - w) * descriptor], each part unit length). Under a `drawing_weight`, tiles are
also drawn (engine.model.tile_drawing) and a second output gives the vectors of sketches, which are
not drawn. Sketch views are averaged outside the graph (per part), as the PyTorch path does.

Our weights are stored as float16 initializers, each turned back into float32 by a Cast node that ONNX
Runtime folds when it loads the file: the file is about half the size, the arithmetic stays float32.
The pretrained partner's weights are not stored at all: the file names, for each, its package, file
and key, and the ONNX engine reads them from the installed package (engine.onnx_partners). So that
they keep their names, the graph is traced with BatchNorm as its own node (ONNX Runtime folds it into
the convolution when it loads the file, as the exporter would have).
The file's metadata holds the source checkpoint's weights sha256 and the card entries the ONNX path
needs, so a file can be checked against the card it is paired with. Building needs torch, timm and
`onnx`; the output depends only on the checkpoint and the versions of those (no time stamps).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .embedder import Embedder
from .model.checkpoints import CheckpointError
from .model.stage1 import drawing_vector, stage1_outputs
from .model.package_weights import package_version, read_legacy_pth
from .model.pretrained import PooledTrunk
from .model.weight_files import sha256_of
from .onnx_embedder import FORMAT, INPUT, OUTPUT, SKETCH_OUTPUT
from .onnx_partners import PARTNERS_KEY, inference_session
from .runtime import default_model_path

OPSET = 17
# Tensors with fewer elements stay float32. Measured on the default model: rounding every weight to
# float16 moves stage-1 vectors by up to 1.2e-3, mostly through the small tensors (biases, the stem
# and depthwise convolutions, folded BatchNorm); keeping the 3 % of weights in tensors below this
# size in float32 brings that to 3.5e-4 for 0.5 MB more (16.0 MB instead of 31 MB in float32).
MIN_HALF_ELEMENTS = 16384
# The export checks itself against PyTorch on a few random inputs and refuses a worse file.
MAX_ABS_DIFF = 1e-3


class Stage1Graph(torch.nn.Module):
    """The stage-1 vector of an Embedder's images, as one module (what gets traced)."""

    def __init__(self, embedder: Embedder):
        super().__init__()
        self.model = embedder.model.to(memory_format=torch.contiguous_format)
        self.descriptor = embedder.descriptor
        if self.descriptor is not None:
            self.descriptor = self.descriptor.to(memory_format=torch.contiguous_format)
        self.retrieval = embedder.retrieval
        self.shared_level = embedder.shared_level
        self.mean, self.std = embedder.cfg.mean, embedder.cfg.std

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        tokens, glob = stage1_outputs(self.model, self.descriptor, self.shared_level, images)
        parts = [F.normalize(self.model.global_vector(tokens), dim=-1)]
        if glob is not None:
            parts.append(F.normalize(glob, dim=-1))
        if not self.retrieval.draws_tiles:
            return self.retrieval.fuse(parts)
        drawn = F.normalize(drawing_vector(self.descriptor, images, self.mean, self.std), dim=-1)
        return self.retrieval.fuse(parts + [drawn]), self.retrieval.fuse_sketch(parts)


def onnx_metadata(embedder: Embedder) -> dict[str, str]:
    """What the ONNX embedder needs from the card, and what ties the file to its checkpoint."""
    card = embedder.card
    cfg = embedder.cfg
    retrieval = embedder.retrieval.to_card()
    descriptor_dim = embedder.descriptor.num_features if embedder.descriptor is not None else 0
    entries = {
        "name": embedder.name,
        "identity": embedder.identity,
        "img_size": cfg.img_size,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "sketch_views": retrieval["sketch_views"],
        "stage1_fusion": retrieval.get("stage1_fusion"),
        "parts": [cfg.width] + ([descriptor_dim] if descriptor_dim else []),
        "vector_dim": embedder.vector_dim,
        "checkpoint": Path(card.get("path", "")).name,
    }
    return {"sketch_search.format": FORMAT, "sketch_search.weights_sha256": card["weights_sha256"],
            "sketch_search.card": json.dumps(entries, sort_keys=True)}


def halve_initializers(model) -> tuple[int, int]:
    """Store float32 initializers as float16 + a Cast back to float32, in place.
    Returns (tensors halved, tensors kept in float32)."""
    import onnx
    from onnx import helper, numpy_helper

    casts, kept = [], 0
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or init.data_location == onnx.TensorProto.EXTERNAL:
            continue
        value = numpy_helper.to_array(init)
        half = value.astype(np.float16)
        if value.size < MIN_HALF_ELEMENTS or not np.isfinite(half).all():
            kept += 1
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}__f16"))
        casts.append(helper.make_node("Cast", [f"{name}__f16"], [name], name=f"{name}__to_f32",
                                      to=onnx.TensorProto.FLOAT))
    nodes = casts + list(model.graph.node)  # casts first: the graph stays topologically sorted
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return len(casts), kept


DESCRIPTOR_PREFIX = "descriptor."  # Stage1Graph's attribute: its tensors are named descriptor.<path>


def externalize_partners(model, descriptor: torch.nn.Module | None) -> dict | None:
    """Leave the pretrained partner's weights out of `model` (in place): each initializer of the descriptor
    is checked equal to its package's tensor and marked as external data. Returns the PARTNERS_KEY
    entry (None when there is no partner)."""
    import onnx
    from onnx import numpy_helper

    if descriptor is None:
        return None
    files, arrays, where = [], [], {}
    for name, trunk in descriptor.named_modules():
        if not isinstance(trunk, PooledTrunk) or trunk.source is None:
            continue
        src = trunk.source
        path = src.path()
        files.append({"package": src.package, "file": src.file, "sha256": sha256_of(path),
                      "version": package_version(src.package)})
        arrays.append(read_legacy_pth(path))
        for timm_key, package_key in src.key_pairs().items():
            where[f"{DESCRIPTOR_PREFIX}{name + '.' if name else ''}net.{timm_key}"] = (len(files) - 1, package_key)
    tensors = []
    for init in model.graph.initializer:
        if not init.name.startswith(DESCRIPTOR_PREFIX):
            continue
        if init.name not in where:
            raise RuntimeError(f"the partner tensor {init.name} has no package to come from")
        index, key = where[init.name]
        value = numpy_helper.to_array(init)
        if not np.array_equal(value, arrays[index][key]):
            raise RuntimeError(f"the partner tensor {init.name} differs from {key} of {files[index]['file']}")
        tensors.append([init.name, index, key, list(value.shape)])
        init.ClearField("raw_data")
        init.ClearField("float_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        del init.external_data[:]
        for entry_key, entry_value in (("location", Path(files[index]["file"]).name), ("offset", "0"),
                                       ("length", str(value.nbytes))):
            entry = init.external_data.add()
            entry.key, entry.value = entry_key, entry_value
    return {"files": files, "tensors": tensors} if tensors else None


def _trace_to_onnx(module: Stage1Graph, size: int, path: Path) -> None:
    dummy = torch.zeros(2, 3, size, size)
    outputs = [OUTPUT, SKETCH_OUTPUT] if module.retrieval.draws_tiles else [OUTPUT]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(module, (dummy,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT], output_names=outputs,
                          dynamic_axes={name: {0: "batch"} for name in [INPUT] + outputs},
                          do_constant_folding=True, training=torch.onnx.TrainingMode.PRESERVE)


def largest_difference(embedder: Embedder, onnx_path: Path, batch: int = 3, seed: int = 0) -> float:
    """Max abs difference of the ONNX file's stage-1 vectors of tiles from PyTorch's on random inputs
    (tests/engine/test_onnx.py compares real tiles and sketches too)."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    size = embedder.cfg.img_size
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    expected = embedder.embed_images(images).cls
    mean = np.asarray(embedder.cfg.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(embedder.cfg.std, np.float32).reshape(1, 3, 1, 1)
    x = (images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0) - mean) / std
    session, _ = inference_session(onnx_path, ort.SessionOptions(), ["CPUExecutionProvider"])
    got = session.run([OUTPUT], {INPUT: np.ascontiguousarray(x, np.float32)})[0]
    return float(np.abs(got - expected).max())


def export_onnx(checkpoint: str | Path | None = None, out: str | Path | None = None, verify: bool = True) -> Path:
    """Write the ONNX file of a checkpoint (None = the shipped default model); returns its path.
    Default output: beside the checkpoint, with the suffix .onnx."""
    import onnx

    checkpoint = Path(checkpoint) if checkpoint else default_model_path()
    out = Path(out) if out else checkpoint.with_suffix(".onnx")
    torch.manual_seed(0)
    embedder = Embedder.from_checkpoint(checkpoint, device="cpu")
    if not embedder.card.get("weights_sha256"):
        raise CheckpointError(checkpoint, "only checkpoints with a model card (.safetensors + .json) can be "
                                          "exported to ONNX; official checkpoints run on the PyTorch engine")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        _trace_to_onnx(Stage1Graph(embedder).eval(), embedder.cfg.img_size, tmp)
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model)  # before the partners' weights leave it (the checker looks for their files)
        partners = externalize_partners(model, embedder.descriptor)
        halve_initializers(model)
        metadata = onnx_metadata(embedder)
        if partners:
            metadata[PARTNERS_KEY] = json.dumps(partners, sort_keys=True)
        for key, value in metadata.items():
            model.metadata_props.add(key=key, value=value)
        model.producer_name, model.producer_version = "sketch-search", FORMAT
        onnx.save(model, str(tmp))
        if verify:
            diff = largest_difference(embedder, tmp)
            if not diff <= MAX_ABS_DIFF:
                raise RuntimeError(f"the exported graph differs from PyTorch by {diff:.2e} (more than {MAX_ABS_DIFF})")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.onnx_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="model (.safetensors with its .json card); default: the shipped model")
    parser.add_argument("--out", help="ONNX file to write; default: beside the checkpoint, suffix .onnx")
    parser.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        out = export_onnx(args.checkpoint, args.out, verify=not args.no_verify)
    except CheckpointError as exc:
        print(f"onnx_export: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
