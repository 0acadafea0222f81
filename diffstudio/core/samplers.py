"""Samplers: one contract ``sample(name, denoiser, x, grid, schedule, ...) -> x_0``.

``denoiser(x_t, t) -> (x0_hat, eps_hat)``; ``grid`` holds descending times ending at 0. Every
sampler works on ``(x0_hat, eps_hat)`` only, so it runs on every parameterization and schedule.

Names mean what they mean in diffusers and k-diffusion:

- ``euler`` and ``heun`` integrate the probability-flow ODE in the variance-exploding variables
  ``s = sigma_t / alpha_t`` and ``y = x / alpha_t`` (Karras et al. 2022, eq. 4 and Algorithms 1-2;
  k-diffusion ``sample_euler`` / ``sample_heun``; diffusers ``EulerDiscreteScheduler`` /
  ``HeunDiscreteScheduler``), where ``dy/ds = (y - x0_hat) / s = eps_hat``. On rectified flow that
  Euler step is ``FlowMatchEulerDiscreteScheduler``'s step in its own sigma.
- ``ddim`` / ``ddim_eta`` / ``ddpm``: Song et al. 2021, eq. 12 (eta = 1 is Ho et al. 2020's
  ancestral step, diffusers' ``DDPMScheduler`` / ``DDIMScheduler``).
- ``dpmpp_2m``: Lu et al. 2022 (k-diffusion ``sample_dpmpp_2m``).
- ``euler_maruyama``: Euler-Maruyama on the reverse SDE (Song et al. 2021, eq. 6).

Rules shared by all of them:

- Where ``alpha = 0`` (zero terminal SNR at t = 1) ``s`` is infinite; the step from there is the
  limit ``s_p -> inf`` of its update, which goes through ``x0_hat``: ``x_q = alpha_q x0_hat +
  sigma_q eps_hat`` (plus fresh noise for the SDE samplers), so one step from pure noise returns
  ``x0_hat``. diffusers reaches nearly the same step by clamping ``alpha_bar_T`` to ``2**-24``.
- When the last grid time is 0, the last step returns ``x0_hat`` and adds no noise, also where the
  schedule's ``t = 0`` still holds noise (EDM's ``sigma_min``, custom log-SNR points).
- SDE samplers draw fresh noise after each model call from the one ``generator`` (the start
  noise drawn from it first, as diffusers' pipelines do), in ``x``'s dtype and device.

Coefficients are Python floats computed in float64. ``callback(i, t, x_t, x0_hat)`` is called once
per step (the app draws trajectories from it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from diffstudio.core.parameterization import Coefficients
from diffstudio.core.schedules import Schedule, ScheduleError

Tensor = torch.Tensor
DenoiseFn = Callable[[Tensor, float], tuple[Tensor, Tensor]]
Callback = Callable[[int, float, Tensor, Tensor], None] | None


class SamplerError(ScheduleError):
    """A sampler setting is invalid (unknown name, eta outside [0, 1]); the message names the field."""


@dataclass(frozen=True)
class Point:
    """A grid time with its schedule values, as Python floats (computed in float64)."""

    t: float
    alpha: float
    sigma: float
    d_alpha: float
    d_sigma: float

    @classmethod
    def at(cls, schedule: Schedule, t: float) -> "Point":
        """The schedule's values at ``t`` (float in [0, 1]), computed in float64."""
        c = Coefficients.at(schedule, t)
        return cls(float(t), float(c.alpha), float(c.sigma), float(c.d_alpha), float(c.d_sigma))

    @property
    def log_snr(self) -> float:
        """``lambda = 2 log(alpha / sigma)``: -inf where alpha = 0, +inf where sigma = 0."""
        if self.alpha == 0:
            return -math.inf
        return math.inf if self.sigma == 0 else 2 * math.log(self.alpha / self.sigma)

    @property
    def ve(self) -> float:
        """Karras et al.'s noise level ``sigma / alpha`` (inf where alpha = 0)."""
        return math.inf if self.alpha == 0 else self.sigma / self.alpha


def _points(schedule: Schedule, grid: Tensor) -> list[Point]:
    return [Point.at(schedule, float(t)) for t in grid]


def _steps(schedule: Schedule, grid: Tensor):
    """``(i, p, q, final)`` for each step ``p -> q``; ``final`` marks the last step onto t = 0,
    which returns ``x0_hat``."""
    pts = _points(schedule, grid)
    n = len(pts) - 1
    for i, (p, q) in enumerate(zip(pts, pts[1:])):
        yield i, p, q, (i == n - 1 and q.t == 0.0)


