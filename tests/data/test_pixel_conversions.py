"""Stored pixel formats convert exactly to the float32 [-1, 1] convention."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from diffstudio.data.pixels import (
    match_channels,
    uint8_hwc_to_unit_range,
    uint16_to_unit_range,
    unit_range_to_uint8,
)


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, (2, 3, 3, 3)))
def test_uint8_through_uint16_matches_2v_over_255_minus_1(values: np.ndarray) -> None:
    via_u16 = uint16_to_unit_range(values.astype(np.uint16) * np.uint16(257))
    expected = torch.from_numpy(values.astype(np.float64) * 2 / 255 - 1)
    torch.testing.assert_close(via_u16.double(), expected, atol=1e-6, rtol=0)
    assert via_u16.min() >= -1.0 and via_u16.max() <= 1.0
    assert np.array_equal(unit_range_to_uint8(via_u16), values.transpose(0, 2, 3, 1))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 65535))
def test_uint16_extremes_stay_in_range(value: int) -> None:
    x = uint16_to_unit_range(np.full((1, 1, 2, 2), value, dtype=np.uint16))
    assert -1.0 <= float(x.min()) <= float(x.max()) <= 1.0
    assert bool((x == 1.0).all()) == (value == 65535)  # only white maps to exactly 1
    assert bool((x == -1.0).all()) == (value == 0)


def test_hwc_conversion_and_channel_matching() -> None:
    images = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    images[..., 0] = 255
    x = uint8_hwc_to_unit_range(images)
    assert x.shape == (1, 3, 2, 2) and torch.equal(x[:, 0], torch.ones(1, 2, 2))
    grey = match_channels(x, 1)
    torch.testing.assert_close(grey, torch.full((1, 1, 2, 2), 0.299 * 1 + 0.701 * -1))
    assert torch.equal(match_channels(grey, 3)[:, 2], grey[:, 0])
