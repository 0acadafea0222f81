"""scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), shipped offline with it."""

from __future__ import annotations

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
    from sklearn.datasets import load_digits  # lazy: scikit-learn is slow to import

    bunch = load_digits()
    count = DIGITS_COUNT if n is None else n
    images = torch.from_numpy(bunch.images[:count].astype(np.float32))
    x = (images / (DIGITS_MAX_VALUE / 2) - 1.0)[:, None]
    x = resize_images(x, resolution, Image.Resampling.BILINEAR)
    labels = torch.from_numpy(bunch.target[:count].astype(np.int64))
    return InMemoryDataset(x=match_channels(x, channels).contiguous(), labels=labels,
                           class_names=[str(d) for d in range(10)], kind="image", name="digits")
