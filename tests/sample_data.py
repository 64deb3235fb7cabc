"""A stand-in for ../shared/data made from the repository's own sample (samples/), so a clone without
the shared data runs every test that needs real imagery.

It has the two folders the tests read, in the same layout:
- `ucm10/<class>/<image>.jpg`: the 100 real UC Merced images of samples/ucm_mosaic.tif (10 of each
  of the 10 classes), cut back out of the mosaic by their truth polygons, under their original names;
- `eoc_sketches/<Name>/<n>.jpg`: the project's own sketches of samples/sketches/<class>/<n>.png, under
  the folder names the tests use for Earth-on-Canvas's (airplane -> Aeroplane). They are not
  Earth-on-Canvas sketches, whose licence keeps them out of the repository.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
SKETCH_FOLDERS = {"airplane": "Aeroplane", "tenniscourt": "Tenniscourt"}  # else the class, capitalised


def sample_is_complete(samples: Path = SAMPLES) -> bool:
    return (samples / "ucm_mosaic.tif").is_file() and (samples / "ucm_truth.geojson").is_file() \
        and any((samples / "sketches").glob("*/*.png"))


def cut_images(samples: Path, dest: Path) -> int:
    """Every truth cell of the sample mosaic as dest/<class>/<image>; returns how many."""
    import fiona
    import rasterio
    from fiona.transform import transform_geom
    from PIL import Image
    from rasterio.windows import from_bounds
    from shapely.geometry import shape

    count = 0
    with rasterio.open(samples / "ucm_mosaic.tif") as ds, fiona.open(samples / "ucm_truth.geojson") as truth:
        for feature in truth:
            bounds = shape(transform_geom(truth.crs, ds.crs.to_wkt(), feature["geometry"])).bounds
            window = from_bounds(*bounds, ds.transform).round_offsets().round_lengths()  # cm off in WGS 84
            cell = ds.read(window=window).transpose(1, 2, 0)
            folder = dest / feature["properties"]["class"]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(cell).save(folder / feature["properties"]["image"], quality=95)
            count += 1
    return count


def copy_sketches(samples: Path, dest: Path) -> int:
    """The sample's sketch PNGs as dest/<Name>/<n>.jpg (black on white); returns how many."""
    from PIL import Image

    count = 0
    for png in sorted((samples / "sketches").glob("*/*.png")):
        cls = png.parent.name
        folder = dest / SKETCH_FOLDERS.get(cls, cls.capitalize())
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(png) as im:
            im.convert("RGB").save(folder / f"{png.stem}.jpg", quality=95)
        count += 1
    return count


def build_stand_in(dest: Path, samples: Path = SAMPLES) -> Path:
    """Writes the stand-in data folder at dest (made if needed) and returns it."""
    dest.mkdir(parents=True, exist_ok=True)
    cut_images(samples, dest / "ucm10")
    copy_sketches(samples, dest / "eoc_sketches")
    (dest / "SAMPLE_STAND_IN.txt").write_text(__doc__)
    return dest
