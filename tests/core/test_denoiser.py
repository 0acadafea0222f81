"""The model-to-sampler bridge: Denoiser (parameterization + guidance) and the oracle model."""

from __future__ import annotations

import pytest
import torch

from diffstudio.core.denoiser import Denoiser, oracle_model
from diffstudio.core.guidance import classifier_free_guidance, rescale_guidance
from diffstudio.core.parameterization import PARAMETERIZATIONS, Coefficients
from diffstudio.core.schedules import make_schedule

from ._gaussian import posterior_mean

F64 = torch.float64


@pytest.mark.parametrize("family", ["scaled_linear", "flow", "edm"])
@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_oracle_model_handles_per_sample_timesteps(family, param):
    """A batch whose samples sit at different t (training) equals evaluating each sample alone."""
    s = make_schedule(family)
    model = oracle_model(posterior_mean(0.5, 0.8), s, param)
    t = torch.tensor([0.9, 0.5, 0.1, 0.5], dtype=F64)
    x = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0))
    out = model(x, s.timestep(t).float(), None)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(4):
        alone = model(x[i : i + 1], s.timestep(t[i : i + 1]).float(), None)
        torch.testing.assert_close(out[i : i + 1], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_denoiser_returns_the_posterior_mean(param):
    s = make_schedule("cosine")
    d = Denoiser(oracle_model(posterior_mean(0.5, 0.8), s, param), s, param)
    x = torch.randn(2, 7, generator=torch.Generator().manual_seed(1), dtype=F64)
    for t in (0.2, 0.6, 0.95):
        x0, eps = d(x, t)
        c = Coefficients.at(s, t)
        torch.testing.assert_close(x0, posterior_mean(0.5, 0.8)(x, c), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(float(c.alpha) * x0 + float(c.sigma) * eps, x, rtol=1e-6, atol=1e-6)


def test_denoiser_applies_classifier_free_guidance():
    s = make_schedule("flow")
    seen = []

    def model(x, timestep, cond):
        seen.append((x.shape[0], None if cond is None else cond.tolist()))
        return x * 0 + cond.reshape(-1, 1).to(x.dtype) if cond is not None else x * 0

    cond, uncond = torch.tensor([2, 3]), torch.tensor([0, 0])
    x = torch.zeros(2, 4)
    d = Denoiser(model, s, "x0", cond=cond, uncond=uncond, guidance_scale=3.0)
    out = d.predict(x, 0.5)
    assert seen[-1] == (4, [0, 0, 2, 3])  # one batched call, unconditional half first
    torch.testing.assert_close(out, 3.0 * cond.reshape(-1, 1).float().expand(2, 4))  # 0 + 3 (c - 0)
    d1 = Denoiser(model, s, "x0", cond=cond, uncond=uncond, guidance_scale=1.0)
    torch.testing.assert_close(d1.predict(x, 0.5), cond.reshape(-1, 1).float().expand(2, 4))
    assert seen[-1] == (2, [2, 3])


def test_guidance_rescale_properties():
    g = torch.Generator().manual_seed(2)
    uncond, cond = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g) * 2
    guided = classifier_free_guidance(uncond, cond, 7.5)
    torch.testing.assert_close(guided, uncond + 7.5 * (cond - uncond))
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, 1.0), cond)
    assert torch.equal(rescale_guidance(guided, cond, 0.0), guided)
    full = rescale_guidance(guided, cond, 1.0)  # phi = 1: the guided result takes cond's std per sample
    torch.testing.assert_close(full.flatten(1).std(1), cond.flatten(1).std(1))
    half = rescale_guidance(guided, cond, 0.7)
    torch.testing.assert_close(half, 0.7 * full + 0.3 * guided)
