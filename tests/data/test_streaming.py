"""The streaming loader draws exactly the batches of the device-resident dataset from the same
random stream, reads ahead when it can, and never lets reading ahead change a batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffstudio.data.training_data import load_training_data

RES = 5


@pytest.fixture
def two_paths(tmp_path: Path):
    """The same labelled folder, device-resident (uint8) and streamed."""
    rng = np.random.default_rng(1)
    for i in range(12):
        folder = tmp_path / "f" / ("a" if i % 3 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (7, 7, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    kw = {"resolution": RES, "channels": 3, "labels": True}
    resident = load_training_data(str(tmp_path / "f"), torch.device("cpu"), memory_budget_mb=1.0, **kw).dataset
    streamed = load_training_data(str(tmp_path / "f"), torch.device("cpu"), memory_budget_mb=1e-6, **kw).dataset
    yield resident, streamed
    streamed.close()


def draw_like_the_trainer(data, steps, shard=(0, 1), interfere=False):
    """Per step: the batch, then more draws from the same stream (times, noise), then read-ahead."""
    g = torch.Generator().manual_seed(11)
    out = []
    for _ in range(steps):
        x, y = data.sample_batch(4, g, hflip=True, shard=shard)
        torch.rand(4 * shard[1], generator=g)  # the trainer's times and noise
        data.prefetch(g, 4, shard=shard)
        if interfere:
            torch.rand(1, generator=g)  # a draw the read-ahead could not foresee
        out.append((x, y))
    return out


def test_streamed_batches_equal_the_device_resident_ones_and_are_read_ahead(two_paths):
    resident, streamed = two_paths
    assert resident.x.dtype == torch.uint8 and resident.class_names == streamed.class_names == ["a", "b"]
    for (xa, ya), (xb, yb) in zip(draw_like_the_trainer(resident, 6), draw_like_the_trainer(streamed, 6)):
        assert xb.dtype == torch.float32 and torch.equal(xa, xb) and torch.equal(ya, yb)
    assert streamed.reads == {"ahead": 5, "waited": 1}  # only the first batch is read on the spot


def test_an_unforeseen_draw_falls_back_to_reading_on_the_spot_with_the_same_batches(two_paths):
    resident, streamed = two_paths
    expected = draw_like_the_trainer(resident, 4, interfere=True)
    for (xa, ya), (xb, yb) in zip(expected, draw_like_the_trainer(streamed, 4, interfere=True)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert streamed.reads == {"ahead": 0, "waited": 4}


def test_each_rank_reads_its_slice_of_the_global_batch(two_paths):
    resident, streamed = two_paths
    whole = draw_like_the_trainer(resident, 3, shard=(0, 1))
    g = torch.Generator().manual_seed(11)
    for step in range(3):  # one process with the global batch of 2 ranks x 4
        x, y = resident.sample_batch(8, g, hflip=True)
        torch.rand(8, generator=g)
        whole[step] = (x, y)
    for rank in (0, 1):
        mine = draw_like_the_trainer(streamed, 3, shard=(rank, 2))
        for (x, y), (xr, yr) in zip(whole, mine):
            assert torch.equal(x[rank * 4:(rank + 1) * 4], xr) and torch.equal(y[rank * 4:(rank + 1) * 4], yr)
