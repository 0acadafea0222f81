"""Schedules: the published terminal numbers, zero terminal SNR, derivatives, the custom schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffstudio.core.schedules import (
    CONTINUOUS_FAMILIES,
    DISCRETE_FAMILIES,
    CosineSchedule,
    CustomSchedule,
    DiscreteSchedule,
    EDMSchedule,
    FlowSchedule,
    ScheduleError,
    ZeroTerminalSNR,
    make_schedule,
    rescale_zero_terminal_snr,
)

F64 = torch.float64

# sqrt(alpha_bar_T) at T = 1000, as published (Lin et al. 2024, Table 1; the seed's "~7%", "~0.6%",
# "~0.005%"), with the tolerance of the published digits (half a unit in the last place).
PUBLISHED_TERMINAL_SIGNAL = {
    "scaled_linear": (0.068265, 5e-7),
    "linear": (0.006353, 5e-7),
    "squaredcos_cap_v2": (4.928e-5, 5e-9),
}

ALL_SCHEDULES = {
    "linear": lambda: make_schedule("linear"),
    "scaled_linear": lambda: make_schedule("scaled_linear"),
    "squaredcos_cap_v2": lambda: make_schedule("squaredcos_cap_v2"),
    "sigmoid": lambda: make_schedule("sigmoid"),
    "scaled_linear+ztsnr": lambda: make_schedule("scaled_linear", ztsnr=True),
    "flow": lambda: make_schedule("flow"),
    "flow_shift3": lambda: make_schedule("flow", shift=3.0),
    "flow_shift0.5": lambda: make_schedule("flow", shift=0.5),
    "cosine": lambda: make_schedule("cosine"),
    "edm": lambda: make_schedule("edm"),
    "edm+ztsnr": lambda: make_schedule("edm", ztsnr=True),
    "custom": lambda: make_schedule("custom", points=((0.0, 9.0), (0.3, 3.0), (0.7, -2.0), (1.0, -9.0))),
    "custom+ztsnr": lambda: make_schedule("custom", ztsnr=True),
}


@pytest.mark.parametrize("family", sorted(PUBLISHED_TERMINAL_SIGNAL))
def test_published_terminal_signal(family):
    value, tol = PUBLISHED_TERMINAL_SIGNAL[family]
    s = DiscreteSchedule(family)
    assert abs(s.terminal_signal - value) < tol
    assert abs(math.sqrt(float(s.alphas_cumprod[-1])) - value) < tol
    # terminal SNR = alpha^2 / sigma^2 = alpha_bar_T / (1 - alpha_bar_T)
    abar = value**2
    assert s.terminal_snr == pytest.approx(abar / (1 - abar), rel=2 * tol / value + 1e-12)


def test_published_terminal_snr_values():
    """The numbers the GUI shows: SD's schedule keeps SNR 4.7e-3 at its 'pure noise' step."""
    assert DiscreteSchedule("scaled_linear").terminal_snr == pytest.approx(4.6819e-3, rel=1e-4)
    assert DiscreteSchedule("linear").terminal_snr == pytest.approx(4.0360e-5, rel=1e-4)
    assert DiscreteSchedule("squaredcos_cap_v2").terminal_snr == pytest.approx(2.4287e-9, rel=1e-4)


@pytest.mark.parametrize("family", DISCRETE_FAMILIES)
def test_ztsnr_rescale_is_exactly_zero_and_keeps_the_first_step(family):
    plain, z = DiscreteSchedule(family), DiscreteSchedule(family, ztsnr=True)
    assert float(z.alphas_cumprod[-1]) == 0.0
    assert z.terminal_signal == 0.0 and z.terminal_snr == 0.0
    assert float(z.alpha(1.0)) == 0.0  # exactly, through the interpolation too
    assert float(z.alphas_cumprod[0]) == pytest.approx(float(plain.alphas_cumprod[0]), rel=1e-14)
    assert bool((z.alphas_cumprod[1:] < z.alphas_cumprod[:-1]).all())
    # Lin et al. Algorithm 1 is affine in sqrt(alpha_bar)
    a, b = plain.alphas_cumprod.sqrt(), z.alphas_cumprod.sqrt()
    slope = (b[0] - b[500]) / (a[0] - a[500])
    torch.testing.assert_close(b, (a - a[-1]) * slope, rtol=1e-12, atol=1e-15)


