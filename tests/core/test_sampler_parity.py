"""Euler, Heun and rectified-flow Euler against diffusers 0.42 on identical model outputs.

The "network" is the exact denoiser of Gaussian data (tests/core/_gaussian.py) in the tested
parameterization plus a fixed non-linear term, so that any difference in how a sampler uses the
prediction shows. Both implementations run on the same alphas (diffusers' own float32
``alphas_cumprod``, given to diffstudio's DiscreteSchedule), in float64 where diffusers allows.

Conventions that differ and are aligned here rather than hidden:
- diffusers' Euler/Heun keep the sample in variance-exploding units ``y = x / alpha`` and start it at
  ``init_noise_sigma``, which for trailing/linspace spacing is ``sigma_max`` instead of
  ``sqrt(sigma_max^2 + 1)`` (the start is then ``sqrt(1 - alpha_bar)`` times pure noise, not pure
  noise as in its DDIM/DDPM pipelines). Both runs here start from the same ``x_t``:
  ``y = x sqrt(sigma_max^2 + 1)``.
- Zero terminal SNR: diffusers' Euler clamps ``alpha_bar_T`` to ``2**-24`` (sigma 4096) and rounds
  the sample to float32; diffstudio keeps ``alpha_T = 0`` and takes the limit step through x0_hat.
- diffusers' Heun has no zero-terminal-SNR option (an infinite sigma gives NaN); diffstudio's first
  step from alpha = 0 is the Euler limit step, and every later step is diffusers' Heun."""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import pytest
import torch

from diffstudio.core.denoiser import Denoiser, oracle_model
from diffstudio.core.grids import sampling_grid
from diffstudio.core.parameterization import SingularPredictionError
from diffstudio.core.samplers import sample
from diffstudio.core.schedules import DiscreteSchedule, FlowSchedule

from ._gaussian import posterior_mean

F64 = torch.float64
PREDICTION = {"eps": "epsilon", "v": "v_prediction"}
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


class SameAlphas(DiscreteSchedule):
    """scaled_linear with exactly the ``alphas_cumprod`` of a given diffusers scheduler."""

    reference: torch.Tensor | None = None

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.reference.to(F64).clone()


def schedule_like(reference: torch.Tensor, ztsnr: bool) -> DiscreteSchedule:
    s = SameAlphas("scaled_linear", ztsnr=ztsnr)
    object.__setattr__(s, "reference", reference)
    return s


def network(schedule, param):
    """``f(x_t, timestep)`` for both libraries: the exact Gaussian denoiser + 0.05 sin(x)."""
    exact = oracle_model(posterior_mean(), schedule, param)

    def f(x, timestep):
        ts = torch.as_tensor(timestep, dtype=F64).reshape(-1)[:1]
        return exact(x, ts, None) + 0.05 * torch.sin(x)

    return f


def _noise(seed=0):
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=F64)


def run_diffusers(scheduler, f, x, steps=None, timesteps=None):
    """diffusers' sampling loop (scale_model_input, model, step) from the VP sample ``x``."""
    if timesteps is None:
        scheduler.set_timesteps(steps)
    else:
        scheduler.set_timesteps(timesteps=list(timesteps))
    y = x * (scheduler.sigmas[0].to(F64) ** 2 + 1).sqrt()
    for t in scheduler.timesteps:
        y = scheduler.step(f(scheduler.scale_model_input(y, t), t), t, y).prev_sample
    return y


def ours(name, schedule, param, f, x, grid):
    return sample(name, Denoiser(lambda x_t, ts, c: f(x_t, ts), schedule, param), x, grid, schedule)


def euler_scheduler(diffusers, param, spacing, ztsnr):
    return diffusers.EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                            prediction_type=PREDICTION[param], timestep_spacing=spacing,
                                            rescale_betas_zero_snr=ztsnr)


def heun_scheduler(diffusers, param, spacing, alphas_cumprod):
    s = diffusers.HeunDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                        prediction_type=PREDICTION[param], timestep_spacing=spacing)
    s.alphas_cumprod = alphas_cumprod.clone()  # set_timesteps derives its sigmas from these
    return s


