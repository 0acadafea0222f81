"""Sampling grids: diffusers' discrete spacings and the continuous uniform / shifted / karras grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffstudio.core.grids import (
    default_spacing,
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


@pytest.mark.parametrize("name", sorted(CONTINUOUS))
@pytest.mark.parametrize("spacing", ["uniform", "shifted", "karras"])
@pytest.mark.parametrize("steps", [1, 2, 5, 30])
def test_continuous_grids_descend_from_one_to_zero(name, spacing, steps):
    grid = sampling_grid(CONTINUOUS[name](), steps, spacing)
    assert grid.dtype == F64 and len(grid) == steps + 1
    assert float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
    assert bool((grid[1:] < grid[:-1]).all())


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


@pytest.mark.parametrize("name", ["edm", "custom", "flow_shift3"])
def test_karras_grid_spaces_noise_levels_by_rho(name):
    """Karras et al. 2022, eq. 5: ``(sigma/alpha)^(1/rho)`` is equally spaced over the N points
    before the final 0 (schedules without zero terminal SNR start at their own sigma_max)."""
    s = CONTINUOUS[name]()
    rho, steps = 7.0, 12
    grid = sampling_grid(s, steps, "karras", rho=rho)
    ve = (s.sigma(grid[:-1]) / s.alpha(grid[:-1])).clamp_max(1e4)
    root = ve ** (1 / rho)
    gaps = root[:-1] - root[1:]
    assert bool((gaps > 0).all())
    torch.testing.assert_close(gaps, gaps.mean().expand_as(gaps), rtol=2e-3, atol=0)


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
