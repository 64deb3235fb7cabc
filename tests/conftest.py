"""Shared test fixtures: where the real data and reference vectors live."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKETCH_SEARCH_SHARED", ROOT.parent / "shared"))
# Resolved: tests hand these paths to a chroot (QGIS 3.44) that sees real folders, not the symlinks to them.
DATA = Path(os.environ.get("SKETCH_SEARCH_DATA", SHARED / "data")).resolve()
REFERENCE = SHARED / "reference" / "mlagt"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "mlagt_tiny_official_vectors.npz").is_file():
        pytest.skip(f"MLAGT reference vectors not found under {REFERENCE}")
    return REFERENCE


def _has_real_data() -> bool:
    return (DATA / "eoc_sketches").is_dir() and (DATA / "ucm10").is_dir()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Real imagery and sketches: the shared data (SKETCH_SEARCH_DATA, else ../shared/data) when it is
    there, else a stand-in with the same layout made from the repository's sample (tests/sample_data.py:
    the sample's UC Merced images and our own sketches)."""
    if _has_real_data():
        return DATA
    from tests.sample_data import build_stand_in, sample_is_complete

    if not sample_is_complete():
        pytest.skip(f"neither real data under {DATA} nor the repository's sample (samples/)")
    return build_stand_in(tmp_path_factory.mktemp("sample_data"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The shared data itself, for the few tests tied to particular files of it (their reason is in
    the skip message)."""
    if not _has_real_data():
        pytest.skip(f"needs the real Earth-on-Canvas and UC Merced files under {DATA} (set SKETCH_SEARCH_DATA)")
    return DATA


# A small model in our real checkpoint format, so search and plugin tests run in seconds on a CPU.
TINY_CONFIG = dict(name="test-tiny", img_size=64, patch_size=16, width=64, depth=2, heads=2, mlp_dim=128,
                   keep_rates=(1.0, 0.75), ca_heads=2, ca_ff_dim=128)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Path of a randomly initialised (seeded) tiny MLAGT saved as .safetensors + .json card."""
    import torch

    from engine.model import MLAGT, ModelConfig
    from engine.model.checkpoints import save_checkpoint

    torch.manual_seed(0)
    model = MLAGT(ModelConfig(**TINY_CONFIG))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return save_checkpoint(model, path, card={"name": "test-tiny", "licence": "GPL-2.0-or-later"})
