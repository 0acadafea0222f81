"""Samplers are correct without training: driven by the exact denoiser of Gaussian data
``x0 ~ N(mu, s^2)``, every sampler on every parameterization and schedule must turn the exact
marginal at ``grid[0]`` into the data distribution (the marginal at ``t = 0``).

Tolerances. ODE samplers are affine maps of their input here, so the initial draw is standardized
to exactly the marginal's mean and std and the output's error is discretization error only; the
bound per sampler is its largest measured error over the schedules at that step count with a 1.5x
margin (first order: Euler, DDIM; second order: DPM-Solver++(2M)). Heun (Karras et al. 2022,
Algorithm 1, as in diffusers) is second order in between, but its last step, onto sigma = 0, is an
Euler step whose error grows like sigma_last^2 ~ t_last = 1/N on beta schedules, so it converges
only first order there (scaled_linear, v, trailing: 0.084, 0.042, 0.021, 0.010 relative std error at
10, 20, 40, 80 steps); and squaredcos_cap_v2 starts at sigma/alpha = 2.0e4, where the trapezoid
step is far off at few steps (18.8, 2.3, 0.29, 0.032): its bound is set by that case at 80 steps. SDE
samplers add fresh noise: their tolerance is a discretization bound (their measured error at that
step count, from runs with 2^18 samples, with a 1.3x margin) plus 4.5 standard errors of a sample
of n = 2^14 (mean: s / sqrt(n); std: 1 / sqrt(2 n), relative), i.e. about 0.035 s on the mean and
2.5% on the std: loose enough for sampling noise, tight enough for any wrong noise scale or drift.

eps and score at a zero-terminal-SNR start (alpha(grid[0]) = 0) are singular: those runs pass
``on_singular="warn"``, must warn, and get ``x0_hat = 0`` on the first step instead of E[x0] = mu;
that loses ``alpha(t_1) mu`` of the mean at ``t_1 = grid[1]``, which reaches the output scaled by at
most ``s / sd(t_1)``, so their mean tolerance is widened by exactly that bound."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from diffstudio.core.denoiser import Denoiser, oracle_model
from diffstudio.core.grids import sampling_grid
from diffstudio.core.parameterization import (
    PARAMETERIZATIONS,
    SingularPredictionError,
    SingularPredictionWarning,
)
from diffstudio.core.samplers import SAMPLERS, Point, SamplerError, sample
from diffstudio.core.schedules import DiscreteSchedule, make_schedule

from ._gaussian import MU, S, SCHEDULES, initial_x, marginal, oracle_denoiser, posterior_mean

F64 = torch.float64
N_SDE = 2**14

# name -> (steps, discretization tolerance)
SETTINGS = {
    "euler": (200, 0.015),
    "heun": (80, 0.05),
    "ddim": (200, 0.02),
    "dpmpp_2m": (80, 0.012),
    "ddpm": (300, 0.025),
    "ddim_eta": (250, 0.02),
    "euler_maruyama": (150, 0.015),
}
ETA = 0.5  # for ddim_eta


def test_every_sampler_has_settings():
    assert set(SETTINGS) == set(SAMPLERS)


@pytest.mark.parametrize("schedule_name", sorted(SCHEDULES))
@pytest.mark.parametrize("param", PARAMETERIZATIONS)
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_sampler_reproduces_gaussian_data(sampler, param, schedule_name):
    factory, spacing = SCHEDULES[schedule_name]
    schedule = factory()
    steps, tol = SETTINGS[sampler]
    grid = sampling_grid(schedule, steps, spacing)
    ode = SAMPLERS[sampler].kind == "ODE"
    g = torch.Generator().manual_seed(1234)
    shape = (2, 64) if ode else (4, N_SDE // 4)
    x = initial_x(schedule, float(grid[0]), shape, g, standardize=ode, dtype=F64 if ode else torch.float32)

    singular = param in ("eps", "score") and float(schedule.alpha(grid[0])) == 0.0
    denoiser = oracle_denoiser(schedule, param, on_singular="warn" if singular else "raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sample(sampler, denoiser, x, grid, schedule, eta=ETA, generator=g)
    warned = any(issubclass(w.category, SingularPredictionWarning) for w in caught)
    assert warned == singular

    assert out.shape == x.shape and out.dtype == x.dtype and bool(torch.isfinite(out).all())
    m0, sd0 = marginal(schedule, 0.0)
    mean_tol, std_tol = tol * S, tol
    if not ode:
        mean_tol += 4.5 * S / math.sqrt(N_SDE)
        std_tol += 4.5 / math.sqrt(2 * N_SDE)
    if singular:
        m1, sd1 = marginal(schedule, float(grid[1]))
        mean_tol += S * abs(m1) / sd1
    mean, std = float(out.double().mean()), float(out.double().std())
    assert abs(mean - m0) <= mean_tol, (mean, m0, mean_tol)
    assert abs(std / sd0 - 1) <= std_tol, (std, sd0, std_tol)


@pytest.mark.parametrize("param", ["eps", "score"])
def test_singular_start_raises_by_default(param):
    schedule = make_schedule("linear", ztsnr=True)
    grid = sampling_grid(schedule, 5, "trailing")
    x = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(SingularPredictionError):
        sample("ddim", oracle_denoiser(schedule, param), x, grid, schedule)


def test_singular_start_loses_exactly_the_predicted_mean():
    """DDIM from a ZTSNR start: v-prediction's first step lands on alpha_1 mu + sigma_1 x_1 (x0_hat =
    E[x0] = mu), eps-prediction's (warned, x0_hat = 0) on sigma_1 x_1. Everything after is the same
    DDIM run from t_1, so the outputs differ by DDIM's gain times alpha_1 mu, which tends to the
    exact flow's s alpha_1 mu / sd_1 as steps grow (the bound the matrix test allows)."""
    schedule = make_schedule("cosine")
    x = initial_x(schedule, 1.0, (2, 64), torch.Generator().manual_seed(0), standardize=True)
    for steps in (4, 400):
        grid = sampling_grid(schedule, steps, "uniform")
        alpha_1, sigma_1 = float(schedule.alpha(grid[1])), float(schedule.sigma(grid[1]))
        with pytest.warns(SingularPredictionWarning):
            out_eps = sample("ddim", oracle_denoiser(schedule, "eps", on_singular="warn"), x, grid, schedule)
        out_v = sample("ddim", oracle_denoiser(schedule, "v"), x, grid, schedule)
        rest = oracle_denoiser(schedule, "v")
        torch.testing.assert_close(out_eps, sample("ddim", rest, sigma_1 * x, grid[1:], schedule), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(out_v, sample("ddim", rest, alpha_1 * MU + sigma_1 * x, grid[1:], schedule),
                                   rtol=1e-6, atol=1e-6)
        lost = float(out_v.mean() - out_eps.mean())
        m1, sd1 = marginal(schedule, float(grid[1]))
        assert 0 < lost <= S * m1 / sd1 * 1.01
    assert lost == pytest.approx(S * m1 / sd1, rel=0.02)  # 400 steps: the exact flow's gain


class TestFewSteps:
    """Lin et al. 2024 and the seed: 'at the extreme of 1 step, [the model] is trying to generate a
    clean image from pure noise'. With the exact denoiser of Gaussian data the claims are exact."""

    def test_one_trailing_step_with_v_returns_exactly_the_data_mean(self):
        """Trailing spacing starts at t = 1; with ZTSNR alpha_1 = 0, so x_1 is independent of the
        image and the best one-step answer is x0_hat = E[x0 | x_1] = E[x0] = mu. v-prediction
        can say so (its det is 1), and every sampler's one step onto t = 0 returns x0_hat: exactly
        mu, for the SDE samplers too (no noise is added on the last step)."""
        schedule = make_schedule("scaled_linear", ztsnr=True)
        grid = sampling_grid(schedule, 1, "trailing")
        assert grid.tolist() == [1.0, 0.0] and float(schedule.alpha(1.0)) == 0.0
        x = torch.randn(4, 256, generator=torch.Generator().manual_seed(0))
        for sampler in SAMPLERS:
            out = sample(sampler, oracle_denoiser(schedule, "v"), x, grid, schedule, generator=torch.Generator().manual_seed(1))
            assert torch.equal(out, torch.full_like(x, MU)), sampler

    def test_one_step_with_flow_returns_the_data_mean(self):
        """The same for rectified flow, whose alpha_1 = 0 by construction: x0 = x_1 - u with the
        velocity u = eps - x0, exact up to float32 rounding of that subtraction, with or without
        SD3's shift (Euler steps in the flow's own sigma, as FlowMatchEulerDiscreteScheduler)."""
        for shift in (1.0, 3.0):
            schedule = make_schedule("flow", shift=shift)
            grid = sampling_grid(schedule, 1, "uniform")
            x = torch.randn(4, 256, generator=torch.Generator().manual_seed(1))
            for sampler in ("ddim", "euler", "heun", "dpmpp_2m"):
                out = sample(sampler, oracle_denoiser(schedule, "flow"), x, grid, schedule)
                torch.testing.assert_close(out, torch.full_like(x, MU), rtol=0, atol=1e-6)

    def test_one_leading_step_never_starts_from_noise(self):
        """Leading spacing at 1 step feeds the model timestep 0 (t = 0.001): it is told the input is
        99.96% image. Given pure noise, the exact denoiser returns that noise almost unchanged —
        mean ~0 and std ~1 instead of mu and s — whatever the parameterization."""
        schedule = make_schedule("scaled_linear")
        grid = sampling_grid(schedule, 1, "leading")
        assert grid.tolist() == [0.001, 0.0]
        assert float(schedule.timestep(grid[0])) == pytest.approx(0.0, abs=1e-12)
        alpha, sigma = float(schedule.alpha(0.001)), float(schedule.sigma(0.001))
        assert alpha == pytest.approx(math.sqrt(1 - 0.00085), rel=1e-9) and alpha > 0.9995
        x = torch.randn(8, 4096, generator=torch.Generator().manual_seed(2), dtype=F64)
        gain = alpha * S**2 / (alpha**2 * S**2 + sigma**2)
        expected = MU + gain * (x - alpha * MU)  # E[x0 | x_t] at t = 0.001
        for param in PARAMETERIZATIONS:
            out = sample("ddim", oracle_denoiser(schedule, param), x, grid, schedule)
            torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
        assert abs(float(expected.mean()) - MU) > 0.9 * MU  # nowhere near the data mean...
        assert float(expected.std()) == pytest.approx(1.0, abs=0.05)  # ...and still unit noise

    def test_one_step_eps_from_pure_noise_gives_nothing(self):
        """'Removing noise from pure noise results in... nothing': at alpha_1 = 0 eps-prediction
        cannot name the image (det = alpha = 0). Asked anyway (on_singular="warn"), the only
        identifiable answer is x0_hat = 0: the one-step sample is 0, a distance |mu| from the data
        mean, while v-prediction returns mu (test above)."""
        schedule = make_schedule("scaled_linear", ztsnr=True)
        grid = sampling_grid(schedule, 1, "trailing")
        x = torch.randn(4, 256, generator=torch.Generator().manual_seed(3))
        with pytest.raises(SingularPredictionError):
            sample("ddim", oracle_denoiser(schedule, "eps"), x, grid, schedule)
        with pytest.warns(SingularPredictionWarning):
            out = sample("ddim", oracle_denoiser(schedule, "eps", on_singular="warn"), x, grid, schedule)
        assert torch.equal(out, torch.zeros_like(x))
        assert abs(float(out.mean()) - MU) == MU

    def test_eps_without_ztsnr_divides_by_the_residual_signal(self):
        """Without ZTSNR (SD's scaled_linear: alpha_1 = 0.068) eps-prediction at t = 1 is invertible
        but ill-conditioned: x0_hat = (x_1 - sigma_1 eps_hat) / alpha_1, so any error in eps_hat
        reaches the image 14.6x amplified, against sigma_1 <= 1 for v. A trained model's error
        makes the one-step image from pure noise useless, though the exact oracle is fine."""
        schedule = make_schedule("scaled_linear")
        alpha, sigma = schedule.terminal_signal, float(schedule.sigma(1.0))
        x = torch.randn(2, 64, generator=torch.Generator().manual_seed(4), dtype=F64)
        delta = 0.01

        def perturbed(param):
            base = oracle_model(posterior_mean(), schedule, param)
            return Denoiser(lambda x, ts, c: base(x, ts, c) + delta, schedule, param)

        exact = oracle_denoiser(schedule, "eps")(x, 1.0)[0]
        err_eps = perturbed("eps")(x, 1.0)[0] - exact
        err_v = perturbed("v")(x, 1.0)[0] - exact
        torch.testing.assert_close(err_eps, torch.full_like(x, -delta * sigma / alpha))
        torch.testing.assert_close(err_v, torch.full_like(x, -delta * sigma))
        assert sigma / alpha == pytest.approx(14.61, abs=0.01)


def test_sde_samplers_are_reproducible_with_a_generator():
    schedule = make_schedule("cosine")
    grid = sampling_grid(schedule, 10, "uniform")
    x = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    for name in ("ddpm", "ddim_eta", "euler_maruyama"):
        a = sample(name, oracle_denoiser(schedule, "v"), x, grid, schedule, generator=torch.Generator().manual_seed(5))
        b = sample(name, oracle_denoiser(schedule, "v"), x, grid, schedule, generator=torch.Generator().manual_seed(5))
        c = sample(name, oracle_denoiser(schedule, "v"), x, grid, schedule, generator=torch.Generator().manual_seed(6))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_ddim_eta_one_is_ddpm_and_eta_zero_is_ddim():
    schedule = make_schedule("linear", ztsnr=True)
    grid = sampling_grid(schedule, 8, "trailing")
    x = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    d = oracle_denoiser(schedule, "v")
    ddpm = sample("ddpm", d, x, grid, schedule, generator=torch.Generator().manual_seed(1))
    eta1 = sample("ddim_eta", d, x, grid, schedule, eta=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ddpm, eta1)
    assert torch.equal(sample("ddim_eta", d, x, grid, schedule, eta=0.0), sample("ddim", d, x, grid, schedule))


def test_first_dpmpp_step_is_a_ddim_step():
    schedule = make_schedule("squaredcos_cap_v2")
    grid = sampling_grid(schedule, 1, "trailing")
    x = torch.randn(2, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    d = oracle_denoiser(schedule, "eps")
    two = sampling_grid(schedule, 10, "trailing")[:2]
    torch.testing.assert_close(sample("dpmpp_2m", d, x, two, schedule), sample("ddim", d, x, two, schedule))
    torch.testing.assert_close(sample("dpmpp_2m", d, x, grid, schedule), sample("ddim", d, x, grid, schedule))


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_callback_sees_every_step(sampler):
    schedule = make_schedule("flow")
    grid = sampling_grid(schedule, 6, "uniform")
    calls = []
    x = torch.randn(1, 4, generator=torch.Generator().manual_seed(0))
    sample(sampler, oracle_denoiser(schedule, "flow"), x, grid, schedule, generator=torch.Generator().manual_seed(0),
           callback=lambda i, t, x_t, x0: calls.append((i, t, x_t.shape, x0.shape)))
    assert [c[0] for c in calls] == list(range(6))
    assert [c[1] for c in calls] == pytest.approx(grid[:-1].tolist())
    assert all(c[2] == x.shape and c[3] == x.shape for c in calls)


def test_unknown_sampler():
    schedule = DiscreteSchedule()
    with pytest.raises(ValueError, match="sampler"):
        sample("plms", oracle_denoiser(schedule, "eps"), torch.zeros(1, 2), sampling_grid(schedule, 2), schedule)


@pytest.mark.parametrize("eta", [-0.1, 1.5, 5.0, float("nan")])
def test_eta_outside_zero_one_is_refused(eta):
    """eta > 1 would ask for more fresh noise than sigma_q holds (it used to be clipped silently)."""
    schedule = make_schedule("cosine")
    grid = sampling_grid(schedule, 4, "uniform")
    with pytest.raises(SamplerError, match="eta"):
        sample("ddim_eta", oracle_denoiser(schedule, "v"), torch.zeros(1, 2), grid, schedule, eta=eta)


def test_fresh_noise_is_drawn_after_the_model_call_from_the_given_generator():
    """DDPM's first fresh noise is the generator's next draw after whatever came before it (the
    start noise, in a pipeline): a step from t_0 to t_1 adds exactly c z with z that draw."""
    schedule = make_schedule("linear", ztsnr=True)
    grid = sampling_grid(schedule, 4, "trailing")
    d = oracle_denoiser(schedule, "v")
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 16, generator=g)
    g_ref = torch.Generator().manual_seed(7)
    torch.randn(3, 16, generator=g_ref)  # the start noise
    z = torch.randn(3, 16, generator=g_ref)  # the next draw
    out = sample("ddpm", d, x, grid[:3], schedule, generator=g)
    # the same two steps by hand: the first step's noise is z, the second the draw after it
    p, q = Point.at(schedule, float(grid[0])), Point.at(schedule, float(grid[1]))
    x0, eps = d(x, p.t)
    ratio = (p.alpha * q.sigma) ** 2 / (p.sigma * q.alpha) ** 2
    c = q.sigma * math.sqrt(1 - ratio)
    x1 = q.alpha * x0 + math.sqrt(q.sigma**2 - c**2) * eps + c * z
    torch.testing.assert_close(sample("ddpm", d, x1, grid[1:3], schedule, generator=g_ref), out)
