"""Sampling grids: diffusers' discrete spacings and the continuous uniform / shifted / karras grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffstudio.core.grids import (
    check_shift,
    default_spacing,
    karras_range,
    noisy_at_zero,
    discrete_timesteps,
    model_timesteps,
    sampling_grid,
    shift_time,
)
from diffstudio.core.schedules import DiscreteSchedule, ScheduleError, make_schedule

F64 = torch.float64

CONTINUOUS = {
    "flow": lambda: make_schedule("flow"),
    "flow_shift3": lambda: make_schedule("flow", shift=3.0),
    "cosine": lambda: make_schedule("cosine"),
    "edm": lambda: make_schedule("edm"),
    "edm+ztsnr": lambda: make_schedule("edm", ztsnr=True),
    "custom": lambda: make_schedule("custom"),
}


def test_discrete_timesteps_known_values():
    """Lin et al. 2024, Table 2 (T = 1000, 10 steps)."""
    assert discrete_timesteps(1000, 10, "leading").tolist() == list(range(900, -1, -100))
    assert discrete_timesteps(1000, 10, "leading", steps_offset=1).tolist() == list(range(901, 0, -100))
    assert discrete_timesteps(1000, 10, "trailing").tolist() == list(range(999, 0, -100))
    assert discrete_timesteps(1000, 10, "linspace").tolist() == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert discrete_timesteps(1000, 1, "leading").tolist() == [0]  # one step "from" t = 0.001
    assert discrete_timesteps(1000, 1, "trailing").tolist() == [999]


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_discrete_timesteps_have_exactly_steps_distinct_descending_entries(spacing):
    """diffusers' trailing (np.arange with a float step) returns one entry too many, a -1, for
    steps = 61, 103, ...; ours has exactly ``steps`` entries, all valid indices."""
    for steps in range(1, 1001):
        ts = discrete_timesteps(1000, steps, spacing)
        assert len(ts) == steps, steps
        assert ts.min() >= 0 and ts.max() <= 999
        assert (np.diff(ts) < 0).all(), steps


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("steps", [1, 2, 7, 10, 61, 250])
def test_discrete_sampling_grid(spacing, steps):
    s = DiscreteSchedule("scaled_linear")
    grid = sampling_grid(s, steps, spacing)
    assert grid.dtype == F64 and len(grid) == steps + 1 and float(grid[-1]) == 0.0
    assert bool((grid[1:] < grid[:-1]).all())
    idx = discrete_timesteps(1000, steps, spacing)
    torch.testing.assert_close(grid[:-1], torch.from_numpy((idx + 1) / 1000.0), rtol=0, atol=0)
    torch.testing.assert_close(model_timesteps(s, grid), torch.from_numpy(idx).to(F64), rtol=0, atol=1e-9)
    if spacing == "trailing" or (spacing == "linspace" and steps > 1):
        assert float(grid[0]) == 1.0  # starts from the terminal (pure-noise under ZTSNR) step
    if spacing == "leading":
        assert float(grid[0]) < 1.0  # never visits the terminal step


def test_leading_single_step_starts_at_clean_data():
    """Leading spacing at 1 step asks the model about timestep 0 (t = 0.001): almost clean data."""
    grid = sampling_grid(DiscreteSchedule("scaled_linear"), 1, "leading")
    assert grid.tolist() == [0.001, 0.0]


NOISY_AT_ZERO = {"edm", "edm+ztsnr", "custom"}  # sigma(0) > 0


@pytest.mark.parametrize("name", sorted(CONTINUOUS))
@pytest.mark.parametrize("spacing", ["uniform", "shifted", "karras"])
@pytest.mark.parametrize("steps", [1, 2, 5, 30])
def test_continuous_grids_descend_from_one_to_zero(name, spacing, steps):
    """N + 1 times from 1 to 0. Where t = 0 still holds noise the N model times end at t = 0 itself
    and the final clean 0 follows (k-diffusion's N sigmas + 0), so only those grids repeat 0."""
    schedule = CONTINUOUS[name]()
    grid = sampling_grid(schedule, steps, spacing)
    assert grid.dtype == F64 and len(grid) == steps + 1
    assert float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
    assert noisy_at_zero(schedule) == (name in NOISY_AT_ZERO)
    model_times = grid[:-1]
    assert bool((model_times[1:] < model_times[:-1]).all())
    if name in NOISY_AT_ZERO and steps > 1:
        assert float(grid[-2]) == 0.0
    else:
        assert float(grid[-2]) > 0.0


def test_uniform_and_shifted_grids():
    s = make_schedule("flow")
    torch.testing.assert_close(sampling_grid(s, 4, "uniform"), torch.tensor([1, 0.75, 0.5, 0.25, 0], dtype=F64))
    t = torch.linspace(1, 0, 5, dtype=F64)
    torch.testing.assert_close(sampling_grid(s, 4, "shifted", shift=3.0), 3 * t / (1 + 2 * t))
    torch.testing.assert_close(shift_time(torch.tensor(0.5, dtype=F64), 3.0), torch.tensor(0.75, dtype=F64))
    torch.testing.assert_close(sampling_grid(s, 4, "shifted", shift=1.0), sampling_grid(s, 4, "uniform"))


@pytest.mark.parametrize("shift", [0.1, 0.3, 0.7, 1.15, 3.0, 7.0])
def test_shifted_grid_starts_at_exactly_one(shift):
    """1 + (shift - 1) rounds away from shift for some shifts (0.1); t = 1.0000000000000002 would
    give rectified flow a negative alpha."""
    grid = sampling_grid(make_schedule("flow"), 7, "shifted", shift=shift)
    assert float(grid[0]) == 1.0 and bool((grid[1:] < grid[:-1]).all())
    assert float(make_schedule("flow").alpha(grid[0])) == 0.0


def _karras_ramp(hi, lo, n, rho=7.0):
    """k-diffusion's get_sigmas_karras(n, lo, hi, rho) before its appended 0."""
    ramp = torch.linspace(0, 1, n, dtype=F64)
    return (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho


@pytest.mark.parametrize("name", sorted(CONTINUOUS))
@pytest.mark.parametrize("steps", [2, 5, 12])
def test_karras_grid_spaces_noise_levels_by_rho(name, steps):
    """Karras et al. 2022, eq. 5: the N model times have noise levels ``sigma/alpha`` on the rho
    ramp from sigma_max to sigma_min, the range of the uniform grid's model times (as diffusers'
    karras sigmas span its spacing's): under zero terminal SNR from the largest finite one,
    ve(1 - 1/N), the ramp's first point then moved to t = 1 itself; down to ve(1/N), or ve(0) where
    t = 0 holds noise."""
    s = CONTINUOUS[name]()
    grid = sampling_grid(s, steps, "karras", rho=7.0)
    hi, lo = karras_range(s, steps)
    ztsnr = float(s.alpha(1.0)) == 0.0
    ve = lambda t: float(s.sigma(t) / s.alpha(t))  # noqa: E731
    assert hi == pytest.approx(ve(1.0 - 1.0 / steps) if ztsnr else ve(1.0))
    assert lo == pytest.approx(ve(0.0) if name in NOISY_AT_ZERO else ve(1.0 / steps))
    levels = s.sigma(grid[:-1]) / s.alpha(grid[:-1])
    expected = _karras_ramp(hi, lo, steps)
    first = 1 if ztsnr else 0
    torch.testing.assert_close(levels[first:], expected[first:], rtol=1e-9, atol=1e-12)
    assert float(grid[0]) == 1.0


@pytest.mark.parametrize("steps", [1, 2, 10, 40])
def test_edm_grid_is_k_diffusion_get_sigmas_karras(diffusers, steps):
    """EDM, N steps: the N Karras sigmas of ``get_sigmas_karras(N, 0.002, 80, 7)`` and a final 0,
    as diffusers' EDMEulerScheduler(final_sigmas_type="zero") builds them; the karras spacing of
    the EDM schedule is the same grid."""
    s = make_schedule("edm")
    ref = diffusers.EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, rho=7.0, final_sigmas_type="zero")
    ref.set_timesteps(steps)
    for spacing in ("uniform", "karras"):
        grid = sampling_grid(s, steps, spacing)
        ve = (s.sigma(grid) / s.alpha(grid)).clone()
        ve[-1] = 0.0  # the final point is clean data (the sampler returns x0_hat there)
        torch.testing.assert_close(ve, ref.sigmas.to(F64), rtol=1e-6, atol=0)
        torch.testing.assert_close(ve[:-1], _karras_ramp(80.0, 0.002, steps), rtol=1e-9, atol=0)


def test_shift_must_be_positive_and_finite():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ScheduleError, match="shift"):
            sampling_grid(make_schedule("cosine"), 4, "shifted", shift=bad)
        with pytest.raises(ScheduleError, match="shift"):
            shift_time(torch.tensor(0.5, dtype=F64), bad)
    assert float(check_shift(2)) == 2.0


def test_default_spacing():
    assert default_spacing(DiscreteSchedule()) == "trailing"
    assert default_spacing(make_schedule("flow")) == "uniform"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: sampling_grid(DiscreteSchedule(), 0), "steps"),
        (lambda: sampling_grid(make_schedule("flow"), 0, "uniform"), "steps"),
        (lambda: sampling_grid(DiscreteSchedule(), 1001, "trailing"), "steps"),
        (lambda: sampling_grid(DiscreteSchedule(), 10, "uniform"), "spacing"),
        (lambda: sampling_grid(make_schedule("flow"), 10, "trailing"), "spacing"),
        (lambda: sampling_grid(make_schedule("cosine"), 10, "sideways"), "spacing"),
        (lambda: discrete_timesteps(1000, 0, "leading"), "steps"),
        (lambda: discrete_timesteps(1000, 10, "karras"), "spacing"),
        (lambda: discrete_timesteps(1000, 1000, "leading", steps_offset=1), "steps_offset"),  # index 1000
        (lambda: discrete_timesteps(1000, 10, "leading", steps_offset=-1), "steps_offset"),
    ],
)
def test_bad_grid_requests_name_the_field(call, field):
    with pytest.raises(ScheduleError, match=field):
        call()
