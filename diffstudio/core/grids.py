"""Sampling grids: the descending times ``t_0 = start > ... > t_N = 0`` a sampler visits.

Discrete schedules use diffusers' timestep spacings (Lin et al. 2024, Table 2):
``leading`` (with ``steps_offset``), ``linspace`` and ``trailing``; index ``i`` is time ``(i+1)/T``
and the last step goes to ``t = 0`` (diffusers' ``set_alpha_to_one=True``). Continuous schedules
use ``uniform`` t, ``shifted`` t (SD3's shift) or ``karras`` (rho-spaced noise levels).

The last grid time 0 means clean data: every sampler's last step returns ``x0_hat`` there. A
schedule whose ``t = 0`` still holds noise (``sigma_0 > 0``: EDM's ``sigma_min``, custom log-SNR
points) is sampled k-diffusion's way: its N model calls sit on N times from 1 down to 0 inclusive
(for EDM the N Karras noise levels of ``get_sigmas_karras(N)``), and a final 0 follows, so such a
grid ends ``..., 0, 0``."""

from __future__ import annotations

import math

import numpy as np
import torch

from diffstudio.core.schedules import DiscreteSchedule, Schedule, ScheduleError

DISCRETE_SPACINGS = ("leading", "linspace", "trailing")
CONTINUOUS_SPACINGS = ("uniform", "shifted", "karras")
SPACINGS = DISCRETE_SPACINGS + CONTINUOUS_SPACINGS


def discrete_timesteps(T: int, steps: int, spacing: str, steps_offset: int = 0) -> np.ndarray:
    """The integer timesteps diffusers' ``DDIMScheduler.set_timesteps(steps)`` produces, descending,
    shape (steps,). Equal to diffusers for every ``steps`` in 1..T (checked for T = 1000), except
    that trailing spacing never has diffusers' extra trailing -1 (steps = 61, 103, ...). Raises
    :class:`ScheduleError` naming ``steps``, ``spacing`` or ``steps_offset``."""
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
        # diffusers' own expression, np.arange(T, 0, -T / steps) rounded: its float accumulation
        # decides which way the x.5 values round (steps = 48, 96, ...), so it is kept verbatim. For
        # some counts (steps = 61, 103, ...) it yields one extra element (timestep -1, t = 0 twice):
        # diffstudio keeps the first ``steps`` values, the only difference from DDIMScheduler.
        return (np.round(np.arange(T, 0, -T / steps))[:steps] - 1).astype(np.int64)
    raise ScheduleError(f"spacing: {spacing!r} is not a discrete spacing {DISCRETE_SPACINGS}")


