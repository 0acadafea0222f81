"""InMemoryDataset: properties, device moves, seeded batches with on-device flips, preview."""

from __future__ import annotations

import pytest
import torch

from diffstudio.data import InMemoryDataset, SkippedFile


def indexed_images(n: int = 10, res: int = 4) -> InMemoryDataset:
    """Image i is an asymmetric ramp offset by i, so its index and flip state are recoverable."""
    ramp = torch.linspace(-0.5, 0.5, res).expand(res, res)
    x = (ramp + torch.arange(n)[:, None, None] * 0.01)[:, None].repeat(1, 3, 1, 1).float() * 0.9
    labels = torch.arange(n) % 3
    return InMemoryDataset(x=x, labels=labels, class_names=["a", "b", "c"], kind="image", name="idx")


def test_properties() -> None:
    dataset = indexed_images()
    assert len(dataset) == 10 and dataset.num_classes == 3
    assert dataset.channels == 3 and dataset.resolution == 4 and dataset.kind == "image"
    points = InMemoryDataset(x=torch.zeros(5, 2), kind="points", name="p")
    assert points.resolution is None and points.num_classes == 0 and points.channels == 2


def test_skipped_file_is_frozen() -> None:
    skipped = SkippedFile("a.png", "empty file (0 bytes)")
    with pytest.raises(AttributeError):
        skipped.reason = "other"  # type: ignore[misc]


def test_validation_rejects_bad_tensors() -> None:
    with pytest.raises(ValueError, match="float32"):
        InMemoryDataset(x=torch.zeros(2, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="H == W"):
        InMemoryDataset(x=torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match="labels"):
        InMemoryDataset(x=torch.zeros(2, 1, 4, 4), labels=torch.tensor([0, 3]), class_names=["a"])


def test_sample_batch_shapes_and_label_alignment() -> None:
    dataset = indexed_images()
    x, y = dataset.sample_batch(32, torch.Generator().manual_seed(0))
    assert x.shape == (32, 3, 4, 4) and y is not None and y.shape == (32,) and y.dtype == torch.int64
    index = ((x[:, 0, 0, 0] / 0.9 + 0.5) / 0.01).round().long()
    assert torch.equal(y, index % 3)
    assert torch.equal(x, dataset.x[index])


def test_sample_batch_deterministic_with_seeded_generator() -> None:
    dataset = indexed_images()
    a = dataset.sample_batch(16, torch.Generator().manual_seed(5), hflip=True)
    b = dataset.sample_batch(16, torch.Generator().manual_seed(5), hflip=True)
    c = dataset.sample_batch(16, torch.Generator().manual_seed(6), hflip=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_hflip_flips_some_images_exactly() -> None:
    dataset = indexed_images()
    plain, _ = dataset.sample_batch(64, torch.Generator().manual_seed(1))
    flipped, _ = dataset.sample_batch(64, torch.Generator().manual_seed(1), hflip=True)
    same = (flipped == plain).flatten(1).all(1)
    mirrored = (flipped == plain.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and not (same & mirrored).any()
    assert 10 < int(mirrored.sum()) < 54  # about half


def test_points_ignore_hflip_and_have_no_labels() -> None:
    points = InMemoryDataset(x=torch.randn(20, 2), kind="points", name="p")
    x, y = points.sample_batch(8, torch.Generator().manual_seed(0), hflip=True)
    x2, _ = points.sample_batch(8, torch.Generator().manual_seed(0))
    assert y is None and x.shape == (8, 2)
    assert all(any(torch.equal(row, p) for p in points.x) for row in x)
    assert torch.equal(x, x2)  # no flip draws for points: same indices as without hflip


def test_to_same_device_returns_self_and_preview_is_first_items() -> None:
    dataset = indexed_images()
    assert dataset.to("cpu") is dataset
    assert torch.equal(dataset.preview(3), dataset.x[:3])
    assert dataset.preview(100).shape[0] == 10


def test_head_and_without_labels() -> None:
    dataset = indexed_images()
    head = dataset.head(4)
    assert len(head) == 4 and torch.equal(head.labels, dataset.labels[:4])
    bare = dataset.without_labels()
    assert bare.labels is None and bare.num_classes == 0 and torch.equal(bare.x, dataset.x)
