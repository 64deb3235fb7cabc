"""Renders the sample sketches' strokes (samples/sketches/<what>/<n>.json) to PNGs beside them with
the plugin's own canvas (sketch_search_plugin/sketch_canvas.py), exactly as the dock would send them.
Needs QGIS's Python bindings (the project's .venv sees them) and runs offscreen.

    .venv/bin/python scripts/sample/render_sketches.py           # (re)writes every <n>.png
    .venv/bin/python scripts/sample/render_sketches.py --check   # exit 1 if a PNG differs from its strokes
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKETCHES = ROOT / "samples" / "sketches"
SIZE = 512  # px, the canvas's own size for a saved sketch


def canvas_for(doc: dict):
    from sketch_search_plugin.sketch_canvas import LOGICAL, SketchCanvas

    canvas = SketchCanvas()
    k = LOGICAL / float(doc.get("logical_size", LOGICAL))
    for stroke in doc["strokes"]:
        canvas.add_stroke([(x * k, y * k) for x, y in stroke["points"]], width=stroke["width"] * k,
                          erase=bool(stroke.get("erase", False)), normalized=False)
    return canvas


def rendered_rgb(json_path: Path):
    """The sketch of one strokes file as the canvas renders it: uint8 (SIZE, SIZE, 3)."""
    return canvas_for(json.loads(json_path.read_text())).to_rgb_array(SIZE)


def png_rgb(png_path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(png_path) as im:
        return np.asarray(im.convert("RGB"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare the PNGs with their strokes, write nothing")
    parser.add_argument("--folder", type=Path, default=SKETCHES, help="sketch folder (default: %(default)s)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT))
    from qgis.PyQt.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])  # noqa: F841 (widgets need one)
    files = sorted(args.folder.glob("*/*.json"))
    if not files:
        print(f"no strokes files under {args.folder}", file=sys.stderr)
        return 2
    differing = []
    for path in files:
        png = path.with_suffix(".png")
        if args.check:
            import numpy as np

            if not png.is_file() or png_rgb(png).shape != (SIZE, SIZE, 3) or \
                    np.abs(png_rgb(png).astype(int) - rendered_rgb(path)).max() > 2:
                differing.append(png)
        else:
            canvas_for(json.loads(path.read_text())).save_image(png, SIZE)
    if differing:
        print("PNGs that differ from their strokes (run without --check):", *differing, sep="\n  ", file=sys.stderr)
        return 1
    print(f"{'checked' if args.check else 'rendered'} {len(files)} sketches under {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
