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
    assert settings.fusion == Fusion("efficientnet_lite0_gem_shared", 0.5) and settings.sketch_views == 8
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
    ({"stage1_fusion": {"descriptor": "efficientnet_lite0_gem"}}, "keys descriptor and model_weight"),
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
    assert Fusion.parse("None") is None
    for bad in ("sift:0.5", "efficientnet_lite0_gap", "efficientnet_lite0_gap:x", "efficientnet_lite0_gap:1.5"):
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
