"""The partial-view gallery of benchmarks/crop_gallery.py: seeded, square, inside each image."""
import numpy as np
from PIL import Image

from benchmarks.crop_gallery import crops


def test_crops_are_seeded_squares_cut_from_each_image(tmp_path):
    rng = np.random.default_rng(5)
    paths = []
    for i, (h, w) in enumerate([(256, 256), (200, 300), (90, 60)]):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    first, again = crops(paths, 0.6), crops(paths, 0.6)
    assert [c.shape for c in first] == [(153, 153, 3), (120, 120, 3), (36, 36, 3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    for path, crop in zip(paths, first):  # each crop is a window of its own image
        image = np.asarray(Image.open(path))
        side = crop.shape[0]
        found = any(np.array_equal(image[y:y + side, x:x + side], crop)
                    for y in range(image.shape[0] - side + 1) for x in range(image.shape[1] - side + 1))
        assert found
    assert not np.array_equal(crops(paths, 0.6, seed=1)[0], first[0])
