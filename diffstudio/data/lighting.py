"""Synthetic images whose mean brightness spans black to white (Lin et al. 2024, Sec. 3).

``lighting``: ``x = b + a * p`` with brightness ``b ~ U(-1, 1)`` per image and ``p`` a smooth
zero-mean pattern (gradient + Gaussian blob, max |p| = 1). The amplitude ``a = min(A, 1 - |b|)``
keeps every pixel in [-1, 1] and the pixel mean exactly ``b``.
``lighting-flat``: constant images ``x = b``. The pixel mean is then a sufficient statistic, so
the exact denoiser of ``x_t = alpha_t x0 + sigma_t eps`` is closed form under the uniform prior
on ``b`` given by :func:`lighting_brightness_range`.

A model trained on either with a schedule whose terminal SNR is not zero learns to keep the
(slightly leaked) mean brightness of its starting noise, and so only produces mid-grey images:
the "uniform lighting" problem.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from diffstudio.data.dataset import InMemoryDataset
from diffstudio.data.pixels import match_channels

LIGHTING_BRIGHTNESS_RANGE = (-1.0, 1.0)
"""Per-image mean brightness ``b`` is Uniform(low, high) on this interval (pixel units)."""

PATTERN_AMPLITUDE = 0.5
"""Largest pattern amplitude ``A``; near black or white it shrinks to ``1 - |b|``."""


def lighting_brightness_range() -> tuple[float, float]:
    """The uniform prior of the per-image mean brightness: ``b ~ U(-1, 1)``."""
    return LIGHTING_BRIGHTNESS_RANGE


def sample_brightness(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` brightness values from the uniform prior, float64 (n,)."""
    low, high = LIGHTING_BRIGHTNESS_RANGE
    return rng.uniform(low, high, n)


def make_lighting(n: int = 4096, resolution: int = 32, channels: int = 1, seed: int = 0,
                  amplitude: float = PATTERN_AMPLITUDE) -> InMemoryDataset:
    """``n`` images ``b + min(amplitude, 1 - |b|) * pattern``, float32 (n, channels, r, r)."""
    rng = np.random.default_rng(seed)
    b = sample_brightness(n, rng)
    a = np.minimum(amplitude, 1.0 - np.abs(b))
    x = b[:, None, None] + a[:, None, None] * smooth_patterns(n, resolution, rng)
    return _dataset(torch.from_numpy(x), channels, "lighting")


def make_lighting_flat(n: int = 4096, resolution: int = 32, channels: int = 1,
                       seed: int = 0) -> InMemoryDataset:
    """``n`` constant images at brightness ``b ~ U(-1, 1)``, float32 (n, channels, r, r)."""
    rng = np.random.default_rng(seed)
    b = torch.from_numpy(sample_brightness(n, rng))
    return _dataset(b[:, None, None].expand(n, resolution, resolution), channels, "lighting-flat")


def smooth_patterns(n: int, resolution: int, rng: np.random.Generator) -> np.ndarray:
    """float64 (n, r, r): random linear gradient + signed Gaussian blob; zero mean, max |p| = 1."""
    u = (np.arange(resolution) + 0.5) / resolution * 2.0 - 1.0
    yy, xx = np.meshgrid(u, u, indexing="ij")
    theta = rng.uniform(0.0, 2.0 * np.pi, (n, 1, 1))
    centre = rng.uniform(-0.6, 0.6, (n, 2, 1, 1))
    width = rng.uniform(0.25, 0.6, (n, 1, 1))
    sign = rng.choice([-1.0, 1.0], (n, 1, 1))
    gradient = rng.uniform(0.2, 1.0, (n, 1, 1)) * (np.cos(theta) * xx + np.sin(theta) * yy)
    dist2 = (xx - centre[:, 0]) ** 2 + (yy - centre[:, 1]) ** 2
    p = gradient + sign * np.exp(-dist2 / (2.0 * width**2))
    p -= p.mean(axis=(1, 2), keepdims=True)
    return p / np.abs(p).max(axis=(1, 2), keepdims=True)


def _dataset(x: Tensor, channels: int, name: str) -> InMemoryDataset:
    images = x.to(torch.float32).clamp(-1.0, 1.0)[:, None]
    return InMemoryDataset(x=match_channels(images, channels).contiguous(), kind="image", name=name)
