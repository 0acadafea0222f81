"""The oracle (exact-denoiser) previews: closed-form posterior means and what a perfect model
samples under the flawed and the fixed recipes of Lin et al. 2024."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from diffstudio.engine.config import Config
from diffstudio.engine.oracle import (
    ORACLE_SOURCES,
    flat_posterior_mean,
    has_oracle,
    image_grid,  # re-exported from data.pixels
    mixture_posterior_mean,
    oracle_preview,
    truncated_normal_mean,
)


def _config(source="lighting-flat", family="scaled_linear", ztsnr=False, param="eps", spacing="leading",
            sampler="ddim", steps=50) -> Config:
    return Config().updated(
        data={"source": source}, schedule={"family": family, "ztsnr": ztsnr},
        objective={"parameterization": param},
        sampling={"sampler": sampler, "steps": steps, "spacing": spacing},
    )


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's moments of extreme truncations
@pytest.mark.parametrize("mu", [-40.0, -3.0, -1.2, 0.0, 0.3, 0.99, 2.5, 60.0])
@pytest.mark.parametrize("s", [1e-3, 0.05, 0.7, 5.0, 300.0])
def test_truncated_normal_mean_matches_scipy(mu, s):
    a, b = (-1.0 - mu) / s, (1.0 - mu) / s
    expected = stats.truncnorm.mean(a, b, loc=mu, scale=s)
    got = float(truncated_normal_mean(torch.tensor([mu], dtype=torch.float64), s, -1.0, 1.0))
    assert got == pytest.approx(expected, abs=1e-9)


def test_truncated_normal_mean_is_continuous_into_the_flat_regime():
    mu = torch.tensor([3e4, -2e4, 10.0], dtype=torch.float64)
    below = truncated_normal_mean(mu, 1.9e4, -1.0, 1.0)  # closed form
    above = truncated_normal_mean(mu, 2.1e4, -1.0, 1.0)  # flat-tilt approximation
    assert torch.allclose(below, above, atol=1e-4)
    assert float(truncated_normal_mean(torch.tensor([0.0]), 1e12, -1.0, 1.0)) == 0.0


def test_flat_posterior_mean_matches_quadrature():
    gen = torch.Generator().manual_seed(1)
    D, alpha, sigma = 16, 0.2, 0.98
    x_t = alpha * 0.7 + sigma * torch.randn(3, 1, 4, 4, generator=gen, dtype=torch.float64)
    got = flat_posterior_mean(x_t, alpha, sigma)
    b = torch.linspace(-1, 1, 200001, dtype=torch.float64)
    for i in range(3):
        m = float(x_t[i].mean())
        log_w = -D * (m - alpha * b) ** 2 / (2 * sigma**2)
        w = torch.exp(log_w - log_w.max())
        assert torch.allclose(got[i], torch.full_like(got[i], float((w * b).sum() / w.sum())), atol=1e-6)
    assert torch.all(flat_posterior_mean(x_t, 0.0, 1.0) == 0)  # no signal: the prior mean


def test_mixture_posterior_mean_matches_quadrature():
    means = torch.tensor([[1.0, 0.0], [-1.0, 0.5]], dtype=torch.float64)
    weights = torch.tensor([0.3, 0.7], dtype=torch.float64)
    std, alpha, sigma = 0.4, 0.6, 0.8
    x_t = torch.tensor([[0.2, -0.1], [1.5, 0.4]], dtype=torch.float64)
    got = mixture_posterior_mean(x_t, alpha, sigma, means, std, weights)
    u = torch.linspace(-4, 4, 801, dtype=torch.float64)
    gx, gy = torch.meshgrid(u, u, indexing="ij")
    grid = torch.stack([gx, gy], -1).reshape(-1, 2)
    prior = sum(w * torch.exp(-((grid - m) ** 2).sum(-1) / (2 * std**2)) for m, w in zip(means, weights))
    for i in range(2):
        lik = torch.exp(-((x_t[i] - alpha * grid) ** 2).sum(-1) / (2 * sigma**2))
        post = prior * lik
        expected = (post[:, None] * grid).sum(0) / post.sum()
        assert torch.allclose(got[i], expected, atol=1e-6)


def test_per_sample_coefficients_match_scalar_calls():
    """oracle_model hands per-sample coefficients shaped (B, 1, ...) when times differ (training)."""
    from diffstudio.core.denoiser import oracle_model
    from diffstudio.core.schedules import make_schedule
    from diffstudio.engine.oracle import oracle_data

    schedule = make_schedule("scaled_linear", ztsnr=True)
    gen = torch.Generator().manual_seed(0)
    for source in ORACLE_SOURCES:
        data = oracle_data(source, resolution=8)
        x = torch.randn((4,) + data.shape, generator=gen, dtype=torch.float64)
        timesteps = torch.tensor([999.0, 500.0, 10.0, 0.0])
        together = oracle_model(data.x0_fn, schedule, "v")(x, timesteps, None)
        alone = torch.cat([oracle_model(data.x0_fn, schedule, "v")(x[i:i + 1], timesteps[i:i + 1], None)
                           for i in range(4)])
        assert torch.allclose(together, alone, atol=1e-12), source


def test_sources():
    assert set(ORACLE_SOURCES) == {"gaussians8", "lighting-flat"}
    assert has_oracle("gaussians8") and not has_oracle("digits")
    with pytest.raises(ValueError, match="no exact denoiser"):
        oracle_preview(_config(source="digits"))


def test_lighting_flat_spread_flawed_vs_fixed_recipe():
    """SD's scaled_linear + eps + leading squeezes brightness (Lin et al. 2024, Fig. 1); ZTSNR +
    v + trailing keeps nearly the data's full range (about 0.66 vs 0.95 of its std at 50 steps)."""
    flawed = oracle_preview(_config(ztsnr=False, param="eps", spacing="leading"), n=64, seed=0)
    fixed = oracle_preview(_config(ztsnr=True, param="v", spacing="trailing"), n=64, seed=0)
    assert flawed.kind == fixed.kind == "image"
    assert flawed.spread < 0.78 and fixed.spread > 0.85
    assert fixed.spread - flawed.spread > 0.15
    assert flawed.grid.dtype == np.uint8 and flawed.grid.shape[-1] == 3
    assert flawed.mean_brightness.shape == (64,)
    assert len(flawed.trajectory) == 50 and flawed.trajectory[0][1].shape == (1, 32, 32)
    assert not flawed.warnings and not fixed.warnings


