"""Samplers: one contract ``sample(denoiser, x, grid, generator=None, callback=None) -> x_0``.

``denoiser(x_t, t) -> (x0_hat, eps_hat)``; ``grid`` holds descending times ending at 0.
ODE samplers integrate the probability-flow ODE ``dx/dt = alpha'(t) x0 + sigma'(t) eps``;
SDE samplers add fresh noise from an explicit ``torch.Generator``. Coefficients are float64.
``callback(i, t, x_t, x0_hat)`` is called once per step (the app draws trajectories from it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from diffstudio.core.parameterization import Coefficients
from diffstudio.core.schedules import Schedule

Tensor = torch.Tensor
DenoiseFn = Callable[[Tensor, float], tuple[Tensor, Tensor]]
Callback = Callable[[int, float, Tensor, Tensor], None] | None


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
        c = Coefficients.at(schedule, t)
        return cls(float(t), float(c.alpha), float(c.sigma), float(c.d_alpha), float(c.d_sigma))

    @property
    def log_snr(self) -> float:
        if self.alpha == 0:
            return -math.inf
        return math.inf if self.sigma == 0 else 2 * math.log(self.alpha / self.sigma)


def _points(schedule: Schedule, grid: Tensor) -> list[Point]:
    return [Point.at(schedule, float(t)) for t in grid]


def _randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _velocity(p: Point, x0: Tensor, eps: Tensor) -> Tensor:
    """Probability-flow ODE drift ``dx/dt`` at ``p`` from the current estimates."""
    return p.d_alpha * x0 + p.d_sigma * eps


def ddim_step(p: Point, q: Point, x0: Tensor, eps: Tensor, eta: float, generator) -> Tensor:
    """Song et al. 2021, eq. 12, for any (alpha, sigma): from time p to q < p.
    Fresh-noise scale ``c^2 = eta^2 sigma_q^2 (1 - SNR_p / SNR_q)``; eta=1 is DDPM's posterior."""
    if eta == 0 or q.sigma == 0:
        return q.alpha * x0 + q.sigma * eps
    ratio = (p.alpha * q.sigma) ** 2 / ((p.sigma * q.alpha) ** 2)  # SNR_p / SNR_q
    c = eta * q.sigma * math.sqrt(max(0.0, 1.0 - ratio))
    return q.alpha * x0 + math.sqrt(max(0.0, q.sigma**2 - c**2)) * eps + c * _randn(x0, generator)


def sample_ddim(denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *, eta: float = 0.0,
                generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """DDIM (eta = 0: deterministic ODE solver; eta > 0: stochastic)."""
    pts = _points(schedule, grid)
    for i, (p, q) in enumerate(zip(pts, pts[1:])):
        x0, eps = denoiser(x, p.t)
        if callback:
            callback(i, p.t, x, x0)
        x = ddim_step(p, q, x0, eps, eta, generator)
    return x


def sample_ddpm(denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *,
                generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) = DDIM with eta = 1."""
    return sample_ddim(denoiser, x, grid, schedule, eta=1.0, generator=generator, callback=callback)


def sample_euler(denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *,
                 generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """Explicit Euler on the probability-flow ODE in t."""
    pts = _points(schedule, grid)
    for i, (p, q) in enumerate(zip(pts, pts[1:])):
        x0, eps = denoiser(x, p.t)
        if callback:
            callback(i, p.t, x, x0)
        x = x + (q.t - p.t) * _velocity(p, x0, eps)
    return x


def sample_heun(denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *,
                generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """Heun's 2nd-order method (Karras et al. 2022, Algorithm 1); the step to t = 0 is Euler."""
    pts = _points(schedule, grid)
    for i, (p, q) in enumerate(zip(pts, pts[1:])):
        x0, eps = denoiser(x, p.t)
        if callback:
            callback(i, p.t, x, x0)
        d = _velocity(p, x0, eps)
        x_euler = x + (q.t - p.t) * d
        if q.sigma == 0 or q.t == 0:
            x = x_euler
            continue
        x0_q, eps_q = denoiser(x_euler, q.t)
        x = x + (q.t - p.t) * 0.5 * (d + _velocity(q, x0_q, eps_q))
    return x


def sample_dpmpp_2m(denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *,
                    generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) in log-SNR half-steps ``h = lambda_q/2 - lambda_p/2``;
    first-order where the previous step is unusable (first step, infinite h, last step)."""
    pts = _points(schedule, grid)
    prev_x0, prev_h = None, None
    for i, (p, q) in enumerate(zip(pts, pts[1:])):
        x0, eps = denoiser(x, p.t)
        if callback:
            callback(i, p.t, x, x0)
        h = 0.5 * (q.log_snr - p.log_snr)
        d = x0
        if prev_x0 is not None and math.isfinite(h) and math.isfinite(prev_h) and q.sigma > 0:
            r = prev_h / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
        if q.sigma == 0:
            x = q.alpha * d
        elif not math.isfinite(h):  # leaving alpha = 0: the DDIM step
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
    that step is taken as DDPM's exact posterior step instead. The step to t = 0 adds no noise."""
    pts = _points(schedule, grid)
    for i, (p, q) in enumerate(zip(pts, pts[1:])):
        x0, eps = denoiser(x, p.t)
        if callback:
            callback(i, p.t, x, x0)
        if p.alpha == 0:
            x = ddim_step(p, q, x0, eps, 1.0, generator)
            continue
        f = p.d_alpha / p.alpha
        g2 = max(0.0, 2 * p.sigma * (p.d_sigma - f * p.sigma))
        dt = p.t - q.t
        drift = p.d_alpha * x0 + (2 * p.d_sigma - f * p.sigma) * eps
        x = x - dt * drift
        if q.t > 0:
            x = x + math.sqrt(g2 * dt) * _randn(x, generator)
    return x


@dataclass(frozen=True)
class SamplerInfo:
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


def sample(name: str, denoiser: DenoiseFn, x: Tensor, grid: Tensor, schedule: Schedule, *,
           eta: float = 1.0, generator: torch.Generator | None = None, callback: Callback = None) -> Tensor:
    """Run the sampler called ``name`` from ``x`` (noise at ``grid[0]``) down to ``grid[-1] = 0``."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler: unknown {name!r}; choose one of {', '.join(SAMPLERS)}")
    info = SAMPLERS[name]
    kwargs = {"eta": eta} if info.has_eta else {}
    with torch.no_grad():
        return info.fn(denoiser, x, grid, schedule, generator=generator, callback=callback, **kwargs)