def test_rescale_zero_terminal_snr_function():
    abar = torch.tensor([0.9, 0.5, 0.1, 0.01], dtype=F64)
    out = rescale_zero_terminal_snr(abar)
    assert float(out[-1]) == 0.0 and float(out[0]) == pytest.approx(0.9, rel=1e-15)


def test_discrete_knots_are_exact():
    """alpha at t = (i+1)/T is exactly sqrt(alpha_bar_i) (the interpolation is exact on its knots)."""
    for family in DISCRETE_FAMILIES:
        for z in (False, True):
            s = DiscreteSchedule(family, ztsnr=z)
            t = torch.arange(1, 1001, dtype=F64) / 1000
            assert torch.equal(s.alpha(t), s.alphas_cumprod.sqrt())
            assert float(s.alpha(0.0)) == 1.0 and float(s.sigma(0.0)) == 0.0


def test_continuous_terminal_signals():
    assert FlowSchedule().terminal_signal == 0.0 and CosineSchedule().terminal_signal == 0.0
    assert FlowSchedule(3.0).terminal_snr == 0.0 and CosineSchedule().terminal_snr == 0.0
    assert EDMSchedule().terminal_signal == pytest.approx(1 / math.sqrt(1 + 80.0**2), rel=1e-14)
    assert EDMSchedule().terminal_snr == pytest.approx(1 / 80.0**2, rel=1e-12)
    z = ZeroTerminalSNR(EDMSchedule())
    assert z.terminal_signal == 0.0
    assert float(z.alpha(0.0)) == pytest.approx(float(EDMSchedule().alpha(0.0)), rel=1e-15)


@pytest.mark.parametrize("shift", [0.1, 0.3, 0.5, 1.0, 1.15, 3.0, 7.0])
def test_flow_terminal_alpha_is_exactly_zero_for_every_shift(shift):
    """1 - shift/(1 + (shift - 1)) rounds to -2e-16 for shift 0.1; alpha must be exactly 0 (>= 0)."""
    s = FlowSchedule(shift)
    assert float(s.alpha(1.0)) == 0.0 and float(s.sigma(1.0)) == 1.0
    t = torch.linspace(0, 1, 101, dtype=F64)
    torch.testing.assert_close(s.alpha(t) + s.sigma(t), torch.ones_like(t), rtol=0, atol=1e-15)
    assert bool((s.alpha(t) >= 0).all())
    assert float(s.time_of(1000.0)) == 1.0 and float(s.time_of(s.timestep(1.0))) == 1.0


@pytest.mark.parametrize("name", sorted(ALL_SCHEDULES))
def test_schedule_is_monotone_and_consistent(name):
    s = ALL_SCHEDULES[name]()
    t = torch.linspace(0, 1, 2001, dtype=F64)
    alpha, sigma = s.alpha(t), s.sigma(t)
    assert bool((alpha[1:] <= alpha[:-1]).all()) and bool((sigma[1:] >= sigma[:-1]).all())
    assert bool(torch.isfinite(alpha).all()) and bool(torch.isfinite(sigma).all())
    assert bool((alpha >= 0).all()) and bool((sigma >= 0).all())
    lam = s.log_snr(t[1:-1])
    assert bool((lam[1:] < lam[:-1]).all())
    torch.testing.assert_close(s.snr(t[1:-1]), torch.exp(lam), rtol=1e-10, atol=0)
    if not isinstance(s, FlowSchedule):  # variance preserving
        torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ALL_SCHEDULES))
def test_derivatives_match_finite_differences(name):
    """d_alpha and d_sigma against central differences at interior t (off the discrete knots,
    where the piecewise-linear alpha has a kink)."""
    s = ALL_SCHEDULES[name]()
    t = (torch.arange(3, 997, 7, dtype=F64) + 0.37) / 1000
    h = 1e-7
    for value, slope in ((s.alpha, s.d_alpha), (s.sigma, s.d_sigma)):
        fd = (value(t + h) - value(t - h)) / (2 * h)
        torch.testing.assert_close(slope(t), fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ALL_SCHEDULES))
def test_timestep_round_trip(name):
    s = ALL_SCHEDULES[name]()
    t = torch.linspace(0.001, 1, 1000, dtype=F64)
    torch.testing.assert_close(s.time_of(s.timestep(t)), t, rtol=1e-12, atol=1e-12)


