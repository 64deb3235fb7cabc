"""Shared test fixtures: where the real data and reference vectors live."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKETCH_SEARCH_SHARED", ROOT.parent / "shared"))
DATA = Path(os.environ.get("SKETCH_SEARCH_DATA", SHARED / "data"))
REFERENCE = SHARED / "reference" / "mlagt"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "mlagt_tiny_official_vectors.npz").is_file():
        pytest.skip(f"MLAGT reference vectors not found under {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "eoc_sketches").is_dir():
        pytest.skip(f"real data not found under {DATA} (set SKETCH_SEARCH_DATA)")
    return DATA
