"""The untrained reference point: ImageNet EfficientNet-Lite0 (the packaged weights, converted by
engine.model.pretrained), global-average-pooled 1280-d features, cosine similarity.

"lite0-gap" preprocesses sketches like the models do (crop to the strokes, pad to a square);
"lite0-gap-plain" resizes sketches like images (the protocol of the project's first baseline
figure; BENCHMARKS.md gives both).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..embeddings import Embeddings
from ..model.pretrained import lite0_gap_network
from ..preprocess import preprocess_image, preprocess_sketch


class Lite0GapEncoder:
    size = 224
    mean = std = (0.5, 0.5, 0.5)

    def __init__(self, plain_sketches: bool = False, batch_size: int = 32):
        self.net = lite0_gap_network()
        self.plain = plain_sketches
        self.batch_size = batch_size
        self.name = "lite0-gap-plain" if plain_sketches else "lite0-gap"

    @torch.inference_mode()
    def _embed(self, tensors: list[torch.Tensor]) -> Embeddings:
        out = [F.normalize(self.net(torch.stack(tensors[i:i + self.batch_size])), dim=-1)
               for i in range(0, len(tensors), self.batch_size)]
        return Embeddings(torch.cat(out).numpy() if out else np.zeros((0, 1280), np.float32))

    def embed_sketches(self, sketches, with_tokens: bool = False) -> Embeddings:
        if with_tokens:
            raise ValueError("the lite0-gap baseline has no tokens: stage 2 needs a trained model")
        prep = preprocess_image if self.plain else preprocess_sketch
        return self._embed([prep(s, self.size, self.mean, self.std) for s in sketches])

    def embed_images(self, images, with_tokens: bool = False) -> Embeddings:
        if with_tokens:
            raise ValueError("the lite0-gap baseline has no tokens: stage 2 needs a trained model")
        return self._embed([preprocess_image(im, self.size, self.mean, self.std) for im in images])
