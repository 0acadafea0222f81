"""2-D toy distributions (moons, swissroll, checkerboard, gaussians8) as point datasets.

Each is standardised with its *population* mean and standard deviation per axis (computed in
closed form or by quadrature, not from the sample), so every n and seed shares one coordinate
system with per-axis mean 0 and std 1. ``gaussians8_mixture`` gives the exact mixture in those
coordinates, for the exact denoiser of that distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
import torch
from torch import Tensor

from diffstudio.data.dataset import InMemoryDataset
from diffstudio.data.errors import DatasetError

DEFAULT_TOY_POINTS = 8192
GAUSSIANS8_STD = 0.15
"""Per-axis std of each of the 8 Gaussians, in standardised coordinates."""
GAUSSIANS8_RADIUS = math.sqrt(2.0 * (1.0 - GAUSSIANS8_STD**2))
"""Radius of the circle of means, chosen so the mixture has per-axis variance R^2/2 + s^2 = 1."""
MOONS_NOISE = 0.05  # raw units (moon radius 1)
SWISSROLL_NOISE = 0.5  # raw units (roll radius 4.7 to 14.1)
CHECKERBOARD_HALF_WIDTH = 2.0  # raw board [-2, 2]^2 of 4x4 cells, uniform on the 8 dark cells

TOY_DATASETS: dict[str, str] = {
    "moons": "two interleaving half circles (labels: which moon)",
    "swissroll": "2-D Swiss roll spiral",
    "checkerboard": "uniform on the dark cells of a 4x4 checkerboard",
    "gaussians8": "8 Gaussians on a circle (labels: component); exact mixture known",
}


def make_toy(name: str, n: int = DEFAULT_TOY_POINTS, seed: int = 0) -> InMemoryDataset:
    """``n`` standardised points float32 (n, 2) of toy ``name``, the same for the same seed.
    Raises DatasetError for an unknown name or ``n < 1``."""
    if name not in TOY_DATASETS:
        raise DatasetError(f"Unknown toy dataset {name!r}; known: {', '.join(TOY_DATASETS)}")
    if n < 1:
        raise DatasetError(f"{name}: n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    points, labels, class_names = _SAMPLERS[name](n, rng)
    x = torch.from_numpy(points.astype(np.float32))
    y = None if labels is None else torch.from_numpy(labels.astype(np.int64))
    return InMemoryDataset(x=x, labels=y, class_names=class_names, kind="points", name=name)


def gaussians8_mixture() -> tuple[Tensor, float, Tensor]:
    """(means float64 (8, 2), isotropic std, weights float64 (8,)) in standardised coordinates.

    Component k has mean R (cos(k pi/4), sin(k pi/4)) with R = GAUSSIANS8_RADIUS; weights 1/8.
    """
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    means = GAUSSIANS8_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)
    return means, GAUSSIANS8_STD, torch.full((8,), 1.0 / 8.0, dtype=torch.float64)


Sample = tuple[np.ndarray, np.ndarray | None, list[str]]


def _gaussians8(n: int, rng: np.random.Generator) -> Sample:
    means, std, _ = gaussians8_mixture()
    k = rng.integers(0, 8, n)
    points = means.numpy()[k] + std * rng.standard_normal((n, 2))
    return points, k, [str(i) for i in range(8)]


def _moons(n: int, rng: np.random.Generator) -> Sample:
    k = rng.integers(0, 2, n)
    t = rng.uniform(0.0, math.pi, n)
    raw = _moon_curve(t, k) + MOONS_NOISE * rng.standard_normal((n, 2))
    mean, std = _moons_moments()
    return (raw - mean) / std, k, ["upper", "lower"]


def _moon_curve(t: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Upper moon (cos t, sin t); lower moon (1 - cos t, 1/2 - sin t), as sklearn's make_moons."""
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    return np.where(k[:, None] == 0, upper, lower)


def _swissroll(n: int, rng: np.random.Generator) -> Sample:
    t = _swissroll_t(rng.uniform(0.0, 1.0, n))
    raw = _swissroll_curve(t) + SWISSROLL_NOISE * rng.standard_normal((n, 2))
    mean, std = _swissroll_moments()
    return (raw - mean) / std, None, []


def _swissroll_t(u: np.ndarray) -> np.ndarray:
    """sklearn's make_swiss_roll parameter t = 1.5 pi (1 + 2u) for u ~ U(0, 1)."""
    return 1.5 * math.pi * (1.0 + 2.0 * u)


def _swissroll_curve(t: np.ndarray) -> np.ndarray:
    return np.stack([t * np.cos(t), t * np.sin(t)], axis=1)


def _checkerboard(n: int, rng: np.random.Generator) -> Sample:
    """Each axis is marginally U(-2, 2): mean 0, variance 16 / 12."""
    x1 = rng.uniform(-2.0, 2.0, n)
    x2 = rng.uniform(0.0, 1.0, n) - 2.0 * rng.integers(0, 2, n) + np.floor(x1) % 2
    std = 2.0 * CHECKERBOARD_HALF_WIDTH / math.sqrt(12.0)
    return np.stack([x1, x2], axis=1) / std, None, []


@cache
def _moons_moments() -> tuple[np.ndarray, np.ndarray]:
    def upper(u: np.ndarray) -> np.ndarray:
        return _moon_curve(u * math.pi, np.zeros(len(u), dtype=int))

    def lower(u: np.ndarray) -> np.ndarray:
        return _moon_curve(u * math.pi, np.ones(len(u), dtype=int))

    return _quadrature_moments(upper, lower, MOONS_NOISE)


@cache
def _swissroll_moments() -> tuple[np.ndarray, np.ndarray]:
    def roll(u: np.ndarray) -> np.ndarray:
        return _swissroll_curve(_swissroll_t(u))

    return _quadrature_moments(roll, roll, SWISSROLL_NOISE)


def _quadrature_moments(curve_a: Callable, curve_b: Callable, noise: float,
                        steps: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Population mean and std per axis of an equal mixture of two curves over u ~ U(0, 1),
    plus isotropic Gaussian noise (midpoint rule; error far below float32 precision)."""
    u = (np.arange(steps) + 0.5) / steps
    points = np.concatenate([curve_a(u), curve_b(u)])
    mean = points.mean(axis=0)
    return mean, np.sqrt(points.var(axis=0) + noise**2)


_SAMPLERS: dict[str, Callable[[int, np.random.Generator], Sample]] = {
    "moons": _moons,
    "swissroll": _swissroll,
    "checkerboard": _checkerboard,
    "gaussians8": _gaussians8,
}
