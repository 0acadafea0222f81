"""Gaussian data ``x0 ~ N(mu, s^2 I)``: the one case where the exact denoiser is known in closed form.

For ``x_t = alpha x0 + sigma eps`` the posterior mean is
``E[x0 | x_t] = mu + alpha s^2 / (alpha^2 s^2 + sigma^2) (x_t - alpha mu)`` and the marginal is
``x_t ~ N(alpha mu, alpha^2 s^2 + sigma^2)``. A sampler driven by this exact denoiser must turn
the marginal at ``grid[0]`` into the data distribution, with no training involved."""

from __future__ import annotations

import math

import torch

from diffstudio.core.denoiser import Denoiser, oracle_model
from diffstudio.core.parameterization import Coefficients
from diffstudio.core.schedules import Schedule, make_schedule

MU, S = 1.0, 0.7

# name -> (factory, sampling spacing); the set the sampler matrix runs over
SCHEDULES = {
    "scaled_linear": (lambda: make_schedule("scaled_linear"), "trailing"),
    "linear+ztsnr": (lambda: make_schedule("linear", ztsnr=True), "trailing"),
    "squaredcos_cap_v2": (lambda: make_schedule("squaredcos_cap_v2"), "trailing"),
    "flow": (lambda: make_schedule("flow"), "uniform"),
    "flow_shift3": (lambda: make_schedule("flow", shift=3.0), "uniform"),
    "cosine": (lambda: make_schedule("cosine"), "uniform"),
    "edm": (lambda: make_schedule("edm"), "uniform"),
    "custom": (lambda: make_schedule("custom", points=((0.0, 9.0), (0.3, 3.0), (0.7, -2.0), (1.0, -9.0))), "uniform"),
}


def posterior_mean(mu: float = MU, s: float = S):
    """``x0_fn(x_t, c) = E[x0 | x_t]`` for ``x0 ~ N(mu, s^2)``."""

    def x0_fn(x: torch.Tensor, c: Coefficients) -> torch.Tensor:
        alpha, sigma = c.alpha, c.sigma
        gain = alpha * s**2 / (alpha**2 * s**2 + sigma**2)
        return mu + gain * (x - alpha * mu)

    return x0_fn


def oracle_denoiser(schedule: Schedule, param: str, mu: float = MU, s: float = S, **kw) -> Denoiser:
    return Denoiser(oracle_model(posterior_mean(mu, s), schedule, param), schedule, param, **kw)


def marginal(schedule: Schedule, t: float, mu: float = MU, s: float = S) -> tuple[float, float]:
    """Mean and std of ``x_t``."""
    alpha, sigma = float(schedule.alpha(t)), float(schedule.sigma(t))
    return alpha * mu, math.sqrt(alpha**2 * s**2 + sigma**2)


def initial_x(schedule: Schedule, t: float, shape, generator: torch.Generator, *, standardize: bool,
              mu: float = MU, s: float = S, dtype=torch.float64) -> torch.Tensor:
    """Samples of the exact marginal at ``t``. ``standardize`` rescales the draw to exactly the
    target mean and std, which removes the initial sampling error (ODE samplers are affine maps here,
    so their output mean and std then carry discretization error only)."""
    z = torch.randn(shape, generator=generator, dtype=dtype)
    if standardize:
        z = (z - z.mean()) / z.std()
    m, sd = marginal(schedule, t, mu, s)
    return m + sd * z
