"""Training objectives: which t to train on, which noise, which target, how each t is weighted.

Weights are stated against x0-MSE: at fixed ``x_t`` an error in ``p`` is ``det / sigma`` times the
error in ``x0``, so a weight ``w_x0`` on x0-MSE is ``w_p = w_x0 (sigma / det)^2`` on p-MSE
(Hang et al. 2023, min-SNR-gamma, generalised to every parameterization)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

import math

import torch

from diffstudio.core.parameterization import (
    Coefficients,
    Parameterization,
    add_noise,
    make_target,
    target_coefficients,
)
from diffstudio.core.schedules import DiscreteSchedule, Schedule

Tensor = torch.Tensor


class Weighting(str, Enum):
    """How each t's loss is weighted, stated on x0-MSE (see the module doc): ``uniform`` (plain MSE
    on the prediction), ``min_snr`` (``min(SNR, gamma)``, Hang et al. 2023), ``snr_plus_one``
    (``SNR + 1``: the v-loss of Salimans & Ho 2022 stated on x0)."""
    UNIFORM = "uniform"  # plain MSE on the prediction
    MIN_SNR = "min_snr"  # w_x0 = min(SNR, gamma)
    SNR_PLUS_ONE = "snr_plus_one"  # w_x0 = SNR + 1 (the v-loss, stated on x0)


class TimeSampling(str, Enum):
    """How training draws t: ``uniform`` on [0, 1], or ``logit_normal``: ``t = sigmoid(m + s n)``,
    ``n ~ N(0, 1)`` (Esser et al. 2024, SD3)."""
    UNIFORM = "uniform"
    LOGIT_NORMAL = "logit_normal"  # t = sigmoid(m + s n), Esser et al. 2024


WEIGHTINGS = tuple(w.value for w in Weighting)
TIME_SAMPLINGS = tuple(s.value for s in TimeSampling)


def det_over_alpha(param: Parameterization | str, c: Coefficients) -> Tensor:
    """``det / alpha = b - a sigma / alpha``, written so it is exact where ``alpha = 0``."""
    a, b = target_coefficients(param, c)
    with torch.no_grad():
        ratio = torch.where(a == 0, b, b - a * c.sigma / c.alpha)
    return ratio


def det_over_sigma(param: Parameterization | str, c: Coefficients) -> Tensor:
    """``det / sigma = alpha b / sigma - a``, exact where ``sigma = 0`` for targets with ``b = 0``."""
    a, b = target_coefficients(param, c)
    with torch.no_grad():
        ratio = torch.where(b == 0, -a, c.alpha * b / c.sigma - a)
    return ratio


def loss_weight(
    weighting: Weighting | str,
    param: Parameterization | str,
    c: Coefficients,
    gamma: float = 5.0,
    max_weight: float = 1e4,
) -> Tensor:
    """Per-sample weight on the p-MSE, ``w_p = w_x0 (sigma / det)^2``, finite everywhere:

    ``min_snr``: ``min(SNR, g) (sigma/det)^2 = min(alpha^2, g sigma^2) / det^2``;
    ``snr_plus_one``: ``(SNR + 1) (sigma/det)^2 = (alpha^2 + sigma^2) / det^2``.
    Where ``det = 0`` (eps or score at alpha = 0) the limit is taken through ``det / alpha``
    (min_snr -> ``min(1, g / SNR) / (det/alpha)^2``, i.e. 1 for eps); an infinite weight is capped
    at ``max_weight``.
    On VP schedules ``min_snr`` gives Hang et al. 2023's Table 1 forms (eps ``min(SNR, g) / SNR``,
    v ``min(SNR, g) / (SNR + 1)``, x0 ``min(SNR, g)``); ``snr_plus_one`` is Salimans & Ho 2022's v-loss
    stated on x0. ``c`` holds (B,) times; returns float64 (B,). Raises ValueError for an unknown
    weighting or parameterization."""
    w = Weighting(weighting)
    if w is Weighting.UNIFORM:
        return torch.ones_like(c.alpha)
    a, b = target_coefficients(param, c)
    det = c.alpha * b - c.sigma * a
    if w is Weighting.MIN_SNR:
        num = torch.minimum(c.alpha**2, gamma * c.sigma**2)
    else:
        num = c.alpha**2 + c.sigma**2
    with torch.no_grad():
        regular = num / det.where(det != 0, torch.ones_like(det)) ** 2
        snr = c.alpha**2 / c.sigma**2
        if w is Weighting.MIN_SNR:  # w_x0 / SNR at alpha = 0; w_x0 itself at sigma = 0
            at_no_signal, at_no_noise = torch.clamp(gamma / snr, max=1.0), torch.clamp(snr, max=gamma)
        else:
            at_no_signal, at_no_noise = 1.0 + 1.0 / snr, snr + 1.0
        no_signal = at_no_signal / det_over_alpha(param, c) ** 2
        no_noise = at_no_noise / det_over_sigma(param, c) ** 2  # x0-prediction at t = 0
        weight = torch.where(det != 0, regular, torch.where(c.sigma == 0, no_noise, no_signal))
    return torch.nan_to_num(weight, nan=0.0, posinf=max_weight).clamp(max=max_weight)


def sample_times(
    schedule: Schedule,
    batch: int,
    generator: torch.Generator | None = None,
    sampling: TimeSampling | str = "uniform",
    m: float = 0.0,
    s: float = 1.0,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Training times (B,), float64 on the CPU (where schedule arithmetic runs). The random draw
    happens on ``device`` with ``generator`` (which must live there), in float32 so that every
    backend can make it. Discrete schedules get ``t = (i+1)/T`` for integer i.
    Raises ValueError for an unknown ``sampling``."""
    if TimeSampling(sampling) is TimeSampling.UNIFORM:
        u = torch.rand(batch, generator=generator, device=device).to("cpu", torch.float64)
    else:
        n = torch.randn(batch, generator=generator, device=device).to("cpu", torch.float64)
        u = torch.sigmoid(m + s * n)
    if isinstance(schedule, DiscreteSchedule):
        T = schedule.num_train_timesteps
        i = (u * T).floor().clamp(0, T - 1)
        return schedule.index_to_t(i)
    return u.clamp(1e-5, 1.0)