def _randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Fresh N(0, I) like ``x``, drawn on the generator's device and moved to ``x``'s (as diffusers'
    ``randn_tensor``), so a CPU generator gives the same numbers whatever device samples."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def ddim_step(p: Point, q: Point, x0: Tensor, eps: Tensor, eta: float, generator) -> Tensor:
    """Song et al. 2021, eq. 12, for any (alpha, sigma): from time p to q < p.
    Fresh-noise scale ``c^2 = eta^2 sigma_q^2 (1 - SNR_p / SNR_q)``; eta = 1 is DDPM's posterior
    (Ho et al. 2020, eq. 7). Returns ``x_q`` shaped like ``x0``."""
    if eta == 0 or q.sigma == 0 or p.sigma == 0:
        return q.alpha * x0 + q.sigma * eps
    ratio = (p.alpha * q.sigma) ** 2 / ((p.sigma * q.alpha) ** 2)  # SNR_p / SNR_q
    c = eta * q.sigma * math.sqrt(max(0.0, 1.0 - ratio))
    return q.alpha * x0 + math.sqrt(max(0.0, q.sigma**2 - c**2)) * eps + c * _randn(x0, generator)


def euler_step(p: Point, q: Point, x: Tensor, x0: Tensor, eps: Tensor) -> Tensor:
    """Karras et al. 2022, Algorithm 1 (first order): ``y_q = y_p + (s_q - s_p) eps_hat`` with
    ``y = x / alpha`` and ``s = sigma / alpha``; returns ``x_q = alpha_q y_q``. From ``alpha_p = 0``
    (``s_p`` infinite) it is the limit ``alpha_q x0_hat + sigma_q eps_hat``."""
    if p.alpha == 0:
        return q.alpha * x0 + q.sigma * eps
    return q.alpha * (x / p.alpha + (q.ve - p.ve) * eps)


def sample_ddim(denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *, eta: float = 0.0,
                generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """DDIM (eta = 0: deterministic ODE solver; eta > 0: stochastic, Song et al. 2021, eq. 12)."""
    for i, p, q, final in _steps(schedule, grid):
        x0, eps = denoiser(x, p.t)
        if callback:
            callback(i, p.t, x, x0)
        x = x0 if final else ddim_step(p, q, x0, eps, eta, generator)
    return x


def sample_ddpm(denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *,
                generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) = DDIM with eta = 1."""
    return sample_ddim(denoiser, x, grid, schedule, eta=1.0, generator=generator, callback=callback)


def sample_euler(denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *,
                 generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """Euler on the probability-flow ODE in ``s = sigma/alpha`` (Karras et al. 2022, Algorithm 1 with
    its 2nd-order correction off; k-diffusion ``sample_euler``, diffusers ``EulerDiscreteScheduler``).
    With exact ``(x0_hat, eps_hat)`` of ``x`` this is the DDIM step, as Karras et al. note."""
    for i, p, q, final in _steps(schedule, grid):
        x0, eps = denoiser(x, p.t)
        if callback:
            callback(i, p.t, x, x0)
        x = x0 if final else euler_step(p, q, x, x0, eps)
    return x


def sample_heun(denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *,
                generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """Heun's 2nd-order method in ``s = sigma/alpha`` (Karras et al. 2022, Algorithm 1; k-diffusion
    ``sample_heun``, diffusers ``HeunDiscreteScheduler``): an Euler step to ``q``, a second
    evaluation there, and the average slope ``(eps_p + eps_q) / 2``. The last step (onto t = 0) is
    Euler, i.e. ``x0_hat``. From ``alpha_p = 0`` the averaged step has no finite limit, so that step
    is Euler too (``2N - 1`` model calls for N steps, one fewer when starting at alpha = 0)."""
    for i, p, q, final in _steps(schedule, grid):
        x0, eps = denoiser(x, p.t)
        if callback:
            callback(i, p.t, x, x0)
        if final:
            x = x0
            continue
        x_euler = euler_step(p, q, x, x0, eps)
        if p.alpha == 0 or q.sigma == 0:
            x = x_euler
            continue
        _, eps_q = denoiser(x_euler, q.t)
        x = x_euler + (q.alpha * (q.ve - p.ve) * 0.5) * (eps_q - eps)
    return x


def sample_dpmpp_2m(denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *,
                    generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) in log-SNR half-steps ``h = lambda_q/2 - lambda_p/2``;
    first-order where the previous step is unusable (first step, infinite h); the last step onto
    t = 0 returns ``x0_hat`` (k-diffusion ``sample_dpmpp_2m``, diffusers ``lower_order_final``)."""
    prev_x0, prev_h = None, None
    for i, p, q, final in _steps(schedule, grid):
        x0, eps = denoiser(x, p.t)
        if callback:
            callback(i, p.t, x, x0)
        if final or q.sigma == 0:
            x = x0 if final else q.alpha * x0
            continue
        h = 0.5 * (q.log_snr - p.log_snr)
        d = x0
        if prev_x0 is not None and math.isfinite(h) and math.isfinite(prev_h) and h > 0:
            r = prev_h / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
        if not math.isfinite(h):  # leaving alpha = 0: the DDIM step
            x = q.alpha * d + q.sigma * eps
        else:
            x = (q.sigma / p.sigma) * x - q.alpha * math.expm1(-h) * d
        prev_x0, prev_h = x0, h
    return x


