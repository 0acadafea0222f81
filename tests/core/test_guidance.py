"""Classifier-free guidance and Lin et al.'s rescale (eq. 15-16) never produce NaN or inf: a
prediction with no spread (flat-colour classes) is left unchanged instead of divided by zero.
(Agreement with diffusers' rescale_noise_cfg on ordinary inputs: test_diffusers_parity.py.)"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffstudio.core.guidance import classifier_free_guidance, rescale_guidance

values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
scales = st.floats(min_value=0.0, max_value=100.0)
phis = st.floats(min_value=0.0, max_value=1.0)
dtypes = st.sampled_from([torch.float32, torch.float64])


@settings(max_examples=200, deadline=None)
@given(uncond=values, cond=values, scale=scales, phi=phis, dtype=dtypes)
def test_constant_predictions_stay_finite_and_unchanged(uncond, cond, scale, phi, dtype):
    """Constant uncond and cond tensors: the guided prediction is constant (no spread), so the
    rescale leaves it as plain guidance gives it."""
    u = torch.full((2, 3, 4, 4), uncond, dtype=dtype)
    c = torch.full((2, 3, 4, 4), cond, dtype=dtype)
    out = classifier_free_guidance(u, c, scale, phi)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, u + scale * (c - u))


@settings(max_examples=100, deadline=None)
@given(level=values, spread=st.floats(min_value=0.0, max_value=1e3), phi=phis, dtype=dtypes)
def test_rescale_is_finite_for_flat_or_nearly_flat_guided(level, spread, phi, dtype):
    """A guided prediction whose spread is zero or below its own rounding, against a conditional one
    with any spread: finite, and exactly the input where the spread is nothing but rounding."""
    g = torch.Generator().manual_seed(0)
    guided = torch.full((2, 16), level, dtype=dtype)
    guided[:, 0] = guided[:, 0] + torch.finfo(dtype).eps * abs(level)  # a rounding-level wobble at most
    cond = spread * torch.randn((2, 16), generator=g, dtype=dtype)
    out = rescale_guidance(guided, cond, phi)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, guided, rtol=0, atol=0)


def test_zero_spread_per_sample():
    """Only the flat sample of a batch is left alone; the other is rescaled to cond's std."""
    guided = torch.stack([torch.full((8,), 0.3), torch.linspace(-2, 2, 8)])
    cond = torch.stack([torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8)])
    out = rescale_guidance(guided, cond, 1.0)
    assert torch.equal(out[0], guided[0])
    torch.testing.assert_close(out[1].std(), cond[1].std())


def test_large_values_do_not_overflow_the_statistics():
    """float32 values of 1e30 have a float32 variance of inf; the statistics are taken in float64."""
    guided = torch.tensor([[1e30, -1e30, 2e30, 0.0]])
    cond = 0.5 * guided
    out = rescale_guidance(guided, cond, 0.7)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, 0.7 * 0.5 * guided + 0.3 * guided)
