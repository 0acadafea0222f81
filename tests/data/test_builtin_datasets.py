"""Built-in image datasets: digits, shapes, lighting, lighting-flat."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffstudio.data import (
    BUILTIN_IMAGE_DATASETS,
    SHAPE_KINDS,
    DatasetError,
    lighting_brightness_range,
    make_builtin,
    make_digits,
    make_lighting,
    make_lighting_flat,
    make_shapes,
)


def assert_images(x: torch.Tensor, n: int, channels: int, resolution: int) -> None:
    assert x.shape == (n, channels, resolution, resolution) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= -1.0 and x.max() <= 1.0


def per_image_mean(x: torch.Tensor) -> torch.Tensor:
    return x.double().mean(dim=(1, 2, 3))


def test_digits_full_set_with_labels() -> None:
    from sklearn.datasets import load_digits

    dataset = make_digits()
    bunch = load_digits()
    assert_images(dataset.x, 1797, 1, 8)
    assert dataset.class_names == [str(d) for d in range(10)] and dataset.num_classes == 10
    assert dataset.labels is not None and torch.equal(dataset.labels, torch.from_numpy(bunch.target))
    expected = torch.from_numpy(bunch.images[:, None].astype(np.float32)) / 8.0 - 1.0  # 0..16
    torch.testing.assert_close(dataset.x, expected)
    assert dataset.x.min() == -1.0 and dataset.x.max() == 1.0


def test_digits_without_the_csv_fall_back_to_load_digits(monkeypatch) -> None:
    """The CSV is read directly to skip importing sklearn.datasets; where scikit-learn keeps it
    elsewhere, load_digits gives the same data."""
    import importlib.util

    import diffstudio.data.digits as digits

    direct = digits.digits_arrays()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    fallback = digits.digits_arrays()
    assert np.array_equal(direct[0], fallback[0]) and np.array_equal(direct[1], fallback[1])
    assert direct[0].shape == (1797, 8, 8) and direct[0].max() == 16


def test_digits_resized_and_rgb() -> None:
    dataset = make_digits(resolution=16, channels=3, n=50)
    assert_images(dataset.x, 50, 3, 16)
    assert torch.equal(dataset.x[:, 0], dataset.x[:, 2])
    small = make_digits(n=50)
    torch.testing.assert_close(per_image_mean(dataset.x), per_image_mean(small.x), atol=0.05, rtol=0)


def test_shapes_default_size_labels_and_colour() -> None:
    dataset = make_shapes()
    assert_images(dataset.x, 4000, 3, 32)
    assert dataset.class_names == list(SHAPE_KINDS)
    assert torch.bincount(dataset.labels).tolist() == [1000] * len(SHAPE_KINDS)
    corners = dataset.x[:, :, 0, 0]
    centre_like = dataset.x.flatten(2).std(dim=2).mean(dim=1)
    assert corners.std() > 0.3  # random backgrounds
    assert (centre_like > 0.05).all()  # every image has a visible shape on its background


def test_shapes_deterministic_for_seed() -> None:
    a, b, c = make_shapes(64, seed=3), make_shapes(64, seed=3), make_shapes(64, seed=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.x, c.x)


def test_shapes_grey_and_resolution() -> None:
    dataset = make_shapes(n=16, resolution=24, channels=1)
    assert_images(dataset.x, 16, 1, 24)


def test_lighting_brightness_spans_black_to_white_uniformly() -> None:
    dataset = make_lighting()
    assert_images(dataset.x, 4096, 1, 32)
    means = per_image_mean(dataset.x)
    assert means.min() < -0.98 and means.max() > 0.98
    counts = torch.histc(means, bins=10, min=-1.0, max=1.0)
    assert (counts - 409.6).abs().max() < 0.15 * 409.6  # approximately uniform on [-1, 1]
    sorted_means = means.sort().values
    uniform_cdf = (sorted_means + 1.0) / 2.0
    empirical = (torch.arange(1, len(means) + 1, dtype=torch.float64)) / len(means)
    assert (uniform_cdf - empirical).abs().max() < 0.03  # Kolmogorov-Smirnov distance


def test_lighting_has_soft_patterns_with_exact_mean() -> None:
    dataset = make_lighting(n=512, seed=1)
    rng = np.random.default_rng(1)
    low, high = lighting_brightness_range()
    brightness = torch.from_numpy(rng.uniform(low, high, 512))
    torch.testing.assert_close(per_image_mean(dataset.x), brightness, atol=1e-5, rtol=0)
    spread = dataset.x.flatten(1).std(dim=1)
    mid = brightness.abs() < 0.5
    assert (spread[mid] > 0.05).all()  # not flat where there is room for a pattern
    assert torch.equal(dataset.x, make_lighting(n=512, seed=1).x)


def test_lighting_flat_images_are_constant() -> None:
    dataset = make_lighting_flat(n=256, resolution=16, channels=3, seed=2)
    assert_images(dataset.x, 256, 3, 16)
    flat = dataset.x.flatten(1)
    assert torch.equal(flat.max(dim=1).values, flat.min(dim=1).values)
    assert flat[:, 0].min() < -0.9 and flat[:, 0].max() > 0.9
    assert dataset.labels is None and dataset.num_classes == 0


def test_brightness_prior() -> None:
    assert lighting_brightness_range() == (-1.0, 1.0)


@pytest.mark.parametrize("name", sorted(BUILTIN_IMAGE_DATASETS))
def test_metadata_matches_generated_defaults(name: str) -> None:
    info = BUILTIN_IMAGE_DATASETS[name]
    resolution, channels, has_labels, description = info
    dataset = make_builtin(name, n=8)
    assert_images(dataset.x, 8, channels, resolution)
    assert (dataset.labels is not None) == has_labels and description
    assert dataset.name == name


def test_make_builtin_errors() -> None:
    with pytest.raises(DatasetError, match="known: digits"):
        make_builtin("nope")
    with pytest.raises(DatasetError, match="1,797"):
        make_builtin("digits", n=5000)
    with pytest.raises(DatasetError, match="channels"):
        make_builtin("shapes", channels=4)