def test_leading_vs_trailing_and_ztsnr_change_the_result():
    base = dict(param="eps", n=32)
    leading = oracle_preview(_config(spacing="leading", param=base["param"]), n=base["n"])
    trailing = oracle_preview(_config(spacing="trailing", param=base["param"]), n=base["n"])
    ztsnr = oracle_preview(_config(spacing="trailing", ztsnr=True, param="v"), n=base["n"])
    assert not np.allclose(leading.samples, trailing.samples, atol=1e-3)
    assert not np.allclose(trailing.samples, ztsnr.samples, atol=1e-3)
    assert leading.grid_times[0] == pytest.approx(0.981)  # leading starts at index 980
    assert trailing.grid_times[0] == pytest.approx(1.0)


def test_eps_at_zero_terminal_snr_warns_instead_of_crashing():
    preview = oracle_preview(_config(ztsnr=True, param="eps", spacing="trailing", steps=10), n=4)
    assert preview.warnings and "cannot recover the image" in preview.warnings[0]
    assert np.isfinite(preview.samples).all()
    one_step = oracle_preview(_config(ztsnr=True, param="eps", spacing="trailing", steps=1), n=4)
    assert np.allclose(one_step.samples, 0.0)  # "removing noise from pure noise results in nothing"


def test_gaussians8_oracle_lands_on_the_modes():
    from diffstudio.data.toys import gaussians8_mixture

    means = gaussians8_mixture()[0].numpy()
    good = oracle_preview(_config(source="gaussians8", ztsnr=True, param="v", spacing="trailing", steps=25), n=256)
    leading = oracle_preview(_config(source="gaussians8", spacing="leading", steps=25), n=256)
    assert good.kind == "points" and good.points.shape == (256, 2) and good.grid is None
    dist = np.sqrt(((good.points[:, None] - means[None]) ** 2).sum(-1)).min(1)
    assert np.median(dist) < 0.2
    assert not np.allclose(good.points, leading.points, atol=1e-3)
    assert 0.9 < good.spread < 1.1


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "ddpm", "ddim_eta", "euler_maruyama"])
def test_every_sampler_runs_on_the_oracle(sampler):
    preview = oracle_preview(_config(source="gaussians8", ztsnr=True, param="v", spacing="trailing",
                                     sampler=sampler, steps=20), n=64, seed=3)
    assert np.isfinite(preview.points).all()
    assert 0.6 < preview.spread < 1.4


def test_image_grid_layout():
    samples = np.zeros((5, 1, 4, 4), dtype=np.float32)
    grid = image_grid(samples)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    assert grid[1, 1, 0] == 128  # value 0 -> mid grey
    assert math.isclose(grid.mean(), grid.mean())
