"""Every sampler's last step onto t = 0 returns x0_hat: with the exact denoiser of flat images
(whose true samples are constant images, so any variation inside one sample is noise left over),
every sample of every sampler, spacing, schedule family and parameterization is flat.

The data: ``x0 = b 1`` with ``b ~ N(MU, S^2)``. With D values per image the pixel mean
``m = mean(x_t) ~ N(alpha b, sigma^2 / D)`` is sufficient, so
``E[x0 | x_t] = (MU + alpha S^2 / (alpha^2 S^2 + sigma^2 / D) (m - alpha MU)) 1``."""

from __future__ import annotations

import warnings

import pytest
import torch

from diffstudio.core.denoiser import Denoiser, oracle_model
from diffstudio.core.grids import CONTINUOUS_SPACINGS, DISCRETE_SPACINGS, sampling_grid
from diffstudio.core.parameterization import PARAMETERIZATIONS, Coefficients
from diffstudio.core.samplers import SAMPLERS, sample
from diffstudio.core.schedules import make_schedule

MU, S = 0.2, 0.5
SHAPE = (3, 1, 4, 4)
STEPS = 4

SCHEDULES = {
    "scaled_linear": lambda: make_schedule("scaled_linear"),
    "linear+ztsnr": lambda: make_schedule("linear", ztsnr=True),
    "squaredcos_cap_v2": lambda: make_schedule("squaredcos_cap_v2"),
    "flow_shift3": lambda: make_schedule("flow", shift=3.0),
    "cosine": lambda: make_schedule("cosine"),
    "edm": lambda: make_schedule("edm"),
    "edm+ztsnr": lambda: make_schedule("edm", ztsnr=True),
    "custom": lambda: make_schedule("custom", points=((0.0, 2.0), (1.0, -8.0))),  # sigma(0) = 0.345
}


def flat_mean(x: torch.Tensor, c: Coefficients) -> torch.Tensor:
    d = x[0].numel()
    m = x.flatten(1).mean(1).reshape((-1,) + (1,) * (x.dim() - 1))
    alpha, sigma = c.alpha, c.sigma
    b = MU + alpha * S**2 / (alpha**2 * S**2 + sigma**2 / d) * (m - alpha * MU)
    return b.expand_as(x)


def _cases():
    for name, factory in SCHEDULES.items():
        discrete = factory().is_discrete
        for spacing in DISCRETE_SPACINGS if discrete else CONTINUOUS_SPACINGS:
            yield name, spacing


@pytest.mark.parametrize(("schedule_name", "spacing"), list(_cases()))
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_samples_of_flat_data_are_flat(sampler, schedule_name, spacing):
    schedule = SCHEDULES[schedule_name]()
    grid = sampling_grid(schedule, STEPS, spacing)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for param in PARAMETERIZATIONS:
        d = Denoiser(oracle_model(flat_mean, schedule, param), schedule, param, on_singular="warn")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # eps / score at alpha = 0 (warned about elsewhere)
            out = sample(sampler, d, x, grid, schedule, eta=0.5, generator=torch.Generator().manual_seed(1))
        assert bool(torch.isfinite(out).all()), param
        within = out.flatten(1).std(1)
        assert float(within.max()) <= 1e-4, (param, within)


def test_the_custom_schedule_is_noisy_at_zero():
    """The issue's case: log-SNR 2 at t = 0 leaves sigma_0 = 0.345, which used to stay in the samples."""
    assert float(SCHEDULES["custom"]().sigma(0.0)) == pytest.approx(0.3452, abs=1e-4)
