"""Parameterizations: every target converts to ``(x0, eps)`` and back; the determinant is DESIGN.md's."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffstudio.core.parameterization import (
    PARAMETERIZATIONS,
    Coefficients,
    SingularPredictionError,
    SingularPredictionWarning,
    add_noise,
    determinant,
    make_target,
    target_coefficients,
    to_x0_eps,
)
from diffstudio.core.schedules import make_schedule

F64 = torch.float64

SCHEDULES = {
    "scaled_linear": make_schedule("scaled_linear"),
    "linear+ztsnr": make_schedule("linear", ztsnr=True),
    "squaredcos_cap_v2": make_schedule("squaredcos_cap_v2"),
    "flow": make_schedule("flow"),
    "flow_shift3": make_schedule("flow", shift=3.0),
    "cosine": make_schedule("cosine"),
    "edm": make_schedule("edm"),
    "custom": make_schedule("custom"),
}

times = st.floats(min_value=0.002, max_value=0.998, allow_nan=False)
schedule_names = st.sampled_from(sorted(SCHEDULES))
params = st.sampled_from(PARAMETERIZATIONS)


def _data(seed: int, shape=(3, 2, 4)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=F64) * 2 + 0.5, torch.randn(shape, generator=g, dtype=F64)


def _condition(param: str, c: Coefficients) -> float:
    """How much the 2x2 solve can amplify rounding: ||M|| ||M^-1|| for M = [alpha sigma; a b]."""
    a, b = (float(v) for v in target_coefficients(param, c))
    alpha, sigma = float(c.alpha), float(c.sigma)
    norm = abs(alpha) + abs(sigma) + abs(a) + abs(b)
    return norm * norm / abs(alpha * b - sigma * a)


@settings(max_examples=150, deadline=None)
@given(name=schedule_names, t=times, param=params, seed=st.integers(0, 2**16))
def test_target_round_trips_to_x0_eps(name, t, param, seed):
    c = Coefficients.at(SCHEDULES[name], t)
    x0, eps = _data(seed)
    x_t = add_noise(x0, eps, c)
    target = make_target(param, x0, eps, c)
    x0_hat, eps_hat = to_x0_eps(param, target, x_t, c)
    tol = 1e-13 * _condition(param, c) * 10
    torch.testing.assert_close(x0_hat, x0, rtol=0, atol=tol)
    torch.testing.assert_close(eps_hat, eps, rtol=0, atol=tol)


@settings(max_examples=150, deadline=None)
@given(name=schedule_names, t=times, p1=params, p2=params, seed=st.integers(0, 2**16))
def test_conversion_between_parameterizations_is_consistent(name, t, p1, p2, seed):
    """An arbitrary p1-prediction -> (x0, eps) -> p2-target -> (x0, eps) -> p1 gives it back, and
    the recovered pair always reproduces x_t (the prediction only picks a point on that line)."""
    c = Coefficients.at(SCHEDULES[name], t)
    x_t, pred = _data(seed)
    x0, eps = to_x0_eps(p1, pred, x_t, c)
    tol = 1e-13 * _condition(p1, c) * _condition(p2, c) * 10
    torch.testing.assert_close(add_noise(x0, eps, c), x_t, rtol=0, atol=tol)
    x0_2, eps_2 = to_x0_eps(p2, make_target(p2, x0, eps, c), x_t, c)
    torch.testing.assert_close(x0_2, x0, rtol=0, atol=tol)
    torch.testing.assert_close(eps_2, eps, rtol=0, atol=tol)
    torch.testing.assert_close(make_target(p1, x0_2, eps_2, c), pred, rtol=0, atol=tol)


def test_batched_coefficients_broadcast_per_sample():
    s = SCHEDULES["cosine"]
    t = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    c = Coefficients.at(s, t)
    x0, eps = _data(0)
    for p in PARAMETERIZATIONS:
        target = make_target(p, x0, eps, c)
        for i in range(3):
            ci = Coefficients.at(s, t[i])
            torch.testing.assert_close(target[i], make_target(p, x0[i], eps[i], ci))
        x0_hat, eps_hat = to_x0_eps(p, target, add_noise(x0, eps, c), c)
        torch.testing.assert_close(x0_hat, x0)
        torch.testing.assert_close(eps_hat, eps)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_determinant_matches_design_table(name):
    """DESIGN.md: eps alpha; x0 -sigma; v alpha^2 + sigma^2; flow alpha sigma' - sigma alpha';
    score -alpha/sigma."""
    s = SCHEDULES[name]
    t = torch.linspace(0.01, 0.99, 37, dtype=F64)
    c = Coefficients.at(s, t)
    expected = {
        "eps": c.alpha,
        "x0": -c.sigma,
        "v": c.alpha**2 + c.sigma**2,
        "flow": c.alpha * c.d_sigma - c.sigma * c.d_alpha,
        "score": -c.alpha / c.sigma,
    }
    for p in PARAMETERIZATIONS:
        torch.testing.assert_close(determinant(p, c), expected[p], rtol=1e-14, atol=1e-15)
    if name != "flow" and name != "flow_shift3":  # variance preserving: v's det is exactly 1
        torch.testing.assert_close(determinant("v", c), torch.ones_like(t), rtol=0, atol=1e-12)


def test_rectified_flow_determinant_is_one():
    c = Coefficients.at(SCHEDULES["flow"], torch.linspace(0, 1, 11, dtype=F64))
    torch.testing.assert_close(determinant("flow", c), torch.ones(11, dtype=F64), rtol=0, atol=1e-15)
    a, b = target_coefficients("flow", c)  # u = eps - x0: the seed's x_1 - eps with time reversed
    assert bool((a == -1).all()) and bool((b == 1).all())


ZTSNR = {"linear+ztsnr": SCHEDULES["linear+ztsnr"], "flow": SCHEDULES["flow"], "cosine": SCHEDULES["cosine"]}


@pytest.mark.parametrize("name", sorted(ZTSNR))
@pytest.mark.parametrize("param", ["eps", "score"])
def test_singular_at_zero_terminal_snr_raises(name, param):
    c = Coefficients.at(ZTSNR[name], 1.0)
    assert float(c.alpha) == 0.0 and float(determinant(param, c)) == 0.0
    x_t, pred = _data(1)
    with pytest.raises(SingularPredictionError, match="zero terminal SNR"):
        to_x0_eps(param, pred, x_t, c)


@pytest.mark.parametrize("name", sorted(ZTSNR))
@pytest.mark.parametrize("param", ["eps", "score"])
def test_singular_warn_returns_nothing_of_the_image(name, param):
    """'Removing noise from pure noise results in nothing': x0_hat = 0, eps_hat = x_t / sigma."""
    c = Coefficients.at(ZTSNR[name], 1.0)
    x_t, pred = _data(2)
    with pytest.warns(SingularPredictionWarning):
        x0, eps = to_x0_eps(param, pred, x_t, c, on_singular="warn")
    assert bool(torch.isfinite(x0).all()) and bool(torch.isfinite(eps).all())
    assert bool((x0 == 0).all())
    torch.testing.assert_close(eps, x_t / float(c.sigma))


@pytest.mark.parametrize("name", sorted(ZTSNR))
@pytest.mark.parametrize("param", ["x0", "v", "flow"])
def test_v_x0_flow_are_regular_at_zero_terminal_snr(name, param):
    c = Coefficients.at(ZTSNR[name], 1.0)
    x0, eps = _data(3)
    x_t = add_noise(x0, eps, c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x0_hat, eps_hat = to_x0_eps(param, make_target(param, x0, eps, c), x_t, c)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, eps)


def test_singular_fallback_is_per_sample():
    s = SCHEDULES["linear+ztsnr"]
    c = Coefficients.at(s, torch.tensor([1.0, 0.5], dtype=F64))
    x0, eps = _data(4, shape=(2, 5))
    x_t = add_noise(x0, eps, c)
    with pytest.warns(SingularPredictionWarning):
        x0_hat, eps_hat = to_x0_eps("eps", make_target("eps", x0, eps, c), x_t, c, on_singular="warn")
    assert bool((x0_hat[0] == 0).all())
    torch.testing.assert_close(x0_hat[1], x0[1])
    torch.testing.assert_close(eps_hat, eps)  # at alpha = 0, x_t / sigma is the noise exactly


def test_x0_prediction_at_clean_end_falls_back_to_x_t():
    c = Coefficients.at(SCHEDULES["flow"], 0.0)
    x_t, pred = _data(5)
    with pytest.raises(SingularPredictionError, match="sigma_t = 0"):
        to_x0_eps("x0", pred, x_t, c)
    with pytest.warns(SingularPredictionWarning):
        x0, eps = to_x0_eps("x0", pred, x_t, c, on_singular="warn")
    torch.testing.assert_close(x0, x_t)
    assert bool((eps == 0).all())


def test_bad_on_singular_value():
    c = Coefficients.at(SCHEDULES["flow"], 1.0)
    x_t, pred = _data(6)
    with pytest.raises(ValueError, match="on_singular"):
        to_x0_eps("eps", pred, x_t, c, on_singular="ignore")
    with pytest.raises(ValueError):
        to_x0_eps("velocity", pred, x_t, c)


def test_add_noise_is_the_forward_process():
    c = Coefficients.at(SCHEDULES["scaled_linear"], 0.3)
    x0, eps = _data(7)
    torch.testing.assert_close(add_noise(x0, eps, c), float(c.alpha) * x0 + float(c.sigma) * eps)
    assert math.isclose(float(c.alpha) ** 2 + float(c.sigma) ** 2, 1.0, rel_tol=1e-14)


def test_coefficients_keep_python_floats_in_float64():
    c = Coefficients.at(SCHEDULES["flow"], 0.001)
    assert float(c.sigma) == 0.001  # not 0.0010000000474974513 (float32)
