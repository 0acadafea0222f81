"""Statistics of an image dataset computed in chunks: per-image mean brightness and value range.

Works on any dataset the app or the CLI holds: an :class:`~diffstudio.data.dataset.InMemoryDataset`
(float32 in [-1, 1] or uint8 levels) or a :class:`~diffstudio.data.streaming.StreamingDataset` over
the on-disk uint8 pixel cache, reading at most ``chunk_bytes`` of pixels at a time, so a folder of
any size is summarised without a float copy of it. uint8 levels ``v`` mean ``v / 127.5 - 1``
(:func:`~diffstudio.data.pixels.uint8_to_unit_range`); their sums are exact integers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

CHUNK_BYTES = 16 << 20
"""Pixels read per chunk (bytes as stored)."""


@dataclass(frozen=True)
class ImageStats:
    """``means``: float64 (N,) mean of each image over all its pixels and channels, in [-1, 1];
    ``value_range``: (smallest, largest) pixel value in [-1, 1]."""

    means: np.ndarray
    value_range: tuple[float, float]


def pixel_chunks(dataset, limit: int | None = None, chunk_bytes: int | None = None,
                 start: int = 0) -> Iterator[np.ndarray]:
    """Images ``start`` to ``limit`` (default: to the end) of ``dataset`` as consecutive numpy
    chunks (n, C, H, W), uint8 or float32 as stored, each at most ``chunk_bytes`` (default
    :data:`CHUNK_BYTES`; at least one image). A streamed dataset is read from its memory map
    (``read_items``), so it is never held whole."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count <= start:
        return
    read = getattr(dataset, "read_items", None)
    x = None if read is not None else dataset.x
    step = max(1, chunk_bytes // max(1, image_bytes(dataset)))
    for first in range(start, count, step):
        stop = min(count, first + step)
        yield read(first, stop) if read is not None else x[first:stop].detach().cpu().numpy()


def image_bytes(dataset) -> int:
    """Bytes of one stored image (uint8 or float32)."""
    return int(np.prod(dataset_shape(dataset))) * (1 if _is_uint8(dataset) else 4)


def dataset_shape(dataset) -> tuple[int, ...]:
    """(C, H, W) of one image."""
    return (dataset.channels, dataset.resolution, dataset.resolution)


def image_stats(dataset, limit: int | None = None, chunk_bytes: int | None = None) -> ImageStats:
    """:class:`ImageStats` of the first ``limit`` (default all) images of an image dataset, read in
    chunks of at most ``chunk_bytes``. Raises ValueError for a dataset of points."""
    if getattr(dataset, "kind", "image") != "image":
        raise ValueError("image statistics need an image dataset, not 2-D points")
    means, lo, hi = [], np.inf, -np.inf
    for chunk in pixel_chunks(dataset, limit, chunk_bytes):
        flat = chunk.reshape(len(chunk), -1)
        if flat.dtype == np.uint8:
            means.append(flat.sum(axis=1, dtype=np.uint64) / (flat.shape[1] * 127.5) - 1.0)
            lo, hi = min(lo, int(flat.min()) / 127.5 - 1.0), max(hi, int(flat.max()) / 127.5 - 1.0)
        else:
            means.append(flat.mean(axis=1, dtype=np.float64))
            lo, hi = min(lo, float(flat.min())), max(hi, float(flat.max()))
    if not means:
        return ImageStats(np.zeros(0), (0.0, 0.0))
    return ImageStats(np.concatenate(means), (float(lo), float(hi)))


def _is_uint8(dataset) -> bool:
    x = getattr(dataset, "x", None)
    return x is None or x.dtype == torch.uint8


__all__ = ["CHUNK_BYTES", "ImageStats", "dataset_shape", "image_stats", "pixel_chunks"]
