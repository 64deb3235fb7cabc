"""Retrieval settings from model cards: one check, the card format kept, index keys unchanged."""
import json

import numpy as np
import pytest

from engine.model.retrieval import CARD_ENTRIES, FUSION_DESCRIPTORS, Fusion, RetrievalSettings, fuse
from engine.onnx_embedder import card_identity
from engine.runtime import MODELS_DIR


def test_shipped_card_round_trips():
    card = json.loads((MODELS_DIR / "default.json").read_text())
    settings = RetrievalSettings.from_card(card)
    assert settings.fusion == Fusion("efficientnet_lite0_gem_shared+lite2_gem", 0.333) and settings.sketch_views == 8
    assert settings.sketch_widen == 3 and settings.query_expansion == 3
    assert settings.to_card() == {k: card[k] for k in CARD_ENTRIES}


@pytest.mark.parametrize("entry, key", [
    (None, "abc"),
    ({"descriptor": "efficientnet_lite0_gem", "model_weight": 0.5}, "abc+efficientnet_lite0_gem@0.5"),
    ({"descriptor": "efficientnet_lite0_gap", "model_weight": 1}, "abc+efficientnet_lite0_gap@1"),
    ({"descriptor": "efficientnet_lite0_gap", "model_weight": 0.25}, "abc+efficientnet_lite0_gap@0.25"),
])
def test_index_keys_are_byte_for_byte_those_of_existing_indexes(entry, key):
    """The model identity names tile index folders: the strings of indexes built before the typed
    settings existed (f"{sha}+{descriptor}@{model_weight}" as the card writes the weight)."""
    card = {"weights_sha256": "abc", "sketch_views": 8, **({"stage1_fusion": entry} if entry else {})}
    assert card_identity(card) == key
    unnamed = {k: v for k, v in card.items() if k != "weights_sha256"} | {"name": "m", "path": "/x/m.pth"}
    assert card_identity(unnamed) == "m:/x/m.pth" + key[3:]


@pytest.mark.parametrize("card, words", [
    ({"stage1_fusion": {"descriptor": "sift", "model_weight": 0.5}}, "unknown descriptor 'sift'"),
    ({"stage1_fusion": {"descriptor": "efficientnet_lite0_gem", "model_weight": 2}}, "model_weight"),
    ({"stage1_fusion": {"descriptor": "efficientnet_lite0_gem", "model_weight": True}}, "model_weight"),
    ({"stage1_fusion": {"descriptor": "efficientnet_lite0_gem"}}, "keys descriptor, model_weight"),
    ({"stage1_fusion": {"descriptor": "efficientnet_lite0_gem", "model_weight": 0.5, "drawing_weight": 0.6}},
     "add up to more than 1"),
    ({"stage1_fusion": {"descriptor": "efficientnet_lite0_gem", "model_weight": 0.5, "drawing_weight": -1}},
     "drawing_weight"),
    ({"stage1_fusion": {"descriptor": "efficientnet_lite0_gem", "model_weight": 0.5, "p": 3}}, "keys"),
    ({"stage1_fusion": "efficientnet_lite0_gem"}, "expected"),
    ({"sketch_views": 3}, "sketch_views entry 3"),
    ({"sketch_widen": 2}, "sketch_widen entry 2"),
    ({"sketch_widen": True}, "sketch_widen entry True"),
])
def test_unusable_entries_are_one_clear_error(card, words):
    with pytest.raises(ValueError, match="stage1_fusion|sketch_views|sketch_widen") as info:
        RetrievalSettings.from_card(card)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_fusion_from_the_command_line():
    assert Fusion.parse("efficientnet_lite0_gap:0.7") == Fusion("efficientnet_lite0_gap", 0.7)
    assert Fusion.parse("efficientnet_lite0_gap:0.25:0.5") == Fusion("efficientnet_lite0_gap", 0.25, 0.5)
    assert Fusion.parse("None") is None
    for bad in ("sift:0.5", "efficientnet_lite0_gap", "efficientnet_lite0_gap:x", "efficientnet_lite0_gap:1.5",
                "efficientnet_lite0_gap:0.5:0.6", "efficientnet_lite0_gap:0.1:0.1:0.1"):
        with pytest.raises(ValueError, match="DESCRIPTOR:WEIGHT"):
            Fusion.parse(bad)


