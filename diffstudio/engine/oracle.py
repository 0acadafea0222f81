"""Oracle previews: what a *perfect* model would sample under a config, before any training.

For two data sets the exact denoiser ``E[x0 | x_t]`` is known in closed form:

- ``gaussians8``: a mixture of isotropic Gaussians ``sum_k w_k N(mu_k, s^2 I)``. Given component k,
  ``x_t ~ N(alpha mu_k, (alpha^2 s^2 + sigma^2) I)`` and ``E[x0 | x_t, k]`` is the Gaussian posterior
  mean; the mixture posterior weights them by the responsibilities.
- ``lighting-flat``: constant images ``x0 = b 1`` with ``b ~ U(low, high)``. The pixel mean
  ``m = mean(x_t) ~ N(alpha b, sigma^2 / D)`` is a sufficient statistic, so ``b | x_t`` is a normal
  ``N(m / alpha, sigma^2 / (D alpha^2))`` truncated to ``[low, high]``.

:func:`oracle_preview` wraps the posterior mean with :func:`diffstudio.core.denoiser.oracle_model`
in the config's parameterization and runs the config's sampler over its grid, so the result shows
exactly what the schedule, the spacing, the parameterization and the step count allow: a
non-zero terminal SNR with ``leading`` spacing squeezes the brightness range; eps-prediction at
zero terminal SNR cannot recover anything at ``t = 1`` (reported in ``warnings``).
Qt-free; float64 throughout.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from diffstudio.core.denoiser import Denoiser, oracle_model
from diffstudio.core.grids import sampling_grid
from diffstudio.core.parameterization import Coefficients, SingularPredictionWarning
from diffstudio.core.samplers import sample
from diffstudio.data.pixels import image_grid
from diffstudio.engine.preview import Preview

Tensor = torch.Tensor
F64 = torch.float64

ORACLE_SOURCES = ("gaussians8", "lighting-flat")
FLAT_DEFAULT_RESOLUTION = 32
FLAT_DEFAULT_CHANNELS = 1
_NEARLY_FLAT = 1e4  # posterior std (in b units) above which the prior dominates (see below)


def has_oracle(source: str) -> bool:
    """Whether the exact denoiser of data source ``source`` is known."""
    return source in ORACLE_SOURCES


# --------------------------------------------------------------------------- posterior means


def _per_sample(v, batch: int) -> Tensor:
    """A coefficient given as a float, a 0-d tensor or one value per sample -> float64 (B,)."""
    v = torch.as_tensor(v, dtype=F64).reshape(-1)
    return v.expand(batch) if v.numel() == 1 else v.reshape(batch)


def mixture_posterior_mean(x_t: Tensor, alpha, sigma, means: Tensor, std: float, weights: Tensor) -> Tensor:
    """``E[x0 | x_t]`` for ``x0 ~ sum_k w_k N(mu_k, std^2 I)``, ``x_t = alpha x0 + sigma eps``.

    ``x_t`` (B, D); ``alpha``, ``sigma`` floats or one per sample; ``means`` (K, D), ``weights``
    (K,). Returns (B, D) in ``x_t``'s dtype."""
    x = x_t.to(F64)
    batch = x.shape[0]
    a, s = _per_sample(alpha, batch)[:, None, None], _per_sample(sigma, batch)
    mu = means.to(F64)
    var = (a[:, 0, 0] ** 2 * std**2 + s**2)[:, None]  # per-axis variance of x_t given a component
    diff = x[:, None, :] - a * mu[None]  # (B, K, D)
    logits = torch.log(weights.to(F64))[None] - 0.5 * diff.pow(2).sum(-1) / var
    resp = torch.softmax(logits, dim=1)  # p(k | x_t)
    gain = (a[:, 0, 0:1] * std**2 / var)[:, :, None]
    cond_mean = mu[None] + gain * diff  # E[x0 | x_t, k]
    return (resp[..., None] * cond_mean).sum(1).to(x_t.dtype)