def sample_euler_maruyama(denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *,
                          generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, eq. 6) of ``dx = f x dt + g dW`` with
    ``f = alpha'/alpha`` and ``g^2 = 2 sigma (sigma' - f sigma)``. Its drift in (x0, eps) form is
    ``alpha' x0 + (2 sigma' - f sigma) eps``. Where ``alpha = 0`` the SDE is singular (f is infinite):
    that step is taken as DDPM's exact posterior step instead. The last step onto t = 0 returns
    ``x0_hat`` and adds no noise."""
    for i, p, q, final in _steps(schedule, grid):
        x0, eps = denoiser(x, p.t)
        if callback:
            callback(i, p.t, x, x0)
        if final:
            x = x0
            continue
        if p.alpha == 0:
            x = ddim_step(p, q, x0, eps, 1.0, generator)
            continue
        f = p.d_alpha / p.alpha
        g2 = max(0.0, 2 * p.sigma * (p.d_sigma - f * p.sigma))
        dt = p.t - q.t
        drift = p.d_alpha * x0 + (2 * p.d_sigma - f * p.sigma) * eps
        x = x - dt * drift + math.sqrt(g2 * dt) * _randn(x, generator)
    return x


@dataclass(frozen=True)
class SamplerInfo:
    """A registry entry of :data:`SAMPLERS`: its ``name`` (the setting's value), ``kind`` ("ODE" or
    "SDE"), the ``label`` people see, the sampling function ``fn`` (the one sampler contract) and
    whether it takes ``eta``."""
    name: str
    kind: str  # "ODE" or "SDE"
    label: str
    fn: Callable[..., Tensor]
    has_eta: bool = False


SAMPLERS: dict[str, SamplerInfo] = {
    s.name: s
    for s in (
        SamplerInfo("euler", "ODE", "Euler", sample_euler),
        SamplerInfo("heun", "ODE", "Heun (2nd order)", sample_heun),
        SamplerInfo("ddim", "ODE", "DDIM (eta = 0)", sample_ddim),
        SamplerInfo("dpmpp_2m", "ODE", "DPM-Solver++(2M)", sample_dpmpp_2m),
        SamplerInfo("ddpm", "SDE", "DDPM ancestral", sample_ddpm),
        SamplerInfo("ddim_eta", "SDE", "DDIM (eta > 0)", sample_ddim, has_eta=True),
        SamplerInfo("euler_maruyama", "SDE", "Euler-Maruyama (reverse SDE)", sample_euler_maruyama),
    )
}


def check_eta(eta: float) -> float:
    """``eta`` as a float in [0, 1] (0: DDIM, 1: DDPM's posterior noise), else :class:`SamplerError`."""
    value = float(eta)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise SamplerError(f"eta: must lie between 0 and 1 (0 = DDIM, 1 = DDPM), got {eta}")
    return value


def sample(name: str, denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *,
           eta: float = 1.0, generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """Run the sampler called ``name`` from ``x`` (noise at ``grid[0]``) down to ``grid[-1] = 0``.

    ``x`` (B, ...) any float dtype; ``grid`` float64 (N + 1,) descending; ``eta`` (ddim_eta only)
    in [0, 1]. Returns a tensor like ``x``. Raises :class:`SamplerError` for an unknown name or a bad
    eta, and whatever the denoiser raises (e.g. ``SingularPredictionError``)."""
    if name not in SAMPLERS:
        raise SamplerError(f"sampler: unknown {name!r}; choose one of {', '.join(SAMPLERS)}")
    info = SAMPLERS[name]
    kwargs = {"eta": check_eta(eta)} if info.has_eta else {}
    with torch.no_grad():
        return info.fn(denoiser, x, grid, schedule, generator=generator, callback=callback, **kwargs)
