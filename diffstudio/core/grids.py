"""Sampling grids: the descending times ``t_0 = start > ... > t_N = 0`` a sampler visits.

Discrete schedules use diffusers' timestep spacings (Lin et al. 2024, Table 2):
``leading`` (with ``steps_offset``), ``linspace`` and ``trailing``; index ``i`` is time ``(i+1)/T``
and the last step goes to ``t = 0`` (diffusers' ``set_alpha_to_one=True``). Continuous schedules
use ``uniform`` t, ``shifted`` t (SD3's shift) or ``karras`` (rho-spaced noise levels)."""

from __future__ import annotations

import numpy as np
import torch

from diffstudio.core.schedules import DiscreteSchedule, Schedule, ScheduleError

DISCRETE_SPACINGS = ("leading", "linspace", "trailing")
CONTINUOUS_SPACINGS = ("uniform", "shifted", "karras")
SPACINGS = DISCRETE_SPACINGS + CONTINUOUS_SPACINGS


def discrete_timesteps(T: int, steps: int, spacing: str, steps_offset: int = 0) -> np.ndarray:
    """The integer timesteps diffusers' ``DDIMScheduler.set_timesteps`` produces, descending."""
    if not 1 <= steps <= T:
        raise ScheduleError(f"steps: must be between 1 and {T}, got {steps}")
    if spacing == "linspace":
        return np.linspace(0, T - 1, steps).round()[::-1].astype(np.int64)
    if spacing == "leading":
        ratio = T // steps
        ts = (np.arange(0, steps) * ratio).round()[::-1].astype(np.int64) + steps_offset
        if ts[-1] < 0 or ts[0] > T - 1:
            raise ScheduleError(f"steps_offset: {steps_offset} moves leading timesteps outside 0..{T - 1}")
        return ts
    if spacing == "trailing":
        # diffusers writes np.arange(T, 0, -T / steps), whose float step gives one extra element
        # (timestep -1, i.e. t = 0 twice) for some counts (steps = 61, 103, ...); same values, exact length.
        return np.round(T - np.arange(steps) * (T / steps)).astype(np.int64) - 1
    raise ScheduleError(f"spacing: {spacing!r} is not a discrete spacing {DISCRETE_SPACINGS}")


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3's resolution shift (Esser et al. 2024, eq. 23): ``shift t / (1 + (shift - 1) t)``,
    with the denominator written ``(1 - t) + shift t`` so that t = 1 maps to exactly 1."""
    return shift * t / ((1.0 - t) + shift * t)


KARRAS_VE_MAX = 1e4  # the largest noise level a karras grid aims at when alpha(1) = 0 (infinite)
KARRAS_T_MIN = 1.0 / 4096  # the smallest non-zero time of a karras grid (its sigma_min)


def _ve(schedule: Schedule, t: torch.Tensor) -> torch.Tensor:
    """The variance-exploding noise level ``sigma_t / alpha_t`` (inf where alpha = 0)."""
    return schedule.sigma(t) / schedule.alpha(t)


def _time_of_ve(schedule: Schedule, target: torch.Tensor, iterations: int = 64) -> torch.Tensor:
    """Invert the increasing map ``t -> sigma_t / alpha_t`` by bisection (exact to float64)."""
    lo, hi = torch.zeros_like(target), torch.ones_like(target)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        below = _ve(schedule, mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _karras_times(schedule: Schedule, steps: int, rho: float) -> torch.Tensor:
    """Times whose VE noise levels ``sigma/alpha`` follow Karras et al. 2022, eq. 5, from
    ``ve(1)`` (capped at ``KARRAS_VE_MAX``) down to ``ve(KARRAS_T_MIN)``; the first time is 1."""
    one = torch.ones((), dtype=torch.float64)
    hi = min(float(_ve(schedule, one)), KARRAS_VE_MAX)
    lo = float(_ve(schedule, one * KARRAS_T_MIN))
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    target = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    t = _time_of_ve(schedule, target)
    t[0] = 1.0
    if steps > 1:
        t[-1] = KARRAS_T_MIN
    return t


def sampling_grid(
    schedule: Schedule,
    steps: int,
    spacing: str = "trailing",
    *,
    steps_offset: int = 0,
    shift: float = 3.0,
    rho: float = 7.0,
) -> torch.Tensor:
    """Descending float64 times of length ``steps + 1``; the last is 0 (clean data)."""
    if steps < 1:
        raise ScheduleError(f"steps: must be at least 1, got {steps}")
    if isinstance(schedule, DiscreteSchedule):
        if spacing not in DISCRETE_SPACINGS:
            raise ScheduleError(f"spacing: use one of {DISCRETE_SPACINGS} for a discrete schedule")
        idx = torch.from_numpy(discrete_timesteps(schedule.num_train_timesteps, steps, spacing, steps_offset))
        return torch.cat([schedule.index_to_t(idx), torch.zeros(1, dtype=torch.float64)])
    if spacing not in CONTINUOUS_SPACINGS:
        raise ScheduleError(f"spacing: use one of {CONTINUOUS_SPACINGS} for a continuous schedule")
    if spacing == "karras":
        t = _karras_times(schedule, steps, rho)
    else:
        t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1]
        if spacing == "shifted":
            t = shift_time(t, shift)
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


def default_spacing(schedule: Schedule) -> str:
    return "trailing" if isinstance(schedule, DiscreteSchedule) else "uniform"


def model_timesteps(schedule: Schedule, grid: torch.Tensor) -> torch.Tensor:
    """What the model is fed at each grid point but the last (for plots and the CLI)."""
    return schedule.timestep(grid[:-1])