def truncated_normal_mean(mu: Tensor, s, low: float, high: float) -> Tensor:
    """Mean of ``N(mu, s^2)`` truncated to ``[low, high]``, computed in log space (stable in both
    tails): ``mu + s (phi(a) - phi(b)) / (Phi(b) - Phi(a))`` with ``a, b = (low|high - mu) / s``.
    ``s`` is a float or broadcasts against ``mu``; ``s = 0`` gives ``mu`` clamped to the interval."""
    mu = torch.as_tensor(mu, dtype=F64)
    s = torch.as_tensor(s, dtype=F64).expand_as(mu)
    mid, width = 0.5 * (low + high), high - low
    safe = torch.where(s > 0, s, torch.ones_like(s))
    a, b = (low - mu) / safe, (high - mu) / safe
    flip = a > 0  # both ends in the right tail: reflect so that a <= 0 and log_ndtr is accurate
    a, b = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_cdf_a, log_cdf_b = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    log_z = log_cdf_b + torch.log(-torch.expm1(log_cdf_a - log_cdf_b))
    log_pdf = lambda x: -0.5 * x**2 - 0.5 * math.log(2 * math.pi)  # noqa: E731
    ratio = torch.exp(log_pdf(a) - log_z) - torch.exp(log_pdf(b) - log_z)
    centred = torch.where(flip, -mu, mu) + safe * ratio
    closed = torch.where(flip, -centred, centred)
    # a nearly flat likelihood is a tilt exp(k b) over the interval: mean = mid + k w^2 / 12
    tilt = mid + (mu - mid) / safe**2 * width**2 / 12.0
    out = torch.where(s > _NEARLY_FLAT * width, tilt, closed)
    return torch.where(s > 0, out, mu.clamp(low, high))


def flat_posterior_mean(x_t: Tensor, alpha, sigma, low: float = -1.0, high: float = 1.0) -> Tensor:
    """``E[x0 | x_t]`` for constant images ``x0 = b 1``, ``b ~ U(low, high)``; ``x_t`` (B, ...).

    With ``D`` values per image, ``m = mean(x_t) ~ N(alpha b, sigma^2 / D)``; the posterior of ``b``
    is ``N(m / alpha, sigma^2 / (D alpha^2))`` truncated to the prior's interval. Where
    ``alpha = 0`` nothing is known and the answer is the prior mean. ``alpha``, ``sigma``: floats
    or one per sample."""
    batch, D = x_t.shape[0], x_t[0].numel()
    m = x_t.flatten(1).to(F64).mean(1)
    a, s = _per_sample(alpha, batch), _per_sample(sigma, batch)
    known = a > 0
    a_safe = torch.where(known, a, torch.ones_like(a))
    b = truncated_normal_mean(m / a_safe, s / (a_safe * math.sqrt(D)), low, high)
    b = torch.where(known, b, torch.full_like(b, 0.5 * (low + high)))
    return b.reshape((-1,) + (1,) * (x_t.dim() - 1)).expand_as(x_t).to(x_t.dtype)


# --------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class OracleData:
    """The exact posterior mean of one data set and the shape of one sample."""

    name: str
    kind: str  # "image" | "points"
    shape: tuple[int, ...]  # one sample
    x0_fn: Callable[[Tensor, Coefficients], Tensor]
    data_std: float  # population std of the statistic the preview reports (brightness / per axis)


