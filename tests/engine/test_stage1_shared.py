"""One trunk pass per tile: a fusion descriptor that continues from the model's own frozen trunk
blocks gives the vectors of the separate descriptor (within the half-stored weights' rounding)."""
import copy

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from engine.embedder import Embedder
from engine.model.checkpoints import CheckpointError, load_checkpoint
from engine.runtime import DEFAULT_CHECKPOINT

ROOT = DEFAULT_CHECKPOINT.parents[2]


def _with_descriptor(descriptor: str) -> Embedder:
    model, card = load_checkpoint(DEFAULT_CHECKPOINT)
    card = copy.deepcopy(card) | {"stage1_fusion": {"descriptor": descriptor, "model_weight": 0.5}}  # no drawing
    return Embedder(model, card, "cpu")


@pytest.fixture(scope="module")
def mosaic_tiles() -> np.ndarray:
    """24 real UC Merced tiles from the sample mosaic, at the default model's 160 px."""
    with rasterio.open(ROOT / "samples" / "ucm_mosaic.tif") as src:
        return np.stack([src.read(window=Window(c * 256, r * 256, 256, 256), out_shape=(3, 160, 160)).transpose(1, 2, 0)
                         for r in range(4) for c in range(6)])


def test_shared_trunk_gives_the_separate_descriptors_vectors(mosaic_tiles):
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("the default model is not installed")
    separate, shared = _with_descriptor("efficientnet_lite0_gem"), _with_descriptor("efficientnet_lite0_gem_shared")
    assert separate.shared_level is None and shared.shared_level == 1  # the trunk's blocks.4 map
    a, b = separate.embed_images(mosaic_tiles).cls, shared.embed_images(mosaic_tiles).cls
    assert a.shape == b.shape == (24, 1536)
    assert (a * b).sum(1).min() > 0.9999
    # the scores rank the same: each tile's nearest other tile is unchanged
    np.fill_diagonal(sa := a @ a.T, -1)
    np.fill_diagonal(sb := b @ b.T, -1)
    assert (sa.argmax(1) == sb.argmax(1)).mean() >= 0.95
    # the vectors differ, however slightly, so the index keys must too
    assert separate.identity != shared.identity and shared.identity.endswith("+efficientnet_lite0_gem_shared@0.5")


def test_a_model_without_that_trunk_map_is_one_clear_error(tiny_checkpoint):
    model, card = load_checkpoint(tiny_checkpoint)
    card = copy.deepcopy(card) | {"stage1_fusion": {"descriptor": "efficientnet_lite0_gem_shared", "model_weight": 0.5}}
    with pytest.raises(CheckpointError, match="continues from blocks.4 of an efficientnet_lite0 trunk"):
        Embedder(model, card, "cpu")


def test_the_shipped_partner_pair_is_lite0_on_the_shared_trunk_beside_lite2_on_the_tile(mosaic_tiles):
    """The default card's descriptor: its Lite0 half continues from the model's trunk map (one pass), its
    Lite2 half reads the tile; the halves are unit length and weigh the same."""
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("the default model is not installed")
    import torch

    from engine.model.pretrained import PartnerPair

    model, card = load_checkpoint(DEFAULT_CHECKPOINT)
    emb = Embedder(model, card, "cpu")
    assert isinstance(emb.descriptor, PartnerPair) and emb.shared_level == 1 and emb.vector_dim == 256 + 2560
    x = torch.from_numpy(emb.prepare_batch(mosaic_tiles).numpy().copy()).contiguous()
    with torch.inference_mode():
        on_image = emb.descriptor(x).numpy()
        shared = emb.embed_images(mosaic_tiles).cls[:, 256:] / (1 - emb.fusion.model_weight) ** 0.5
    assert np.allclose(np.linalg.norm(on_image[:, :1280], axis=1), 2 ** -0.5, atol=1e-5)
    assert np.allclose(np.linalg.norm(on_image[:, 1280:], axis=1), 2 ** -0.5, atol=1e-5)
    assert (shared[:, 1280:] * on_image[:, 1280:]).sum(1).min() * 2 > 0.9999  # Lite2: the same tile, the same network
    # Lite0: the same within the rounding of the model's half-stored blocks
    assert (shared[:, :1280] * on_image[:, :1280]).sum(1).min() * 2 > 0.9995
