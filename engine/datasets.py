"""Class-folder data sets, in the two layouts the project reads (training and evaluation both read
them, so they live apart from either).

- AID / UC Merced layout: ROOT/<class>/<image files>.
- RSketch layout (the paper's): ROOT/sketch/<class>/... and ROOT/image/<class>/...; `side` picks
  which half is read. A plain layout is used when ROOT has no `sketch`/`image` pair.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


@dataclass(frozen=True)
class Item:
    path: Path
    label: str  # class folder name as written on disk


def is_rsketch_layout(root: Path) -> bool:
    return (root / "sketch").is_dir() and (root / "image").is_dir()


def list_class_folder(root: str | Path, side: str | None = None, classes: list[str] | None = None) -> list[Item]:
    """Every image under ROOT/<class>/ (sorted, reproducible). `side` ("sketch" or "image") reads one
    half of an RSketch layout; `classes` keeps only those class names (case-insensitive)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    if is_rsketch_layout(root):
        if side not in ("sketch", "image"):
            raise ValueError(f"{root} has the sketch/ and image/ layout: say which side to read")
        root = root / side
    wanted = {c.lower() for c in classes} if classes else None
    items = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if wanted is not None and folder.name.lower() not in wanted:
            continue
        items += [Item(f, folder.name) for f in sorted(folder.rglob("*"))
                  if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        what = f" for classes {', '.join(classes)}" if classes else ""
        raise ValueError(f"no images in class folders under {root}{what} (expected {root}/<class>/<images>)")
    if wanted is not None:
        missing = wanted - {i.label.lower() for i in items}
        if missing:
            raise ValueError(f"no class folder under {root} for: {', '.join(sorted(missing))}")
    return items