def oracle_data(source: str, resolution: int | None = None, channels: int | None = None) -> OracleData:
    """The exact denoiser of ``source`` (one of :data:`ORACLE_SOURCES`).
    Raises ValueError for any other source."""
    if source == "gaussians8":
        from diffstudio.data.toys import gaussians8_mixture

        means, std, weights = gaussians8_mixture()

        def mixture(x: Tensor, c: Coefficients) -> Tensor:
            return mixture_posterior_mean(x, c.alpha, c.sigma, means, std, weights)

        return OracleData("gaussians8", "points", (2,), mixture, 1.0)
    if source == "lighting-flat":
        low, high = _brightness_range()
        res = resolution or FLAT_DEFAULT_RESOLUTION
        ch = channels or FLAT_DEFAULT_CHANNELS

        def flat(x: Tensor, c: Coefficients) -> Tensor:
            return flat_posterior_mean(x, c.alpha, c.sigma, low, high)

        return OracleData("lighting-flat", "image", (ch, res, res), flat, (high - low) / math.sqrt(12.0))
    raise ValueError(f"no exact denoiser is known for {source!r}; oracle data sets: {', '.join(ORACLE_SOURCES)}")


def _brightness_range() -> tuple[float, float]:
    try:
        from diffstudio.data.lighting import lighting_brightness_range
    except ImportError:  # pragma: no cover - the data package is always there in a full install
        return -1.0, 1.0
    return lighting_brightness_range()


# --------------------------------------------------------------------------- the preview


OraclePreview = Preview
"""The oracle returns the engine's one preview type (``source="oracle"``); the old name stays."""


def oracle_preview(config, n: int = 16, seed: int = 0, *, grid_count: int | None = None,
                   dtype: torch.dtype = F64) -> OraclePreview:
    """Sample ``n`` items with the exact denoiser of ``config.data.source`` under ``config``'s
    schedule, parameterization, sampler, steps and spacing, from seed ``seed``. The image grid
    shows the first ``grid_count`` samples (all by default); ``spread`` uses all ``n``.

    Like diffusers, sampling starts from pure noise ``N(0, I)`` at the grid's first time, whatever
    that time's true marginal is: that mismatch is what non-zero terminal SNR and ``leading``
    spacing cost. Raises ``ValueError`` for data without an oracle and ``ScheduleError`` for an
    invalid schedule or grid."""
    data = oracle_data(config.data.source, config.data.resolution, config.data.channels)
    schedule = config.schedule.build()
    s = config.sampling
    grid = sampling_grid(schedule, int(s.steps), s.spacing, shift=float(s.shift))
    param = config.objective.parameterization
    denoiser = Denoiser(oracle_model(data.x0_fn, schedule, param), schedule, param, on_singular="warn")
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.randn((int(n),) + data.shape, generator=gen, dtype=dtype)
    trajectory: list = []

    def record(i: int, t: float, x_t: Tensor, x0_hat: Tensor) -> None:
        trajectory.append((float(t), x_t[0].float().numpy().copy(), x0_hat[0].float().numpy().copy()))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SingularPredictionWarning)
        out = sample(s.sampler, denoiser, x, grid, schedule, eta=float(s.eta), generator=gen, callback=record)
    messages = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, SingularPredictionWarning)))
    return _package(data, out, trajectory, grid, messages, schedule.describe(), param, s, grid_count)


def _package(data: OracleData, out: Tensor, trajectory: list, grid: Tensor, messages: list[str],
             schedule_text: str, param: str, s, grid_count: int | None) -> OraclePreview:
    samples = out.float().numpy()
    title = f"perfect {param}-model, {schedule_text}, {s.sampler} {s.steps} steps ({s.spacing})"
    common = dict(trajectory=trajectory, data_std=data.data_std, grid_times=grid.numpy(),
                  warnings=messages, title=title, source="oracle")
    if data.kind == "points":
        spread = float(np.mean(samples.std(axis=0))) / data.data_std if len(samples) > 1 else float("nan")
        return Preview(0, "points", samples, spread=spread, **common)
    brightness = samples.reshape(len(samples), -1).mean(axis=1)
    spread = float(brightness.std()) / data.data_std if len(samples) > 1 else float("nan")
    return Preview(0, "image", samples, grid=image_grid(samples[:grid_count]), mean_brightness=brightness,
                         spread=spread, **common)
