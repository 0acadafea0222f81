"""What the network predicts. Every target is ``p = a_t x0 + b_t eps`` (DESIGN.md's table):

| name  | a_t     | b_t       | det = alpha b - sigma a |
| eps   | 0       | 1         | alpha                   |
| x0    | 1       | 0         | -sigma                  |
| v     | -sigma  | alpha     | alpha^2 + sigma^2       |
| flow  | alpha'  | sigma'    | alpha sigma' - sigma alpha' |
| score | 0       | -1/sigma  | -alpha / sigma          |

Any prediction converts to ``(x0_hat, eps_hat)`` by solving ``[alpha sigma; a b][x0; eps] = [x_t; p]``.
``det == 0`` means the prediction carries no information about the image: eps or score at zero
terminal SNR ("removing noise from pure noise results in nothing").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import Enum

import torch

from diffstudio.core.schedules import Schedule

Tensor = torch.Tensor


class Parameterization(str, Enum):
    """What the network predicts, each ``p = a_t x0 + b_t eps`` (the table in DESIGN.md):
    ``eps`` (DDPM), ``x0``, ``v = alpha eps - sigma x0`` (Salimans & Ho 2022), ``flow = dx_t/dt``
    (rectified flow), ``score = -eps / sigma``."""
    EPS = "eps"
    X0 = "x0"
    V = "v"
    FLOW = "flow"
    SCORE = "score"


PARAMETERIZATIONS = tuple(p.value for p in Parameterization)


class SingularPredictionError(ArithmeticError):
    """The 2x2 system has no unique solution: the prediction cannot recover the image."""


class SingularPredictionWarning(RuntimeWarning):
    """:func:`to_x0_eps` with ``on_singular="warn"`` where the 2x2 system is singular (``det = 0``,
    e.g. eps or score at a zero-terminal-SNR end): what is returned there is only what ``x_t`` alone
    identifies (at ``alpha = 0``: ``x0_hat = 0``), nothing of the image."""
    pass


@dataclass(frozen=True)
class Coefficients:
    """``alpha_t, sigma_t`` and their t-derivatives at some times (float64, any shape)."""

    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor
    d_sigma: Tensor

    @classmethod
    def at(cls, schedule: Schedule, t: Tensor | float) -> "Coefficients":
        """Evaluated in float64 on the CPU, where schedules keep their knots, whatever device ``t``
        is on (consumers move the coefficients to their tensors' device: see ``add_noise``)."""
        if isinstance(t, torch.Tensor):
            t = t.detach().to(device="cpu", dtype=torch.float64)
        else:  # a Python float straight to float64 (as_tensor alone would round it to float32)
            t = torch.as_tensor(t, dtype=torch.float64)
        alpha, d_alpha, sigma, d_sigma = schedule.alpha_sigma(t)
        return cls(alpha, sigma, d_alpha, d_sigma)


def target_coefficients(param: Parameterization | str, c: Coefficients) -> tuple[Tensor, Tensor]:
    """``(a_t, b_t)`` with ``p = a_t x0 + b_t eps``.
    The table of DESIGN.md: eps (Ho et al. 2020) ``(0, 1)``, x0 ``(1, 0)``, v (Salimans & Ho 2022)
    ``(-sigma, alpha)``, flow ``(alpha', sigma')`` (the velocity ``dx_t/dt``; rectified flow: ``eps - x0``),
    score ``(0, -1/sigma)``. Shapes of ``c``'s tensors. Raises ValueError for an unknown name."""
    p = Parameterization(param)
    zero, one = torch.zeros_like(c.alpha), torch.ones_like(c.alpha)
    if p is Parameterization.EPS:
        return zero, one
    if p is Parameterization.X0:
        return one, zero
    if p is Parameterization.V:
        return -c.sigma, c.alpha
    if p is Parameterization.FLOW:
        return c.d_alpha, c.d_sigma
    return zero, -1.0 / c.sigma


def determinant(param: Parameterization | str, c: Coefficients) -> Tensor:
    """``det = alpha b - sigma a``; zero exactly where ``(x0, eps)`` cannot be recovered."""
    a, b = target_coefficients(param, c)
    return c.alpha * b - c.sigma * a


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    """Coefficients of shape () or (B,) against a batch (B, ...), cast to its dtype."""
    v = v.to(device=like.device, dtype=like.dtype)
    return v.reshape(v.shape + (1,) * (like.dim() - v.dim())) if v.dim() else v


def add_noise(x0: Tensor, eps: Tensor, c: Coefficients) -> Tensor:
    """The forward process ``x_t = alpha_t x0 + sigma_t eps``."""
    return _bcast(c.alpha, x0) * x0 + _bcast(c.sigma, x0) * eps


def make_target(param: Parameterization | str, x0: Tensor, eps: Tensor, c: Coefficients) -> Tensor:
    """The training target ``a_t x0 + b_t eps``."""
    a, b = target_coefficients(param, c)
    return _bcast(a, x0) * x0 + _bcast(b, x0) * eps


def to_x0_eps(
    param: Parameterization | str,
    pred: Tensor,
    x_t: Tensor,
    c: Coefficients,
    on_singular: str = "raise",
    tol: float = 1e-7,
) -> tuple[Tensor, Tensor]:
    """Solve the 2x2 system for ``(x0_hat, eps_hat)``.

    Where ``|det| < tol`` the system is singular: ``on_singular="raise"`` raises
    :class:`SingularPredictionError`; ``"warn"`` warns and returns what is identifiable from
    ``x_t`` alone (at ``alpha = 0``: ``x0_hat = 0``, ``eps_hat = x_t / sigma`` — nothing of the image)."""
    a, b = target_coefficients(param, c)
    det = c.alpha * b - c.sigma * a
    singular = det.abs() < tol
    if bool(singular.any()):
        _report_singular(Parameterization(param), c, on_singular)
    safe = torch.where(singular, torch.ones_like(det), det)
    A, S, Av, Bv, D = (_bcast(v, x_t) for v in (c.alpha, c.sigma, a, b, safe))
    x0 = (Bv * x_t - S * pred) / D
    eps = (A * pred - Av * x_t) / D
    if bool(singular.any()):
        x0, eps = _singular_fallback(pred, x_t, c, _bcast(singular.to(x_t.dtype), x_t).bool(), x0, eps)
    return x0, eps


def _report_singular(param: Parameterization, c: Coefficients, on_singular: str) -> None:
    where = "alpha_t = 0 (zero terminal SNR)" if bool((c.alpha.abs() < 1e-7).any()) else "sigma_t = 0"
    msg = (f"{param.value}-prediction at {where} cannot recover the image: the 2x2 system is singular "
           f"(det = 0). Use v or flow prediction, or a schedule without zero terminal SNR.")
    if on_singular == "raise":
        raise SingularPredictionError(msg)
    if on_singular != "warn":
        raise ValueError(f"on_singular: expected 'raise' or 'warn', got {on_singular!r}")
    warnings.warn(msg, SingularPredictionWarning, stacklevel=3)


def _singular_fallback(pred, x_t, c, mask, x0, eps):
    """What ``x_t`` alone identifies where ``det = 0``: at alpha = 0 only the noise; at sigma = 0
    only the image."""
    S, A = _bcast(c.sigma, x_t), _bcast(c.alpha, x_t)
    no_signal = _bcast((c.alpha.abs() < 1e-7).to(x_t.dtype), x_t).bool() & mask
    no_noise = mask & ~no_signal
    x0 = torch.where(no_signal, torch.zeros_like(x0), torch.where(no_noise, x_t / A.clamp_min(1e-12), x0))
    eps = torch.where(no_signal, x_t / S.clamp_min(1e-12), torch.where(no_noise, torch.zeros_like(eps), eps))
    return x0, eps