def time_density(t: Tensor, sampling: TimeSampling | str, m: float = 0.0, s: float = 1.0) -> Tensor:
    """The density of the training time ``t`` (same shape as ``t``, in (0, 1)) that
    :func:`sample_times` draws from. Uniform: 1. Logit-normal (Esser et al. 2024, eq. 19):
    ``p(t) = exp(-(logit t - m)^2 / (2 s^2)) / (s sqrt(2 pi) t (1 - t))``. Raises ``ValueError``
    for an unknown sampling."""
    if TimeSampling(sampling) is TimeSampling.UNIFORM:
        return torch.ones_like(t)
    logit = torch.log(t) - torch.log1p(-t)
    return torch.exp(-((logit - m) ** 2) / (2 * s**2)) / (s * math.sqrt(2 * math.pi) * t * (1 - t))


def sample_noise(x0: Tensor, generator: torch.Generator | None = None, offset: float = 0.0) -> Tensor:
    """``eps ~ N(0, I)``, plus offset noise ``offset * N(0, 1)`` shared over each channel's pixels
    (Guttenberg 2023) when ``offset > 0``."""
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    if offset > 0 and x0.dim() == 4:
        shape = (x0.shape[0], x0.shape[1], 1, 1)
        eps = eps + offset * torch.randn(shape, generator=generator, device=x0.device, dtype=x0.dtype)
    return eps


@dataclass(frozen=True)
class Objective:
    """One choice of parameterization, weighting and time sampling. The parameterization has no
    default here: the run's default lives once, in the settings description (engine/config.py).
    Raises ValueError for an unknown choice or a non-positive gamma / logit_std or negative offset."""

    parameterization: Parameterization
    weighting: Weighting = Weighting.UNIFORM
    gamma: float = 5.0
    time_sampling: TimeSampling = TimeSampling.UNIFORM
    logit_mean: float = 0.0
    logit_std: float = 1.0
    offset_noise: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameterization", Parameterization(self.parameterization))
        object.__setattr__(self, "weighting", Weighting(self.weighting))
        object.__setattr__(self, "time_sampling", TimeSampling(self.time_sampling))
        if self.gamma <= 0:
            raise ValueError(f"gamma: must be positive, got {self.gamma}")
        if self.logit_std <= 0:
            raise ValueError(f"logit_std: must be positive, got {self.logit_std}")
        if self.offset_noise < 0:
            raise ValueError(f"offset_noise: must be >= 0, got {self.offset_noise}")


ModelFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def diffusion_loss(
    model: ModelFn,
    schedule: Schedule,
    objective: Objective,
    x0: Tensor,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    eps: Tensor | None = None,
) -> Tensor:
    """The weighted denoising loss of one batch (a scalar). ``model(x_t, timestep, cond) -> p``.
    ``t`` (B,) and ``eps`` (like ``x0``) are drawn with ``generator`` unless given.
    The forward process, targets and weights are :func:`add_noise`, :func:`make_target` and
    :func:`loss_weight`; the model sees ``schedule.timestep(t)`` in float32."""
    if t is None:
        t = sample_times(schedule, x0.shape[0], generator, objective.time_sampling,
                         objective.logit_mean, objective.logit_std, x0.device)
    if eps is None:
        eps = sample_noise(x0, generator, objective.offset_noise)
    c = Coefficients.at(schedule, t)
    x_t = add_noise(x0, eps, c)
    target = make_target(objective.parameterization, x0, eps, c)
    # float32 whatever x0's dtype: bfloat16 would round timestep 999 to 1000 (8-bit mantissa)
    pred = model(x_t, schedule.timestep(t).to(device=x0.device, dtype=torch.float32), cond)
    per_sample = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    weight = loss_weight(objective.weighting, objective.parameterization, c, objective.gamma)
    return (weight.to(per_sample) * per_sample).mean()

