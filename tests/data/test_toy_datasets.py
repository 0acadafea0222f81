"""2-D toy distributions: shape, finiteness, standardisation, determinism, exact mixture."""

from __future__ import annotations

import math

import pytest
import torch

from diffstudio.data import TOY_DATASETS, DatasetError, gaussians8_mixture, make_toy

NAMES = sorted(TOY_DATASETS)


@pytest.mark.parametrize("name", NAMES)
def test_points_shape_finite_and_standardised(name: str) -> None:
    dataset = make_toy(name, n=20_000, seed=0)
    assert dataset.kind == "points" and dataset.name == name and len(dataset) == 20_000
    assert dataset.x.shape == (20_000, 2) and dataset.x.dtype == torch.float32
    assert torch.isfinite(dataset.x).all()
    assert dataset.resolution is None and dataset.channels == 2
    torch.testing.assert_close(dataset.x.double().mean(0), torch.zeros(2, dtype=torch.float64), atol=0.05, rtol=0)
    torch.testing.assert_close(dataset.x.double().std(0), torch.ones(2, dtype=torch.float64), atol=0.05, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_seed(name: str) -> None:
    a, b, c = make_toy(name, n=500, seed=7), make_toy(name, n=500, seed=7), make_toy(name, n=500, seed=8)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)


def test_gaussians8_mixture_matches_samples() -> None:
    means, std, weights = gaussians8_mixture()
    assert means.shape == (8, 2) and weights.shape == (8,)
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    radii = means.norm(dim=1)
    torch.testing.assert_close(radii, radii[0].expand(8))
    torch.testing.assert_close(radii[0] ** 2 / 2 + std**2, torch.tensor(1.0, dtype=torch.float64))
    dataset = make_toy("gaussians8", n=40_000, seed=0)
    assert dataset.class_names == [str(k) for k in range(8)]
    for k in range(8):
        points = dataset.x[dataset.labels == k].double()
        torch.testing.assert_close(points.mean(0), means[k], atol=0.01, rtol=0)
        torch.testing.assert_close(points.std(0), torch.full((2,), std, dtype=torch.float64), atol=0.01, rtol=0)


def test_checkerboard_is_on_dark_cells_only() -> None:
    x = make_toy("checkerboard", n=5000).x.double() * (4 / math.sqrt(12))  # back to [-2, 2]
    cells = torch.floor(x[:, 0]) + torch.floor(x[:, 1])
    assert (cells.remainder(2) == 0).all() or (cells.remainder(2) == 1).all()
    assert x.abs().max() <= 2.0 + 1e-6


def test_moons_have_two_labelled_halves() -> None:
    dataset = make_toy("moons", n=2000)
    assert dataset.class_names == ["upper", "lower"]
    upper, lower = dataset.x[dataset.labels == 0], dataset.x[dataset.labels == 1]
    assert upper[:, 1].mean() > lower[:, 1].mean() + 1.0


def test_unknown_toy_and_bad_n() -> None:
    with pytest.raises(DatasetError, match="known: moons"):
        make_toy("spiral")
    with pytest.raises(DatasetError):
        make_toy("moons", n=0)
