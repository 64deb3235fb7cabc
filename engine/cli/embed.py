"""`sketch-search embed`: stage-1 vectors of sketches or images, saved as a .npy array."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


def register(sub) -> None:
    p = sub.add_parser("embed", help="compute L2-normalised global vectors of sketches or images")
    p.add_argument("inputs", nargs="+", help="image files or folders of them")
    p.add_argument("--as", dest="kind", choices=("sketch", "image"), required=True,
                   help="preprocess the inputs as sketches or as images")
    p.add_argument("--out", required=True,
                   help=".npy file for the (N, D) vectors; the file list goes beside it as .txt")
    p.add_argument("--checkpoint", help="model file (default: the shipped model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(handler=run)


def list_images(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(f for f in item.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    if not files:
        raise ValueError(f"no images found in {', '.join(inputs)}")
    return files


def run(args) -> int:
    from ..runtime import load_embedder

    out = Path(args.out)
    if out.suffix != ".npy":
        raise UserError(f"--out must end in .npy: {out}")
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} exists (use --overwrite to replace it)")
    files = list_images(args.inputs)
    emb = load_embedder(args.checkpoint, args.device)  # PyTorch, or ONNX Runtime where PyTorch is missing
    vectors = (emb.embed_sketches(files) if args.kind == "sketch" else emb.embed_images(files)).cls
    np.save(out, vectors)
    out.with_suffix(".txt").write_text("".join(f"{f}\n" for f in files))
    print(f"wrote {len(files)} vectors of size {vectors.shape[1]} to {out}")
    return 0