def check_shift(shift: float) -> float:
    """``shift`` as a float if it is positive and finite, else :class:`ScheduleError` naming it."""
    value = float(shift)
    if not (math.isfinite(value) and value > 0):
        raise ScheduleError(f"shift: must be a positive finite number, got {shift}")
    return value


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3's resolution shift (Esser et al. 2024, eq. 23): ``shift t / (1 + (shift - 1) t)``,
    with the denominator written ``(1 - t) + shift t`` so that t = 1 maps to exactly 1.
    ``shift`` > 0 and finite (else :class:`ScheduleError`); maps [0, 1] onto [0, 1]."""
    shift = check_shift(shift)
    return shift * t / ((1.0 - t) + shift * t)


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


def noisy_at_zero(schedule: Schedule) -> bool:
    """Whether ``t = 0`` still holds noise (``sigma_0 > 0``: EDM, custom log-SNR points)."""
    return float(schedule.sigma(0.0)) > 0.0


def karras_range(schedule: Schedule, steps: int) -> tuple[float, float]:
    """``(sigma_max, sigma_min)`` of an N-step karras grid, in Karras et al.'s units ``sigma/alpha``.

    As diffusers' karras sigmas, which span the sigmas of the spacing's own timesteps
    (``in_sigmas[0]`` to ``in_sigmas[-1]``), the range is that of the uniform grid's model times
    ``1, 1 - 1/N, ..., 1/N``: ``sigma_max = ve(1)``, or where alpha(1) = 0 (infinite) the largest
    finite one, ``ve(1 - 1/N)``; ``sigma_min = ve(1/N)``. Where t = 0 still holds noise (EDM,
    custom points) ``sigma_min = ve(0)``, k-diffusion's ``get_sigmas_karras(N, sigma_min, sigma_max)``.
    Needs ``steps >= 2``."""
    one = torch.ones((), dtype=torch.float64)
    hi = float(_ve(schedule, one))
    if not math.isfinite(hi):
        hi = float(_ve(schedule, one * (1.0 - 1.0 / steps)))
    lo = float(_ve(schedule, one * (0.0 if noisy_at_zero(schedule) else 1.0 / steps)))
    return hi, lo


def _karras_times(schedule: Schedule, steps: int, rho: float) -> torch.Tensor:
    """N times whose noise levels ``sigma/alpha`` follow Karras et al. 2022, eq. 5 (k-diffusion
    ``get_sigmas_karras(N)`` before its final 0) over :func:`karras_range`; the first time is
    exactly 1 (under zero terminal SNR it replaces the ramp's first, largest finite sigma)."""
    if steps == 1:
        return torch.ones(1, dtype=torch.float64)
    hi, lo = karras_range(schedule, steps)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    target = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    t = _time_of_ve(schedule, target)
    t[0] = 1.0
    if noisy_at_zero(schedule):
        t[-1] = 0.0
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
    """Descending float64 times of length ``steps + 1``; the last is 0 (clean data).

    Discrete schedules: diffusers' timesteps (:func:`discrete_timesteps`) as times ``(i+1)/T``.
    Continuous: ``uniform`` (``linspace(1, 0, N + 1)``), ``shifted`` (SD3's shift of it) or
    ``karras``. Where ``sigma_0 > 0`` (see the module docstring) the N model times run from 1 to 0
    inclusive and a final 0 follows. Raises :class:`ScheduleError` naming ``steps``, ``spacing``,
    ``shift`` or ``steps_offset``."""
    if steps < 1:
        raise ScheduleError(f"steps: must be at least 1, got {steps}")
    if isinstance(schedule, DiscreteSchedule):
        if spacing not in DISCRETE_SPACINGS:
            raise ScheduleError(f"spacing: use one of {DISCRETE_SPACINGS} for a discrete schedule")
        idx = torch.from_numpy(discrete_timesteps(schedule.num_train_timesteps, steps, spacing, steps_offset))
        return torch.cat([schedule.index_to_t(idx), torch.zeros(1, dtype=torch.float64)])
    if spacing not in CONTINUOUS_SPACINGS:
        raise ScheduleError(f"spacing: use one of {CONTINUOUS_SPACINGS} for a continuous schedule")
    if spacing == "shifted":
        check_shift(shift)
    if spacing == "karras":
        t = _karras_times(schedule, steps, rho)
    else:
        if noisy_at_zero(schedule):
            t = torch.linspace(1.0, 0.0, steps, dtype=torch.float64) if steps > 1 else torch.ones(1, dtype=torch.float64)
        else:
            t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1]
        if spacing == "shifted":
            t = shift_time(t, shift)
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


def default_spacing(schedule: Schedule) -> str:
    """The sampling spacing a schedule gets unless one is chosen: ``trailing`` for beta schedules
    (Lin et al. 2024: sample from the last timestep), ``uniform`` in t for continuous ones."""
    return "trailing" if isinstance(schedule, DiscreteSchedule) else "uniform"


def model_timesteps(schedule: Schedule, grid: torch.Tensor) -> torch.Tensor:
    """What the model is fed at each grid point but the last (for plots and the CLI)."""
    return schedule.timestep(grid[:-1])
