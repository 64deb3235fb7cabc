"""The encoder API of `engine.embedder.Embedder` for stage 1, run by ONNX Runtime: no torch, timm
or torchvision is imported, so a machine without a GPU can search with a small environment.

The ONNX file (made by `python -m engine.onnx_export`) lies beside its checkpoint with the suffix
.onnx and carries in its metadata the weights sha256 and the card entries it was made from; a file
that does not belong to the card it is paired with is refused. Vectors equal the PyTorch path's
(within float32 rounding, measured in tests/engine/test_onnx.py), and so does `identity`: both
runtimes share one tile index. Stage 2 (cross-attention re-ranking) needs the PyTorch engine.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .embeddings import Embeddings
from .model.checkpoints import CheckpointError, card_path_for, parse_card
from .model.retrieval import RetrievalSettings
from .model.sketch_centering import centred, load_sketch_centering
from .onnx_partners import inference_session
from .preprocess import ImageLike, dihedral_views, normalise_batch, prepare_image, prepare_sketch
from .runtime import DEFAULT_CHECKPOINT, default_model_path

FORMAT = "sketch-search-onnx/1"
INPUT, OUTPUT = "images", "stage1"
SKETCH_OUTPUT = "sketch_stage1"  # only in files of cards with a drawing_weight: sketches are not drawn
EXPORT_COMMAND = "python -m engine.onnx_export --checkpoint"
NORM_EPS = 1e-12  # as torch.nn.functional.normalize


class Stage2NeedsTorch(ValueError):
    """Stage 2 asked of the ONNX Runtime encoder; the message is one line meant for the user."""

    def __init__(self):
        super().__init__("stage 2 (cross-attention re-ranking) needs the PyTorch engine; this one runs the model "
                         "with ONNX Runtime (stage 1 only): search without stage 2, or install PyTorch")


@dataclass(frozen=True)
class OnnxModelConfig:
    """The few entries of a model config that searching needs."""
    name: str
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def onnx_devices() -> list[str]:
    """Device choices under ONNX Runtime: 'auto', 'cpu', and 'cuda' where its CUDA provider exists."""
    import onnxruntime as ort

    return ["auto", "cpu"] + (["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else [])


def card_identity(card: dict) -> str:
    """The model identity of engine.embedder.Embedder.identity, from the card alone."""
    name = card.get("name") or card.get("config", {}).get("name", "")
    return RetrievalSettings.from_card(card).model_identity(card, name)


def _usable_cores() -> int:
    """Physical cores among the CPUs this process may run on (a container's or taskset's limit):
    one thread per core, as PyTorch does; a second thread on a hyper-thread sibling brings little
    to convolutions and contends with the tile reader."""
    if not hasattr(os, "sched_getaffinity"):
        return os.cpu_count() or 1
    cpus = os.sched_getaffinity(0)
    cores = set()
    for cpu in cpus:
        try:
            siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
        except OSError:
            siblings = str(cpu)
        cores.add(siblings)
    return max(1, len(cores))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), NORM_EPS)


def _read_card(card_file: Path) -> dict:
    if not card_file.is_file():
        raise CheckpointError(card_file, "model card not found (the ONNX file is checked against it)")
    return parse_card(card_file)


def _providers(device: str | None) -> tuple[list, str]:
    """ONNX Runtime providers for a device choice, and the device's kind ('cpu' or 'cuda')."""
    import onnxruntime as ort

    name = (device or "auto").lower()
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if name == "auto":
        name = "cuda" if cuda else "cpu"
    if name == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not cuda:
            raise ValueError(f"device {device!r} requested but this ONNX Runtime has no CUDA provider "
                             f"(use cpu, or the PyTorch engine)")
        index = name.partition(":")[2]
        if index and not index.isdigit():
            raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"], "cuda"
    raise ValueError(f"device {device!r} is not available with ONNX Runtime: use auto or cpu"
                     + (" or cuda" if cuda else ""))


