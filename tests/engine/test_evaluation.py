"""Retrieval metrics against hand-computed values, class matching, stage-2 re-ranking, and the
`sketch-search evaluate` JSON contract."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.cli import main as cli_main
from engine.datasets import list_class_folder
from engine.evaluation.metrics import average_precision, precision_at, ranking
from engine.evaluation.retrieval import class_matcher, evaluate, rerank_stage2


def test_average_precision_by_hand():
    # relevant at ranks 1, 3, 6: (1/1 + 2/3 + 3/6) / 3
    assert average_precision([1, 0, 1, 0, 0, 1]) == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    assert average_precision([0, 0, 0, 1]) == pytest.approx(0.25)
    assert average_precision([1, 1, 0]) == 1.0
    with pytest.raises(ValueError):
        average_precision([0, 0])


def test_precision_at_k_is_the_standard_one():
    rel = np.array([1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1])
    assert precision_at(rel, 10) == pytest.approx(0.3)
    assert precision_at(rel, 2) == pytest.approx(0.5)
    assert precision_at(rel[:4], 10) == pytest.approx(0.75)  # gallery smaller than K
    # only one relevant item in all: standard P@10 is 0.1 (the published code would say 1.0)
    assert precision_at([1] + [0] * 20, 10) == pytest.approx(0.1)


def test_ranking_is_descending_and_stable():
    assert ranking(np.array([0.1, 0.9, 0.5, 0.9])).tolist() == [1, 3, 2, 0]


def test_class_matcher():
    m = class_matcher(["Aeroplane", "Beach"], ["airplane", "beach", "forest"], {"aeroplane": "AIRPLANE"})
    assert m == {"Aeroplane": "airplane", "Beach": "beach"}
    with pytest.raises(ValueError, match="give --map Runway="):
        class_matcher(["Runway"], ["airplane"], {})
    with pytest.raises(ValueError, match="not among the queries"):
        class_matcher(["Beach"], ["beach"], {"Tennis": "beach"})


def test_stage2_reorders_only_the_head():
    order = np.array([4, 2, 0, 1, 3])
    scores = {4: 0.1, 2: 0.9, 0: 0.5}
    out = rerank_stage2(order, lambda idx: np.array([scores[i] for i in idx]), top=3)
    assert out.tolist() == [2, 0, 4, 1, 3]


class MeanColourEncoder:
    """A real (tiny) encoder: the normalised mean RGB of each input. Enough to give known rankings."""
    def _embed(self, items):
        from engine.embeddings import Embeddings
        v = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32).mean(axis=(0, 1)) for p in items])
        return Embeddings(v / np.linalg.norm(v, axis=1, keepdims=True))

    def embed_sketches(self, items, with_tokens=False):
        return self._embed(items)

    def embed_images(self, items, with_tokens=False):
        return self._embed(items)


def colour_tree(root: Path, spec: dict[str, list[tuple[int, int, int]]]) -> Path:
    for cls, colours in spec.items():
        (root / cls).mkdir(parents=True)
        for i, c in enumerate(colours):
            Image.new("RGB", (16, 16), c).save(root / cls / f"{i}.png")
    return root


def test_evaluate_aggregates_known_rankings(tmp_path):
    gallery = colour_tree(tmp_path / "g", {"red": [(250, 10, 10), (200, 60, 20)],
                                           "blue": [(10, 10, 250), (230, 20, 60)]})
    queries = colour_tree(tmp_path / "q", {"Red": [(255, 0, 0)], "Blue": [(0, 0, 255)]})
    res = evaluate(MeanColourEncoder(), list_class_folder(queries), list_class_folder(gallery), {})
    # Red query (cosine with pure red): red0 0.999, blue1 (230,20,60) 0.962, red1 (200,60,20) 0.951,
    # blue0 0.04 -> relevant at ranks 1 and 3: AP (1 + 2/3) / 2. Blue query: blue0 first, blue1
    # (0.25) before red1 (0.095) and red0 -> AP 1.
    assert res.summary["per_class"]["Red"]["mAP"] == pytest.approx(5 / 6, abs=1e-4)
    assert res.summary["per_class"]["Blue"]["mAP"] == pytest.approx(1.0)
    assert res.summary["mAP"] == pytest.approx((5 / 6 + 1) / 2, abs=1e-4)
    assert res.summary["per_class"]["Red"]["P@10"] == pytest.approx(0.5)  # 2 of the 4-image gallery
    assert res.summary["per_class"]["Red"]["top10_classes"] == {"red": 2, "blue": 2}
    assert res.summary["queries"] == 2 and res.summary["gallery"] == 4


def sketch_tree(root: Path) -> Path:
    for cls, shape in (("discs", "ellipse"), ("boxes", "rectangle")):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            im = Image.new("RGB", (128, 128), "white")
            getattr(ImageDraw.Draw(im), shape)([20 + 5 * i, 20, 100, 90 + 5 * i], outline="black", width=3)
            im.save(root / cls / f"{i}.png")
    return root


def image_tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("Discs", "Boxes", "other"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(root / cls / f"{i}.jpg")
    return root


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("stage2", [False, True])
def test_cli_json_contract(tmp_path, capsys, tiny_checkpoint, stage2):
    q, g = sketch_tree(tmp_path / "q"), image_tree(tmp_path / "g")
    argv = ["evaluate", "--queries", str(q), "--gallery", str(g), "--checkpoint", str(tiny_checkpoint), "--json"]
    assert cli_main(argv + (["--stage2", "--stage2-top", "4"] if stage2 else [])) == 0
    res = last_json(capsys.readouterr().out)
    assert {"mAP", "P@10", "P@100", "queries", "gallery", "per_class"} <= set(res)
    assert res["queries"] == 4 and res["gallery"] == 9 and res["stage2"] is stage2
    assert set(res["per_class"]) == {"boxes", "discs"}
    assert res["per_class"]["discs"]["gallery_class"] == "Discs"  # matched case-insensitively
    for f in [res] + list(res["per_class"].values()):
        assert 0 < f["mAP"] <= 1 and 0 <= f["P@10"] <= 1 and 0 <= f["P@100"] <= 1
    assert res["P@100"] == pytest.approx(3 / 9, abs=1e-4)  # the whole gallery of 9 holds 3 relevant images


def test_cli_map_and_rsketch_layout(tmp_path, capsys, tiny_checkpoint):
    root = tmp_path / "rsketch"
    sketch_tree(root / "sketch")
    image_tree(root / "image")
    argv = ["evaluate", "--queries", str(root), "--gallery", str(root), "--checkpoint", str(tiny_checkpoint),
            "--query-classes", "discs", "--map", "discs=other", "--json"]
    assert cli_main(argv) == 0
    res = last_json(capsys.readouterr().out)
    assert res["queries"] == 2 and res["per_class"]["discs"]["gallery_class"] == "other"


@pytest.mark.parametrize("extra, message", [
    (["--map", "discs"], "QUERYCLASS=GALLERYCLASS"),
    (["--map", "nosuch=Boxes"], "not among the queries"),
    (["--stage2-top", "0"], "at least 1"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, tiny_checkpoint, extra, message):
    q, g = sketch_tree(tmp_path / "q"), image_tree(tmp_path / "g")
    argv = ["evaluate", "--queries", str(q), "--gallery", str(g), "--checkpoint", str(tiny_checkpoint), "--json"]
    assert cli_main(argv + extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_cli_unmatched_query_class(tmp_path, capsys, tiny_checkpoint):
    q = sketch_tree(tmp_path / "q")
    g = colour_tree(tmp_path / "g", {"fields": [(0, 200, 0)]})
    assert cli_main(["evaluate", "--queries", str(q), "--gallery", str(g), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert "matches no gallery class" in capsys.readouterr().err


def test_baseline_on_real_aeroplanes_beats_chance(data_dir, tmp_path, capsys):
    # a small real check of the untrained reference: 6 aeroplane sketches against 20 airplane and
    # 40 other UC Merced tiles (chance mAP about 0.33); from the repository's sample (no shared data):
    # our own sketches against its 10 images of each class
    q = tmp_path / "q" / "Aeroplane"
    q.mkdir(parents=True)
    for f in sorted((data_dir / "eoc_sketches" / "Aeroplane").glob("*.jpg"))[:6]:
        (q / f.name).symlink_to(f)
    gallery = 0
    for cls in ("airplane", "forest", "buildings"):
        d = tmp_path / "g" / cls
        d.mkdir(parents=True)
        for f in sorted((data_dir / "ucm10" / cls).glob("*.jpg"))[:20]:
            (d / f.name).symlink_to(f)
            gallery += 1
    argv = ["evaluate", "--queries", str(tmp_path / "q"), "--gallery", str(tmp_path / "g"),
            "--map", "Aeroplane=airplane", "--baseline", "lite0-gap", "--json"]
    assert cli_main(argv) == 0
    res = last_json(capsys.readouterr().out)
    assert res["mAP"] > 0.45 and res["gallery"] == gallery >= 30


def test_evaluate_applies_the_cards_sketch_centering_unless_told_not_to(data_dir, tmp_path, capsys):
    """The default model's card centres sketches, as searches do; --no-centering measures without."""
    from engine.runtime import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("the default model is not installed")
    q = tmp_path / "q" / "Aeroplane"
    q.mkdir(parents=True)
    for f in sorted((data_dir / "eoc_sketches" / "Aeroplane").glob("*.jpg"))[:4]:
        (q / f.name).symlink_to(f)
    for cls in ("airplane", "forest", "buildings", "beach"):
        (tmp_path / "g" / cls).mkdir(parents=True)
        for f in sorted((data_dir / "ucm10" / cls).glob("*"))[:8]:
            (tmp_path / "g" / cls / f.name).symlink_to(f)
    argv = ["evaluate", "--queries", str(tmp_path / "q"), "--gallery", str(tmp_path / "g"),
            "--map", "Aeroplane=airplane", "--device", "cpu", "--json"]
    assert cli_main(argv) == 0
    centred = last_json(capsys.readouterr().out)
    assert cli_main(argv + ["--no-centering"]) == 0
    plain = last_json(capsys.readouterr().out)
    assert centred["sketch_centering"] == 0.75 and plain["sketch_centering"] == 0.0
    assert centred["expansion"] == plain["expansion"] == 3
    assert centred["mAP"] > 0.5 and plain["mAP"] > 0.5  # both find the aeroplanes among 32 tiles
    # each equals the API's figures with the model's sketches centred or not, whose vectors differ
    from engine.datasets import list_class_folder
    from engine.embedder import Embedder
    from engine.evaluation.retrieval import evaluate

    queries, gallery = list_class_folder(tmp_path / "q"), list_class_folder(tmp_path / "g")
    emb = Embedder.from_checkpoint(DEFAULT_CHECKPOINT, "cpu")
    with_centering = emb.embed_sketches([q.path for q in queries]).cls
    assert evaluate(emb, queries, gallery, {"Aeroplane": "airplane"}, expansion=3).summary["mAP"] == centred["mAP"]
    emb.centering = None
    assert np.abs(emb.embed_sketches([q.path for q in queries]).cls - with_centering).max() > 0.01
    assert evaluate(emb, queries, gallery, {"Aeroplane": "airplane"}, expansion=3).summary["mAP"] == plain["mAP"]
