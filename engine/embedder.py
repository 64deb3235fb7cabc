"""The encoder API everything else uses: sketches and images in, CLS vectors and tokens out;
sketch-image token pairs scored with the cross-attention module.

Scores are cosine similarities (higher = better); the official L2 distance between normalised
vectors is sqrt(2 - 2 * score), so both rank identically.

How a card asks the model to be used for retrieval (a pretrained descriptor fused into the stage-1
vector, sketch views) is `engine.model.retrieval.RetrievalSettings`; the fusion itself is its
`fuse`, shared with the ONNX export and training.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .cuda_graphs import GraphedCalls
from .device import describe_device, pick_device
from .embeddings import Embeddings
from .model import MLAGT
from .model.checkpoints import CheckpointError, load_any
from .model.retrieval import Fusion, RetrievalSettings, build_descriptor
from .model.sketch_centering import centred, load_sketch_centering
from .model.stage1 import SharedTrunkError, drawing_vector, shared_level, stage1_outputs
from .preprocess import ImageLike, normalise_batch, prepare_image, prepare_sketch
from .runtime import DEFAULT_CHECKPOINT, default_model_path


def dihedral_views(batch: torch.Tensor, views: int) -> torch.Tensor:
    """(B, C, S, S) -> (B * views, C, S, S): each input followed by its rotations by 90, 180, 270
    degrees, then (views == 8) the same four of its mirror image."""
    out = []
    for image in batch:
        for k in range(views):
            turned = torch.rot90(image, k % 4, dims=(1, 2))
            out.append(torch.flip(turned, dims=(2,)) if k >= 4 else turned)
    return torch.stack(out)


def _is_tile_batch(images, size: int) -> bool:
    """A non-empty uint8 array (B, size, size, 3): tiles as the tile reader gives them."""
    return (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4
            and images.shape[1:] == (size, size, 3) and len(images) > 0)


class Embedder:
    def __init__(self, model: MLAGT, card: dict | None = None, device: str | torch.device | None = None,
                 batch_size: int | None = None):
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.model = model.eval().to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.card = card or {}
        self.cfg = model.cfg
        # GPUs run in half precision; CPUs stay in float32 (fp16 matmuls are slow there).
        self.half = self.device.type in ("cuda", "mps")
        # Channels-last convolutions run about 1.5x faster on CPU for the CNN trunk tokenizer.
        self.channels_last = model.cfg.tokenizer == "timm"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.batch_size = batch_size or (128 if self.half else 32)
        # On a GPU every chunk runs at the one shape (batch_size), short ones padded: cuDNN builds its
        # plans per input shape, and a build's short batches (a region's last, nodata tiles left out)
        # come in about ten sizes. A first pass on an H200 ran at a thirteenth of the warm rate
        # (BENCHMARKS.md, "On a GPU"). The padding costs under a batch per region; on a CPU, compute.
        self.fixed_batch = self.device.type == "cuda"
        # An experiment, off until measured on a GPU (scripts/gpu): the forward replayed from CUDA graphs.
        self.cuda_graphs = False
        self._graphed = GraphedCalls(self._forward)
        try:
            self.retrieval = RetrievalSettings.from_card(self.card)
        except ValueError as exc:
            raise CheckpointError(self.card.get("path", self.name), f"model card has an {exc}") from None
        self.descriptor, self.shared_level = None, None
        if self.fusion is not None:
            try:
                self.shared_level = shared_level(model, self.fusion.descriptor)
            except SharedTrunkError as exc:
                raise CheckpointError(self.card.get("path", self.name), f"model card's stage1_fusion: {exc}") from None
            self.descriptor = build_descriptor(self.fusion.descriptor).to(self.device)
            if self.channels_last:
                self.descriptor = self.descriptor.to(memory_format=torch.channels_last)
        self.centering = load_sketch_centering(self.card, self.vector_dim, self.identity)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str | None = None,
                        batch_size: int | None = None, heads: int = 12) -> "Embedder":
        path = Path(path) if path else default_model_path()
        if not path.exists() and path == DEFAULT_CHECKPOINT:
            raise CheckpointError(path, "the default model is not installed (run `make train` or name --checkpoint)")
        model, card = load_any(path, heads=heads)
        card = {**card, "path": str(path)}
        return cls(model, card, device, batch_size)

    @property
    def name(self) -> str:
        return self.card.get("name") or self.cfg.name

    @property
    def fusion(self) -> Fusion | None:
        return self.retrieval.fusion

    @property
    def sketch_views(self) -> int:
        return self.retrieval.sketch_views

    @sketch_views.setter
    def sketch_views(self, views: int) -> None:  # benchmarks time one view against the card's
        self.retrieval = replace(self.retrieval, sketch_views=views)

    @property
    def identity(self) -> str:
        """Changes whenever the weights or the stage-1 vector change: part of the tile index key."""
        return self.retrieval.model_identity(self.card, self.name)

    @property
    def vector_dim(self) -> int:
        """Length of the stage-1 vectors (the CLS width, plus the descriptor's under fusion)."""
        return self.cfg.width + (self.descriptor.num_features if self.descriptor is not None else 0)

    @property
    def device_description(self) -> str:
        return describe_device(self.device)

    def _autocast(self):
        if self.half:  # no cache of cast weights: each is used once per forward, and graphs need it off
            return torch.autocast(device_type=self.device.type, dtype=torch.float16, cache_enabled=False)
        return contextlib.nullcontext()

    def _forward(self, chunk: torch.Tensor, draw: bool) -> tuple:
        """One chunk on the device -> (encoder tokens, descriptor vector or None, drawing's vector or None)."""
        with self._autocast():
            tokens, glob = stage1_outputs(self.model, self.descriptor, self.shared_level, chunk)
            drawn = drawing_vector(self.descriptor, chunk, self.cfg.mean, self.cfg.std) if draw else None
        return tokens, glob, drawn

    @torch.inference_mode()
    def _stage1_parts(self, batch: torch.Tensor, with_tokens: bool,
                      sketches: bool = False) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Normalised (B, 3, S, S) tensors -> the unit-length parts of the stage-1 vector (CLS, the
        descriptor's under fusion, and for tiles under a drawing_weight the descriptor of their
        drawing) and, if asked, the token sequences; in chunks of batch_size."""
        draw = self.retrieval.draws_tiles and not sketches
        parts: list[list[torch.Tensor]] = [[], [], []]
        token_parts = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start:start + self.batch_size].to(self.device, non_blocking=True)
            n = len(chunk)
            if self.fixed_batch and n < self.batch_size:  # padded with zeros; their outputs are dropped
                chunk = torch.cat([chunk, chunk.new_zeros((self.batch_size - n,) + tuple(chunk.shape[1:]))])
            if self.channels_last:
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            forward = self._graphed if self.cuda_graphs else self._forward
            tokens, glob, drawn = forward(chunk, draw)
            tokens = tokens[:n]
            parts[0].append(F.normalize(self.model.global_vector(tokens).float(), dim=-1).cpu())
            if glob is not None:
                parts[1].append(F.normalize(glob[:n].float(), dim=-1).cpu())
            if drawn is not None:
                parts[2].append(F.normalize(drawn[:n].float(), dim=-1).cpu())
            if with_tokens:
                token_parts.append(tokens.float().cpu())
        joined = [torch.cat(p) for p in parts if p]
        return joined, (torch.cat(token_parts) if token_parts else None)

    def _fuse(self, parts: list[torch.Tensor], sketches: bool) -> np.ndarray:
        return (self.retrieval.fuse_sketch(parts) if sketches else self.retrieval.fuse(parts)).numpy()

    def embed_tensor(self, batch: torch.Tensor, with_tokens: bool = False, sketches: bool = False) -> Embeddings:
        """Normalised (B, 3, S, S) tensors (tiles, or sketches as prepared) -> embeddings, in chunks of batch_size."""
        if len(batch) == 0:
            return Embeddings(np.zeros((0, self.vector_dim), np.float32), None)
        parts, tokens = self._stage1_parts(batch, with_tokens, sketches)
        return Embeddings(self._fuse(parts, sketches), tokens)

    def embed_sketches(self, sketches: Sequence[ImageLike], with_tokens: bool = False) -> Embeddings:
        """Sketches -> embeddings; with sketch_views > 1 the stage-1 vector averages the sketch's
        rotated (and mirrored) views, then the card's sketch centering applies. Tokens, for stage 2,
        are those of the sketch as drawn."""
        if len(sketches) == 0:
            return Embeddings(np.zeros((0, self.vector_dim), np.float32), None)
        size, mean, std = self.cfg.img_size, self.cfg.mean, self.cfg.std
        widen = self.retrieval.sketch_widen
        batch = torch.from_numpy(np.stack([prepare_sketch(s, size, mean, std, widen) for s in sketches]))
        views = self.sketch_views
        if views == 1:
            return centred(self.embed_tensor(batch, with_tokens, sketches=True), self.centering)
        parts, tokens = self._stage1_parts(dihedral_views(batch, views), with_tokens, sketches=True)
        parts = [F.normalize(p.view(len(batch), views, -1).mean(1), dim=-1) for p in parts]
        fused = Embeddings(self._fuse(parts, sketches=True), tokens[::views] if tokens is not None else None)
        return centred(fused, self.centering)

    def prepare_batch(self, images: np.ndarray):
        """uint8 tiles (B, S, S, 3) at the model's input size -> the input of `embed_prepared`; may run
        in a reader thread. On a CUDA device the tiles stay uint8 (a quarter of float32's bytes to
        copy) in pinned memory, so the copy to the GPU runs asynchronously and the normalisation runs
        there; elsewhere they are normalised here (float32 (B, 3, S, S), as `prepare_image` does)."""
        if self.device.type == "cuda":
            return torch.from_numpy(np.ascontiguousarray(images, np.uint8)).pin_memory()
        if self.channels_last:  # (B, S, S, 3) float32 seen as (B, 3, S, S) in channels-last layout: no copy
            return torch.from_numpy(normalise_batch(images, self.cfg.mean, self.cfg.std, True)).permute(0, 3, 1, 2)
        return torch.from_numpy(normalise_batch(images, self.cfg.mean, self.cfg.std))

    def _normalise_on_device(self, tiles: torch.Tensor) -> torch.Tensor:
        """uint8 (B, S, S, 3) on the device -> normalised float32 (B, 3, S, S) in channels-last
        layout, looked up in the same 256-entry tables as engine.preprocess.normalise_batch (so the
        values equal the CPU path's bit for bit)."""
        lut = getattr(self, "_device_lut", None)
        if lut is None or lut.device != tiles.device:
            table = normalise_batch(np.arange(256, dtype=np.uint8).reshape(1, 1, 256, 1).repeat(3, axis=3),
                                    self.cfg.mean, self.cfg.std)[0, :, 0]  # (3, 256)
            lut = self._device_lut = torch.from_numpy(table.reshape(-1).copy()).to(tiles.device)
        offsets = torch.arange(3, device=tiles.device) * 256
        return lut[tiles.long() + offsets].permute(0, 3, 1, 2)

    def embed_prepared(self, prepared: torch.Tensor, with_tokens: bool = False) -> Embeddings:
        """The output of `prepare_batch` -> embeddings."""
        if prepared.dtype != torch.uint8:
            return self.embed_tensor(prepared, with_tokens)
        if len(prepared) == 0:
            return Embeddings(np.zeros((0, self.vector_dim), np.float32), None)
        on_device = self._normalise_on_device(prepared.to(self.device, non_blocking=True))
        return self.embed_tensor(on_device, with_tokens)

    def embed_images(self, images: Iterable[ImageLike] | np.ndarray, with_tokens: bool = False) -> Embeddings:
        """Images as paths, PIL images, or uint8 arrays (one array of shape (B, H, W, 3) works too).
        Preprocessing runs chunk by chunk so memory stays bounded for long inputs."""
        size, mean, std = self.cfg.img_size, self.cfg.mean, self.cfg.std
        if _is_tile_batch(images, size):  # tiles read at the model's size: normalised as one batch
            parts = [self.embed_prepared(self.prepare_batch(images[i:i + self.batch_size]), with_tokens)
                     for i in range(0, len(images), self.batch_size)]
            return Embeddings(np.concatenate([p.cls for p in parts]),
                              torch.cat([p.tokens for p in parts]) if with_tokens else None)
        images = list(images) if not isinstance(images, np.ndarray) else images
        parts: list[Embeddings] = []
        for start in range(0, len(images), self.batch_size):
            chunk = torch.from_numpy(np.stack([prepare_image(im, size, mean, std)
                                               for im in images[start:start + self.batch_size]]))
            parts.append(self.embed_tensor(chunk, with_tokens))
        if not parts:
            return Embeddings(np.zeros((0, self.vector_dim), np.float32), None)
        cls = np.concatenate([p.cls for p in parts])
        tokens = torch.cat([p.tokens for p in parts]) if with_tokens else None
        return Embeddings(cls, tokens)

    @torch.inference_mode()
    def pair_scores(self, sketch_tokens: torch.Tensor, image_tokens: torch.Tensor) -> np.ndarray:
        """Cross-attention scores of one sketch (N, D) against K images (K, N, D), or of K pairs
        (K, N, D) x (K, N, D): cosine similarity of the cross-attended CLS rows, shape (K,)."""
        if sketch_tokens.dim() == 2:
            sketch_tokens = sketch_tokens.unsqueeze(0)
        scores = []
        for start in range(0, len(image_tokens), self.batch_size):
            img = image_tokens[start:start + self.batch_size].to(self.device)
            paired = len(sketch_tokens) == len(image_tokens)
            sk = sketch_tokens[start:start + self.batch_size] if paired else sketch_tokens
            sk = sk.to(self.device).expand(len(img), -1, -1) if len(sk) == 1 else sk.to(self.device)
            with self._autocast():
                s_cls, i_cls = self.model.cross_cls(sk, img)
            scores.append(F.cosine_similarity(s_cls.float(), i_cls.float(), dim=-1).cpu())
        return torch.cat(scores).numpy() if scores else np.zeros(0, np.float32)
