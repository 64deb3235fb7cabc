"""The sample sketches' PNGs (and the benchmarks' validation and fresh check sketches') are what the
plugin's canvas draws from their strokes (so the strokes are the source, and
scripts/sample/render_sketches.py can always remake the PNGs)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.qgis
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sample" / "render_sketches.py"


def _render_script():
    spec = importlib.util.spec_from_file_location("render_sketches", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("folder", ["samples/sketches", "benchmarks/validation_sketches", "benchmarks/fresh_sketches"])
def test_pngs_match_their_strokes(qgis_app, capsys, folder):
    root = SCRIPT.parents[2]
    assert _render_script().main(["--check", "--folder", str(root / folder)]) == 0, capsys.readouterr().err


def test_a_changed_stroke_is_noticed(qgis_app, tmp_path, capsys):
    import json
    import shutil

    render = _render_script()
    source = render.SKETCHES / "airplane" / "0.json"
    (tmp_path / "airplane").mkdir()
    shutil.copy(source.with_suffix(".png"), tmp_path / "airplane" / "0.png")
    doc = json.loads(source.read_text())
    doc["strokes"].append({"width": 8.0, "points": [[20.0, 20.0], [120.0, 20.0]]})  # a stroke the PNG lacks
    (tmp_path / "airplane" / "0.json").write_text(json.dumps(doc))
    assert render.main(["--check", "--folder", str(tmp_path)]) == 1
    assert render.main(["--folder", str(tmp_path)]) == 0 and render.main(["--check", "--folder", str(tmp_path)]) == 0
    capsys.readouterr()
