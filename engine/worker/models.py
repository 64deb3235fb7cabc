"""The model the worker has loaded, kept between requests: loading takes seconds, a search over
cached tiles takes a fraction of one. One model at a time (they are large); asking for another
checkpoint or device replaces it, and a rewritten checkpoint file is loaded again."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from .errors import UserError

log = logging.getLogger("engine.worker")


def default_model_path() -> Path:
    """The shipped model (its path even where it is not installed)."""
    from engine.runtime import default_model_path as shipped

    return Path(shipped())


def model_files(path: Path) -> tuple[Path, ...]:
    """A checkpoint's files: weights, model card, and the ONNX export the onnx runtime reads."""
    return (path, path.with_suffix(".json"), path.with_suffix(".onnx"))


def _stamp(path: Path) -> tuple:
    """Modification times of the checkpoint's files, where they exist."""
    stamps = []
    for p in model_files(path):
        try:
            stamps.append(os.stat(p).st_mtime_ns)
        except OSError:
            stamps.append(None)
    return tuple(stamps)


class ModelCache:
    def __init__(self):
        self._key = None
        self._embedder = None
        self.loads = 0  # models loaded so far (logged, so a reload is visible in the log)

    def get(self, checkpoint: str | None, device: str | None):
        """The embedder for (checkpoint or the default model, device), loaded once."""
        if checkpoint is not None and not isinstance(checkpoint, str):
            raise UserError(f"checkpoint must be a path or null, got {checkpoint!r}")
        if device is not None and not isinstance(device, str):
            raise UserError(f"device must be a name such as 'auto' or 'cpu', got {device!r}")
        device = device or "auto"
        path = Path(checkpoint).expanduser() if checkpoint else default_model_path()
        resolved = path.resolve()
        key = (str(resolved), _stamp(resolved), device)
        if key != self._key:
            from engine.runtime import load_embedder

            self._key = self._embedder = None  # free the old model before loading the next
            t0 = time.perf_counter()
            log.info("loading model %s on %s", path, device)
            # None stays None so the runtime gives its own message when the default model is missing.
            self._embedder = load_embedder(str(path) if checkpoint else None, device)
            self._key = key
            self.loads += 1
            log.info("model %s loaded on %s in %.1f s (load %d of this worker)", self._embedder.name,
                     self._embedder.device_description, time.perf_counter() - t0, self.loads)
        return self._embedder


def square_sketch() -> np.ndarray:
    """A drawn square (black outline on white), the installer's self-check input."""
    sketch = np.full((128, 128, 3), 255, np.uint8)
    sketch[24:104, 24:30] = sketch[24:104, 98:104] = 0
    sketch[24:30, 24:104] = sketch[98:104, 24:104] = 0
    return sketch


def self_check(embedder) -> None:
    """Embed the test sketch: the model runs and gives a finite vector of the expected length."""
    vectors = np.asarray(embedder.embed_sketches([square_sketch()]).cls)
    if vectors.shape != (1, embedder.vector_dim) or not np.isfinite(vectors).all():
        raise UserError(f"the model {embedder.name} failed its self-check (vector of shape {vectors.shape}, "
                        f"finite: {bool(np.isfinite(vectors).all())})")