def test_timestep_conventions():
    d = DiscreteSchedule("scaled_linear")
    assert float(d.timestep(1.0)) == 999.0 and float(d.timestep(0.001)) == pytest.approx(0.0, abs=1e-12)
    assert float(FlowSchedule(3.0).timestep(0.5)) == pytest.approx(1000 * 1.5 / 2.0)  # 1000 * sigma
    assert float(CosineSchedule().timestep(0.25)) == 250.0


CUSTOM_POINTS = ((0.0, 8.0), (0.2, 5.0), (0.45, 0.5), (0.8, -4.0), (1.0, -12.0))


def test_custom_schedule_passes_through_control_points():
    s = CustomSchedule(CUSTOM_POINTS)
    for t, lam in CUSTOM_POINTS:
        assert float(s.log_snr(t)) == pytest.approx(lam, abs=1e-12)
        assert float(s.lambda_and_slope(torch.tensor(t, dtype=F64))[0]) == pytest.approx(lam, abs=1e-13)


def test_custom_schedule_is_monotone_and_its_derivative_is_right():
    s = CustomSchedule(CUSTOM_POINTS)
    t = torch.linspace(0, 1, 4001, dtype=F64)
    lam, dlam = s.lambda_and_slope(t)
    assert bool((lam[1:] < lam[:-1]).all()) and bool((dlam <= 0).all())
    ti = t[1:-1]
    h = 1e-7
    fd = (s.lambda_and_slope(ti + h)[0] - s.lambda_and_slope(ti - h)[0]) / (2 * h)
    torch.testing.assert_close(s.lambda_and_slope(ti)[1], fd, rtol=1e-5, atol=1e-5)


def test_custom_schedule_is_scipy_pchip():
    """Fritsch-Carlson slopes with SciPy's shape-preserving end condition: the same curve."""
    from scipy.interpolate import PchipInterpolator  # scipy comes with scikit-learn

    xs, ys = zip(*CUSTOM_POINTS)
    ref = PchipInterpolator(xs, ys)
    t = np.linspace(0, 1, 997)
    lam, dlam = CustomSchedule(CUSTOM_POINTS).lambda_and_slope(torch.from_numpy(t))
    np.testing.assert_allclose(lam.numpy(), ref(t), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dlam.numpy(), ref.derivative()(t), rtol=0, atol=1e-10)


def test_custom_two_points_is_linear_in_log_snr():
    s = CustomSchedule(((0.0, 6.0), (1.0, -6.0)))
    t = torch.linspace(0, 1, 11, dtype=F64)
    torch.testing.assert_close(s.log_snr(t), 6.0 - 12.0 * t, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: DiscreteSchedule("nope"), "family"),
        (lambda: DiscreteSchedule("linear", num_train_timesteps=1), "num_train_timesteps"),
        (lambda: DiscreteSchedule("linear", beta_start=0.02, beta_end=0.01), "beta_end"),
        (lambda: DiscreteSchedule("linear", beta_start=0.0), "beta_start"),
        (lambda: FlowSchedule(0.0), "shift"),
        (lambda: EDMSchedule(sigma_min=5.0, sigma_max=1.0), "sigma_max"),
        (lambda: EDMSchedule(rho=0.0), "rho"),
        (lambda: CustomSchedule(((0.0, 1.0),)), "points"),
        (lambda: CustomSchedule(((0.0, 1.0), (0.0, 0.0))), "points"),
        (lambda: CustomSchedule(((0.0, 1.0), (1.0, 2.0))), "points"),
        (lambda: CustomSchedule(((0.0, 1.0), (1.0, float("nan")))), "points"),
        (lambda: make_schedule("nope"), "family"),
    ],
)
def test_invalid_parameters_name_the_field(build, field):
    with pytest.raises(ScheduleError, match=field):
        build()


def test_make_schedule_builds_every_family():
    for family in DISCRETE_FAMILIES:
        assert isinstance(make_schedule(family), DiscreteSchedule)
        assert make_schedule(family, ztsnr=True).terminal_signal == 0.0
    for family in CONTINUOUS_FAMILIES:
        assert make_schedule(family, ztsnr=True).terminal_signal == 0.0
    assert isinstance(make_schedule("edm"), EDMSchedule)
    assert isinstance(make_schedule("custom", ztsnr=True), ZeroTerminalSNR)
