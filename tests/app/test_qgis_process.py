"""`qgis_process` (QGIS's command-line Processing runner) with sketchsearch:sketchsearch, the plugin
installed from the packaged zip: a search writes ranked polygons; a failed one writes nothing."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
from PIL import Image

from .conftest import need, run_killing_group


def qgis_process(tmp_path: Path, plugin_zip: Path, engine_python: str, *args: str):
    """Runs qgis_process.bin with a fresh home (so a fresh profile) where the plugin is unpacked
    and enabled. qgis_process.bin, not Debian's wrapper: the wrapper passes QGIS_OPTS'
    --noversioncheck, which qgis_process rejects."""
    import zipfile

    home = tmp_path / "home"
    profile = home / ".local/share/QGIS/QGIS3/profiles/default"
    plugins = profile / "python/plugins"
    if not (plugins / "sketch_search_plugin").is_dir():
        plugins.mkdir(parents=True)
        zipfile.ZipFile(plugin_zip).extractall(plugins)
        (profile / "QGIS").mkdir()
        (profile / "QGIS/QGIS3.ini").write_text("[PythonPlugins]\nsketch_search_plugin=true\n")
    env = {**os.environ, "HOME": str(home), "QT_QPA_PLATFORM": "offscreen", "SKETCH_SEARCH_PYTHON": engine_python,
           "SKETCH_SEARCH_INDEX": str(tmp_path / "index")}
    env.pop("QGIS_OPTS", None)
    return run_killing_group(["qgis_process.bin", *args], timeout=400, env=env, cwd=tmp_path)


def test_qgis_process_runs_the_algorithm(tmp_path, plugin_zip, mosaic, data_dir, engine_python):
    need("qgis_process.bin")
    listed = qgis_process(tmp_path, plugin_zip, engine_python, "plugins")
    assert "* sketch_search_plugin" in listed.stdout, listed.stdout + listed.stderr  # loaded, with its provider
    out = tmp_path / "planes.gpkg"
    done = qgis_process(tmp_path, plugin_zip, engine_python, "run", "sketchsearch:sketchsearch",
                        f"--SKETCH={data_dir / 'eoc_sketches' / 'Aeroplane' / '0.jpg'}", f"--LAYERS={mosaic}",
                        "--TOP_K=5", f"--OUTPUT={out}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "5 matches" in done.stdout
    with sqlite3.connect(out) as db:
        table = db.execute("SELECT table_name FROM gpkg_contents").fetchone()[0]
        ranks = [r[0] for r in db.execute(f'SELECT rank FROM "{table}" ORDER BY rank')]
    assert ranks == [1, 2, 3, 4, 5]


def test_a_failed_qgis_process_run_leaves_no_output(tmp_path, plugin_zip, mosaic, engine_python):
    need("qgis_process.bin")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(blank)  # an empty sketch: nothing drawn
    out = tmp_path / "never.gpkg"
    done = qgis_process(tmp_path, plugin_zip, engine_python, "run", "sketchsearch:sketchsearch",
                        f"--SKETCH={blank}", f"--LAYERS={mosaic}", "--TOP_K=5", f"--OUTPUT={out}")
    assert done.returncode != 0
    assert "empty" in (done.stdout + done.stderr).lower()  # the engine's one-line reason reaches the user
    assert not out.exists()