class OnnxEmbedder:
    def __init__(self, onnx_file: str | Path, card: dict, device: str | None = None, batch_size: int | None = None,
                 threads: int | None = None):
        import onnxruntime as ort

        self.onnx_file = Path(onnx_file)
        self.card = card
        try:
            self.retrieval = RetrievalSettings.from_card(card)
        except ValueError as exc:
            raise CheckpointError(card.get("path", self.onnx_file), f"model card has an {exc}") from None
        providers, self.device = _providers(device)
        options = ort.SessionOptions()
        self.threads = threads or _usable_cores()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings from ONNX Runtime's optimizer are not the user's business
        try:
            self.session, _ = inference_session(self.onnx_file, options, providers)
        except CheckpointError:
            raise
        except Exception as exc:  # ONNX Runtime raises its own exception types for unreadable files
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise CheckpointError(self.onnx_file, f"not a readable ONNX model ({first})") from None
        self.meta = self._check_metadata()
        self.cfg = OnnxModelConfig(self.meta["name"], int(self.meta["img_size"]),
                                   tuple(self.meta["mean"]), tuple(self.meta["std"]))
        self.parts = [int(n) for n in self.meta["parts"]]
        self.batch_size = batch_size or 32
        # a file made for a card that draws tiles has the sketch output (its stage1_fusion, checked above, says so)
        self.sketch_output = SKETCH_OUTPUT if self.retrieval.draws_tiles else OUTPUT
        self.centering = load_sketch_centering(card, self.vector_dim, self.identity)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str | None = None,
                        batch_size: int | None = None) -> "OnnxEmbedder":
        """The checkpoint's ONNX file (NAME.onnx beside NAME.safetensors / NAME.json; an .onnx path
        names it directly), checked against the card NAME.json."""
        path = Path(path).expanduser() if path else default_model_path()
        if path.suffix not in (".safetensors", ".json", ".onnx"):
            raise CheckpointError(path, "this checkpoint format runs on the PyTorch engine only, which is not "
                                        "installed here (ONNX Runtime runs our .safetensors models exported to .onnx)")
        onnx_file, card_file = path.with_suffix(".onnx"), card_path_for(path)
        if not onnx_file.is_file():
            if path == DEFAULT_CHECKPOINT:
                raise CheckpointError(onnx_file, "the default model's ONNX file is not installed "
                                                 f"(make it with `{EXPORT_COMMAND} {path}`, or install PyTorch)")
            raise CheckpointError(onnx_file, "not found: ONNX Runtime needs the model exported beside its checkpoint "
                                             f"(`{EXPORT_COMMAND} {path.with_suffix('.safetensors')}` on a machine "
                                             f"with PyTorch), or install PyTorch")
        card = {**_read_card(card_file), "path": str(path)}
        return cls(onnx_file, card, device, batch_size)

    def _check_metadata(self) -> dict:
        """The card entries stored in the ONNX file, after checking that they are this card's."""
        props = self.session.get_modelmeta().custom_metadata_map
        if props.get("sketch_search.format") != FORMAT:
            raise CheckpointError(self.onnx_file, f"not an ONNX model of format {FORMAT} "
                                                  f"(export it with `{EXPORT_COMMAND} CHECKPOINT`)")
        meta = json.loads(props["sketch_search.card"])
        card, cfg = self.card, self.card.get("config", {})
        theirs, ours = props.get("sketch_search.weights_sha256", ""), card.get("weights_sha256", "")
        weights = Path(card.get("path", "CHECKPOINT")).with_suffix(".safetensors")
        redo = f"export it again with `{EXPORT_COMMAND} {weights}`"
        if theirs != ours:
            raise CheckpointError(self.onnx_file, f"was exported from other weights (sha256 {theirs[:12]}) than its "
                                                  f"model card names ({ours[:12]}): {redo}")
        retrieval = self.retrieval.to_card()
        expected = {"img_size": cfg.get("img_size"), "mean": list(cfg.get("mean", [])), "std": list(cfg.get("std", [])),
                    "sketch_views": retrieval["sketch_views"], "stage1_fusion": retrieval.get("stage1_fusion"),
                    "identity": card_identity(card)}
        differ = [key for key, value in expected.items() if meta.get(key) != value]
        if differ:
            raise CheckpointError(self.onnx_file, f"its {', '.join(differ)} differ from the model card's: {redo}")
        return meta

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def fusion(self):
        return self.retrieval.fusion

    @property
    def sketch_views(self) -> int:
        return self.retrieval.sketch_views

    @property
    def identity(self) -> str:
        """Equal to engine.embedder.Embedder.identity for the same checkpoint (checked at load)."""
        return self.meta["identity"]

    @property
    def vector_dim(self) -> int:
        return sum(self.parts)

    @property
    def device_description(self) -> str:
        if self.device == "cuda":
            return "CUDA (ONNX Runtime)"
        return f"CPU: {platform.processor() or platform.machine()} (ONNX Runtime, {self.threads} threads)"

    def embed_array(self, batch: np.ndarray, output: str = OUTPUT) -> np.ndarray:
        """Normalised float32 (B, 3, S, S) -> stage-1 vectors (B, D) of tiles (or, with `output`
        SKETCH_OUTPUT, of sketches), in chunks of batch_size."""
        out = [self.session.run([output], {INPUT: np.ascontiguousarray(batch[i:i + self.batch_size], np.float32)})[0]
               for i in range(0, len(batch), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.vector_dim), np.float32)

    def prepare_batch(self, images: np.ndarray) -> np.ndarray:
        """uint8 tiles (B, S, S, 3) at the model's input size -> normalised float32 (B, 3, S, S), the
        input of `embed_prepared` (the tile reader runs this in its threads)."""
        return normalise_batch(images, self.cfg.mean, self.cfg.std)

    def embed_prepared(self, prepared: np.ndarray, with_tokens: bool = False) -> Embeddings:
        if with_tokens:
            raise Stage2NeedsTorch()
        return Embeddings(self.embed_array(prepared), None)

    def embed_images(self, images: Iterable[ImageLike] | np.ndarray, with_tokens: bool = False) -> Embeddings:
        """Images as paths, PIL images, or uint8 arrays (one array of shape (B, H, W, 3) works too)."""
        if with_tokens:
            raise Stage2NeedsTorch()
        size, mean, std = self.cfg.img_size, self.cfg.mean, self.cfg.std
        if (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4
                and images.shape[1:] == (size, size, 3)):  # tiles read at the model's size: one batch
            return self.embed_prepared(self.prepare_batch(images))
        images = list(images) if not isinstance(images, np.ndarray) else images
        out = [self.embed_array(np.stack([prepare_image(im, size, mean, std) for im in images[i:i + self.batch_size]]))
               for i in range(0, len(images), self.batch_size)]
        return Embeddings(np.concatenate(out) if out else np.zeros((0, self.vector_dim), np.float32), None)

    def embed_sketches(self, sketches: Sequence[ImageLike], with_tokens: bool = False) -> Embeddings:
        """Sketches -> stage-1 vectors; with sketch_views > 1 each part of the vector is averaged over
        the sketch's turned (and mirrored) views and made unit length again, then the card's sketch
        centering applies, as the PyTorch path does."""
        if with_tokens:
            raise Stage2NeedsTorch()
        if len(sketches) == 0:
            return Embeddings(np.zeros((0, self.vector_dim), np.float32), None)
        size, mean, std = self.cfg.img_size, self.cfg.mean, self.cfg.std
        batch = np.stack([prepare_sketch(s, size, mean, std, self.retrieval.sketch_widen) for s in sketches])
        views = self.sketch_views
        if views == 1:
            return centred(Embeddings(self.embed_array(batch, self.sketch_output), None), self.centering)
        fused = self.embed_array(dihedral_views(batch, views), self.sketch_output).reshape(len(batch), views, -1)
        # each part is its unit vector times a constant scale: averaging then normalising undoes the scale
        bounds = np.cumsum([0] + self.parts)
        parts = [_unit(fused[:, :, a:b].mean(axis=1)) for a, b in zip(bounds[:-1], bounds[1:])]
        return centred(Embeddings(self.retrieval.fuse_sketch(parts).astype(np.float32), None), self.centering)

    def pair_scores(self, sketch_tokens, image_tokens) -> np.ndarray:
        raise Stage2NeedsTorch()