def test_every_registered_descriptor_names_a_builder():
    import importlib

    for d in FUSION_DESCRIPTORS.values():
        module, _, function = d.builder.partition(":")
        assert callable(getattr(importlib.import_module(module, "engine.model"), function)), d.name


def test_fuse_is_one_formula_for_numpy_and_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    fused = fuse(a, b, 0.3)
    assert np.allclose(fused @ fused[::-1].T, 0.3 * a @ a[::-1].T + 0.7 * b @ b[::-1].T, atol=1e-6)
    assert np.array_equal(fuse(torch.from_numpy(a), torch.from_numpy(b), 0.3).numpy(), fused)
    assert RetrievalSettings().fuse([a]) is a


def test_sketch_widening_is_a_query_setting_kept_out_of_index_keys():
    plain = {"weights_sha256": "abc", "sketch_views": 8}
    widened = RetrievalSettings.from_card(plain | {"sketch_widen": 3})
    assert widened.sketch_widen == 3 and widened.to_card() == {"sketch_views": 8, "sketch_widen": 3}
    assert RetrievalSettings.from_card(plain).to_card() == {"sketch_views": 8}  # older cards unchanged
    assert card_identity(plain | {"sketch_widen": 3}) == card_identity(plain) == "abc"


def test_settings_applied_to_a_card_replace_its_own():
    card = {"weights_sha256": "abc", "sketch_views": 8, "sketch_widen": 3,
            "stage1_fusion": {"descriptor": "efficientnet_lite0_gem", "model_weight": 0.5}}
    applied = RetrievalSettings(None, 1, 1).apply_to(card)
    assert applied == {"weights_sha256": "abc", "sketch_views": 1}
    assert RetrievalSettings.from_card(applied) == RetrievalSettings()


def test_drawn_tiles_score_the_sketch_against_photo_and_drawing_at_the_card_weights():
    """A tile's drawing shares the descriptor's slot: sketch . tile = w cos(CLS) + p cos(descriptor,
    photo) + e cos(descriptor, drawing), with p = 1 - w - e, and the vector keeps its length."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)

    def units(n, d):
        x = rng.normal(size=(n, d)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    settings = RetrievalSettings(Fusion("efficientnet_lite0_gem", 0.25, 0.5))
    sk_c, sk_d = units(2, 4), units(2, 6)
    tile_c, tile_d, tile_e = units(3, 4), units(3, 6), units(3, 6)
    sketches, tiles = settings.fuse_sketch([sk_c, sk_d]), settings.fuse([tile_c, tile_d, tile_e])
    assert sketches.shape == (2, 10) and tiles.shape == (3, 10)
    expected = 0.25 * sk_c @ tile_c.T + 0.25 * sk_d @ tile_d.T + 0.5 * sk_d @ tile_e.T
    assert np.allclose(sketches @ tiles.T, expected, atol=1e-6)
    assert np.allclose(np.linalg.norm(sketches, axis=1), 1, atol=1e-6)
    torch_tiles = settings.fuse([torch.from_numpy(p) for p in (tile_c, tile_d, tile_e)]).numpy()
    assert np.allclose(torch_tiles, tiles, atol=1e-6)
    # without a drawing, sketches and tiles are fused alike, as before
    plain = RetrievalSettings(Fusion("efficientnet_lite0_gem", 0.25))
    assert not plain.draws_tiles and settings.draws_tiles
    assert np.array_equal(plain.fuse_sketch([sk_c, sk_d]), plain.fuse([sk_c, sk_d]))


def test_a_drawing_weight_is_in_the_card_and_the_index_key_and_older_cards_are_unchanged():
    from engine.model.tile_drawing import DRAWING_NAME

    entry = {"descriptor": "efficientnet_lite0_gem", "model_weight": 0.25, "drawing_weight": 0.5}
    card = {"weights_sha256": "abc", "sketch_views": 8, "stage1_fusion": entry}
    settings = RetrievalSettings.from_card(card)
    assert settings.to_card()["stage1_fusion"] == entry
    assert card_identity(card) == f"abc+efficientnet_lite0_gem@0.25+drawn:{DRAWING_NAME}@0.5"
    older = {"descriptor": "efficientnet_lite0_gem", "model_weight": 0.25}
    assert RetrievalSettings.from_card(card | {"stage1_fusion": older}).to_card()["stage1_fusion"] == older
