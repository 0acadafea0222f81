"""scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), shipped offline with it."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diffstudio.data.dataset import InMemoryDataset
from diffstudio.data.pixels import match_channels, resize_images

DIGITS_COUNT = 1797
DIGITS_RESOLUTION = 8
DIGITS_MAX_VALUE = 16.0  # load_digits pixels are integers 0..16


def make_digits(
    resolution: int = DIGITS_RESOLUTION, channels: int = 1, n: int | None = None
) -> InMemoryDataset:
    """The first ``n`` (default all 1797) digits, ``x = 2 v / 16 - 1``, labels 0..9.

    Other resolutions are resized from 8x8 with Pillow (bilinear); 3 channels repeat the grey.
    """
    images, target = digits_arrays()
    count = DIGITS_COUNT if n is None else n
    images = torch.from_numpy(images[:count].astype(np.float32))
    x = (images / (DIGITS_MAX_VALUE / 2) - 1.0)[:, None]
    x = resize_images(x, resolution, Image.Resampling.BILINEAR)
    labels = torch.from_numpy(target[:count].astype(np.int64))
    return InMemoryDataset(x=match_channels(x, channels).contiguous(), labels=labels,
                           class_names=[str(d) for d in range(10)], kind="image", name="digits")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(images (1797, 8, 8) 0..16, target (1797,))``, read straight from the CSV that
    scikit-learn ships (importing ``sklearn.datasets`` costs ~1 s of start-up); through
    ``load_digits`` when that file is not where this scikit-learn keeps it."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is not None and path.is_file():
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",")
        if table.shape == (DIGITS_COUNT, 65):
            return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits  # lazy: scikit-learn is slow to import

    bunch = load_digits()
    return bunch.images, bunch.target
