"""Sketch centering (engine.model.sketch_centering) and the tool that makes a model's sketch mean
(engine.training.sketch_mean): real checkpoints, real sketches, real photographs."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.embedder import Embedder
from engine.model.checkpoints import CheckpointError
from engine.model.sketch_centering import CARD_KEY, SketchCentering
from engine.runtime import DEFAULT_CHECKPOINT
from engine.training import sketch_mean as tool


def _drawn(kind: int) -> np.ndarray:
    im = Image.new("RGB", (128, 128), "white")
    draw = ImageDraw.Draw(im)
    [lambda: draw.rectangle([20, 30, 100, 90], outline="black", width=3),
     lambda: draw.line([(10, 110), (60, 20), (118, 100)], fill="black", width=3),
     lambda: draw.ellipse([30, 30, 98, 98], outline="black", width=3)][kind % 3]()
    return np.asarray(im)


@pytest.fixture
def checkpoint(tiny_checkpoint, tmp_path) -> Path:
    """A copy of the tiny model that says what it was trained on, as shipped models do."""
    path = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_checkpoint, path)
    card = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    card["training"] = {"trained_classes": ["forest", "harbor"]}
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


@pytest.fixture
def pools(tmp_path, data_dir) -> tuple[Path, Path]:
    """Real sketches (two classes of them) and photographs of the two trained classes (and one more)."""
    real, photos = tmp_path / "real", tmp_path / "photos"
    for label in ("Tenniscourt", "Aeroplane"):  # both in the shared data and in its stand-in
        (real / label).mkdir(parents=True)
        for f in sorted((data_dir / "eoc_sketches" / label).glob("*"))[:2]:
            shutil.copy(f, real / label / f.name)
    for label in ("forest", "harbor", "river"):
        (photos / label).mkdir(parents=True)
        for f in sorted((data_dir / "ucm10" / label).glob("*"))[:3]:
            shutil.copy(f, photos / label / f.name)
    return real, photos


def test_the_tool_writes_a_mean_that_searches_take_off_each_sketch(checkpoint, pools, capsys):
    real, photos = pools
    before = Embedder.from_checkpoint(checkpoint, "cpu")
    assert before.centering is None
    sketches = [_drawn(k) for k in range(3)]
    plain = before.embed_sketches(sketches).cls
    assert tool.main(["--checkpoint", str(checkpoint), "--real", str(real), "--real-classes", "Tenniscourt",
                      "--photos", str(photos), "--per-class", "2", "--weight", "0.6"]) == 0
    assert "2 real sketches (real: Tenniscourt) and 4 synthetic sketches" in capsys.readouterr().out

    card = json.loads(checkpoint.with_suffix(".json").read_text())
    entry = card[CARD_KEY]
    assert entry["weight"] == 0.6 and entry["file"] == "tiny.sketch_mean.npy"
    mean = np.load(checkpoint.with_name("tiny.sketch_mean.npy"))
    # the mean of the two sources' means: the 2 Tenniscourt sketches, the 4 synthetic ones (2 per trained class)
    tennis = sorted((real / "Tenniscourt").glob("*"))
    synthetic = tool.synthetic_sketches(photos, ["forest", "harbor"], 2, 0)
    assert len(synthetic) == 4
    expected = (before.embed_sketches(tennis).cls.mean(0) + before.embed_sketches(synthetic).cls.mean(0)) / 2
    assert np.abs(mean - expected).max() < 2e-4  # float64 mean in the tool; components are about 0.1

    after = Embedder.from_checkpoint(checkpoint, "cpu")
    assert after.centering is not None and after.identity == before.identity  # indexes stay valid
    centred = plain - 0.6 * mean
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    assert np.abs(after.embed_sketches(sketches).cls - centred).max() < 1e-5
    tiles = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    assert np.array_equal(after.embed_images(tiles).cls, before.embed_images(tiles).cls)  # tiles unchanged

    # made again over a card that has one: the same file (the card's own centering is not applied first)
    first = checkpoint.with_name("tiny.sketch_mean.npy").read_bytes()
    tool.main(["--checkpoint", str(checkpoint), "--real", str(real), "--real-classes", "Tenniscourt",
               "--photos", str(photos), "--per-class", "2", "--weight", "0.6"])
    assert checkpoint.with_name("tiny.sketch_mean.npy").read_bytes() == first


def _with_entry(checkpoint: Path, **changes) -> Path:
    mean_file = checkpoint.with_name("tiny.sketch_mean.npy")
    np.save(mean_file, np.full(64, 0.1, np.float32))
    from engine.model.weight_files import sha256_of

    identity = Embedder.from_checkpoint(checkpoint, "cpu").identity
    card = json.loads(checkpoint.with_suffix(".json").read_text())
    card[CARD_KEY] = {"weight": 0.5, "file": mean_file.name, "sha256": sha256_of(mean_file), "identity": identity,
                      **changes}
    checkpoint.with_suffix(".json").write_text(json.dumps(card))
    return mean_file


@pytest.mark.parametrize("damage, message", [
    ("missing", "is missing .* engine.training.sketch_mean"),
    ("changed", "not the file the card names"),
    ("shape", "has shape \\(32,\\), the model's vectors 64"),
    ("weight", "weight 1.5"),
    ("garbage", "cannot be read"),
    ("keys", "expected the keys file, identity, sha256, weight"),
])
def test_an_unusable_sketch_mean_is_one_clear_error(checkpoint, damage, message):
    mean_file = _with_entry(checkpoint, **({"weight": 1.5} if damage == "weight" else {}))
    if damage == "missing":
        mean_file.unlink()
    elif damage == "changed":
        np.save(mean_file, np.full(64, 0.2, np.float32))
    elif damage in ("shape", "garbage", "keys"):
        card = json.loads(checkpoint.with_suffix(".json").read_text())
        if damage in ("shape", "garbage"):  # a file the card's sha256 names, but not a usable mean
            if damage == "shape":
                np.save(mean_file, np.zeros(32, np.float32))
            else:
                mean_file.write_bytes(b"not an array" * 10)
            from engine.model.weight_files import sha256_of

            card[CARD_KEY]["sha256"] = sha256_of(mean_file)
        else:
            del card[CARD_KEY]["identity"]
        checkpoint.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=message) as err:
        Embedder.from_checkpoint(checkpoint, "cpu")
    assert str(err.value).startswith(str(checkpoint.with_suffix(".json")))


def test_a_mean_made_for_another_identity_is_not_applied(checkpoint):
    _with_entry(checkpoint, identity="other weights+other fusion")
    assert Embedder.from_checkpoint(checkpoint, "cpu").centering is None


def test_centering_is_a_unit_vector_moved_away_from_the_mean():
    mean = np.array([0.6, 0.0, 0.0], np.float32)
    out = SketchCentering(0.5, mean).apply(np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]], np.float32))
    assert np.allclose(out, [[1.0, 0.0, 0.0], np.array([0.3, 0.8, 0.0]) / np.hypot(0.3, 0.8)], atol=1e-6)
    assert out.dtype == np.float32


def test_the_default_model_centres_its_sketches():
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("the default model is not installed")
    emb = Embedder.from_checkpoint(DEFAULT_CHECKPOINT, "cpu")
    assert emb.centering is not None and emb.centering.mean.shape == (emb.vector_dim,)


@pytest.mark.slow
def test_the_shipped_sketch_mean_is_what_the_tool_makes_from_the_shared_data(real_data_dir, tmp_path):
    """The committed default.sketch_mean.npy is remade from its pool, as the card's entry describes it
    (under a minute here: 242 sketches, 8 views each)."""
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("the default model is not installed")
    for name in ("default.safetensors", "default.json"):
        shutil.copy(DEFAULT_CHECKPOINT.with_name(name), tmp_path / name)
    copy = tmp_path / "default.safetensors"
    assert tool.main(["--checkpoint", str(copy), "--real", str(real_data_dir / "eoc_sketches"),
                      "--real-classes", "Runway", "Tenniscourt", "--photos", str(real_data_dir / "aid"),
                      "--per-class", "8", "--weight", "0.75"]) == 0
    shipped = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())[CARD_KEY]
    remade = json.loads(copy.with_suffix(".json").read_text())[CARD_KEY]
    assert remade["pool"] == shipped["pool"] and remade["identity"] == shipped["identity"]
    ours = np.load(DEFAULT_CHECKPOINT.with_name("default.sketch_mean.npy"))
    assert np.abs(np.load(tmp_path / "default.sketch_mean.npy") - ours).max() < 1e-5