STEPS = [1, 2, 10, 25]


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("ztsnr", [False, True])
@pytest.mark.parametrize("param", ["eps", "v"])
def test_euler_matches_euler_discrete_scheduler(diffusers, param, ztsnr, spacing, steps):
    """On diffusers' own alphas (with ZTSNR: its 2**-24 clamp) the runs agree to 1e-5, except for
    eps at the clamped terminal step: there x0_hat = (x - sigma eps) / alpha amplifies diffusers'
    float32 rounding of its sample (|y| = 4096 |x|) by 1/alpha = 4096, an error of 2**-12 max|x|
    that is diffusers' own."""
    ref_sched = euler_scheduler(diffusers, param, spacing, ztsnr)
    schedule = schedule_like(ref_sched.alphas_cumprod, ztsnr)
    f, x = network(schedule, param), _noise()
    ref = run_diffusers(ref_sched, f, x, steps)
    out = ours("euler", schedule, param, f, x, sampling_grid(schedule, steps, spacing))
    tol = 1e-5
    if ztsnr and param == "eps" and spacing == "trailing":
        tol = 2.0**-12 * float(x.abs().max())
    assert float((out - ref).abs().max()) <= tol


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_euler_at_exact_zero_terminal_snr(diffusers, spacing, steps):
    """With alpha_T = 0 exactly (diffstudio's schedule), v-prediction's first Euler step is the limit
    through x0_hat; diffusers' clamp alpha_T = 2**-12 moves it by about alpha_T |x|, so the runs
    agree to that size. eps-prediction cannot start there at all (det = alpha = 0)."""
    ref_sched = euler_scheduler(diffusers, "v", spacing, True)
    exact = DiscreteSchedule("scaled_linear", ztsnr=True)
    assert float(exact.alpha(1.0)) == 0.0
    f, x = network(exact, "v"), _noise()
    ref = run_diffusers(ref_sched, f, x, steps)
    out = ours("euler", exact, "v", f, x, sampling_grid(exact, steps, spacing))
    assert float((out - ref).abs().max()) <= 1.01 * 2.0**-12 * float(x.abs().max())
    if spacing == "trailing":
        with pytest.raises(SingularPredictionError):
            ours("euler", exact, "eps", network(exact, "eps"), x, sampling_grid(exact, steps, spacing))


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("param", ["eps", "v"])
def test_heun_matches_heun_discrete_scheduler(diffusers, param, spacing, steps):
    ref_sched = heun_scheduler(diffusers, param, spacing, euler_scheduler(diffusers, param, spacing, False).alphas_cumprod)
    schedule = schedule_like(ref_sched.alphas_cumprod, False)
    f, x = network(schedule, param), _noise()
    ref = run_diffusers(ref_sched, f, x, steps)
    out = ours("heun", schedule, param, f, x, sampling_grid(schedule, steps, spacing))
    assert float((out - ref).abs().max()) <= 1e-5


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("param", ["eps", "v"])
def test_heun_with_zero_terminal_snr(diffusers, param, spacing, steps):
    """Rescaled betas (alpha_T = 0). Leading spacing never visits t = 1: plain parity. Trailing
    starts there: diffusers' Heun returns NaN (sigma_T = inf); diffstudio's first step is the Euler
    limit through x0_hat and the rest equals diffusers' Heun on the remaining timesteps (eps cannot
    start at alpha = 0 and raises)."""
    exact = DiscreteSchedule("scaled_linear", ztsnr=True)
    f, x = network(exact, param), _noise()
    grid = sampling_grid(exact, steps, spacing)
    ref_sched = heun_scheduler(diffusers, param, spacing, exact.alphas_cumprod)
    if spacing == "leading":
        ref = run_diffusers(ref_sched, f, x, steps)
        assert float((ours("heun", exact, param, f, x, grid) - ref).abs().max()) <= 1e-5
        return
    ref_sched.set_timesteps(steps)
    assert not math.isfinite(float(ref_sched.sigmas[0]))
    if param == "eps":
        with pytest.raises(SingularPredictionError):
            ours("heun", exact, param, f, x, grid)
        return
    out = ours("heun", exact, param, f, x, grid)
    first = ours("euler", exact, param, f, x, grid[:2]) if steps == 1 else None
    if steps == 1:  # the one step is the Euler step to t = 0: x0_hat
        torch.testing.assert_close(out, first, rtol=0, atol=0)
        return
    d = Denoiser(lambda x_t, ts, c: f(x_t, ts), exact, param)
    x0, eps = d(x, 1.0)
    alpha_1, sigma_1 = float(exact.alpha(grid[1])), float(exact.sigma(grid[1]))
    x1 = alpha_1 * x0 + sigma_1 * eps
    timesteps = [int(round(float(exact.timestep(t)))) for t in grid[1:-1]]
    rest = run_diffusers(heun_scheduler(diffusers, param, spacing, exact.alphas_cumprod), f, x1, timesteps=timesteps)
    assert float((out - rest).abs().max()) <= 1e-5


@pytest.mark.parametrize("steps", [4, 10, 28])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_euler_matches_flow_match_euler(diffusers, shift, steps):
    """Rectified flow with SD3's shift: diffstudio's Euler on FlowSchedule(shift) with uniform t
    equals FlowMatchEulerDiscreteScheduler(shift) on the same sigmas (the ones SD3's pipeline passes,
    ``linspace(1, 1/N, N)`` before the shift). One velocity network u(x, 1000 sigma) = eps - x0 (float32,
    as diffusers upcasts its sample); diffstudio's ``flow`` target is dx/dt = sigma'(t) u."""
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps))
    schedule = FlowSchedule(shift)
    grid = sampling_grid(schedule, steps, "uniform")
    torch.testing.assert_close(sched.sigmas.to(F64), schedule.sigma(grid), rtol=0, atol=1e-6)
    x = _noise(4).float()

    def u(x_t, timestep):
        ts = torch.as_tensor(timestep, dtype=x_t.dtype)
        return 0.3 * x_t + 0.001 * ts * torch.sin(x_t) - 0.1 * torch.cos(0.5 * x_t)

    ref = x
    for t in sched.timesteps:
        ref = sched.step(u(ref, t), t, ref).prev_sample
    d_sigma = lambda ts: float(schedule.d_sigma(schedule.time_of(ts[0])))  # noqa: E731
    out = ours("euler", schedule, "flow", lambda x_t, ts: d_sigma(ts) * u(x_t, ts[0]), x, grid)
    assert float((out - ref).abs().max()) <= 1e-5
