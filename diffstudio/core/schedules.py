"""Noise schedules: ``x_t = alpha_t * x0 + sigma_t * eps`` with ``t`` from 0 (data) to 1 (noise).

Every schedule gives ``alpha(t)``, ``sigma(t)``, their t-derivatives, ``snr``, ``log_snr``, the
terminal signal ``alpha(1)`` and ``timestep(t)``, the value the model is fed. Arithmetic is float64.

Discrete schedules (betas over ``T`` steps, as in DDPM and diffusers) map index ``i`` to
``t = (i + 1) / T``; between those points ``alpha`` is interpolated linearly (``alpha(0) = 1``), so
the schedule is a function of continuous ``t`` too and samplers need no special case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import torch

from diffstudio.core.interpolate import linear_with_slope, monotone_cubic, pchip_slopes

Tensor = torch.Tensor
F64 = torch.float64

DISCRETE_FAMILIES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
CONTINUOUS_FAMILIES = ("flow", "cosine", "edm", "custom")
FAMILIES = DISCRETE_FAMILIES + CONTINUOUS_FAMILIES

# The published defaults of each beta schedule (DDPM, Stable Diffusion, diffusers' sigmoid).
DEFAULT_BETAS = {
    "linear": (1e-4, 0.02),
    "scaled_linear": (0.00085, 0.012),
    "squaredcos_cap_v2": (1e-4, 0.02),  # unused by the cosine formula; kept for a uniform API
    "sigmoid": (1e-4, 0.02),
}


class ScheduleError(ValueError):
    """A schedule's parameters are invalid; the message names the parameter."""


def _as_t(t: Tensor | float) -> Tensor:
    return torch.as_tensor(t, dtype=F64)


class Schedule:
    """Base class. Subclasses implement ``alpha_and_slope``; VP schedules derive sigma from alpha."""

    is_discrete: bool = False
    num_train_timesteps: int | None = None

    def alpha_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_t, d alpha_t / dt)``, float64 tensors shaped like ``t`` (float64, any shape, in
        [0, 1]). Every subclass implements it; here it raises NotImplementedError."""
        raise NotImplementedError

    def sigma_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Variance preserving by default: ``sigma = sqrt(1 - alpha^2)``."""
        return _vp_sigma(*self.alpha_and_slope(t))

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(alpha, d_alpha, sigma, d_sigma)`` at ``t`` in one evaluation where possible."""
        alpha, d_alpha = self.alpha_and_slope(t)
        if type(self).sigma_and_slope is Schedule.sigma_and_slope:  # variance preserving
            return (alpha, d_alpha, *_vp_sigma(alpha, d_alpha))
        return (alpha, d_alpha, *self.sigma_and_slope(t))

    def alpha(self, t: Tensor | float) -> Tensor:
        """``alpha_t``, the share of the clean image in ``x_t``; float64 shaped like ``t`` (a float
        gives a 0-d tensor)."""
        return self.alpha_and_slope(_as_t(t))[0]

    def sigma(self, t: Tensor | float) -> Tensor:
        """``sigma_t``: the share of the noise in ``x_t``; float64 shaped like ``t``."""
        return self.sigma_and_slope(_as_t(t))[0]

    def d_alpha(self, t: Tensor | float) -> Tensor:
        """``d alpha_t / dt``; float64 shaped like ``t``."""
        return self.alpha_and_slope(_as_t(t))[1]

    def d_sigma(self, t: Tensor | float) -> Tensor:
        """``d sigma_t / dt``; float64 shaped like ``t``."""
        return self.sigma_and_slope(_as_t(t))[1]

    def snr(self, t: Tensor | float) -> Tensor:
        """``SNR(t) = alpha_t^2 / sigma_t^2`` (inf at t=0, 0 at a zero-terminal-SNR end)."""
        t = _as_t(t)
        return self.alpha(t) ** 2 / self.sigma(t) ** 2

    def log_snr(self, t: Tensor | float) -> Tensor:
        """``lambda(t) = log SNR(t) = 2 log(alpha_t / sigma_t)``."""
        t = _as_t(t)
        return 2.0 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    @property
    def terminal_signal(self) -> float:
        """``alpha_1``: how much of the image is left at the last step (0 means ZTSNR)."""
        return float(self.alpha(1.0))

    @property
    def terminal_snr(self) -> float:
        """``SNR(1) = alpha_1^2 / sigma_1^2`` (0 under zero terminal SNR)."""
        return float(self.snr(1.0))

    def timestep(self, t: Tensor | float) -> Tensor:
        """The value the model is fed for time ``t`` (continuous schedules: ``1000 t``)."""
        return 1000.0 * _as_t(t)

    def time_of(self, timestep: Tensor | float) -> Tensor:
        """The inverse of :meth:`timestep`."""
        return _as_t(timestep) / 1000.0

    def describe(self) -> str:
        """The schedule's name and parameters in one line for people (plots, logs)."""
        return type(self).__name__


def _vp_sigma(alpha: Tensor, d_alpha: Tensor) -> tuple[Tensor, Tensor]:
    """``sigma = sqrt(1 - alpha^2)`` and ``d_sigma = -alpha d_alpha / sigma``."""
    sigma = (1.0 - alpha**2).clamp_min(0.0).sqrt()
    return sigma, -alpha * d_alpha / sigma.clamp_min(1e-12)


def _betas(family: str, T: int, beta_start: float, beta_end: float) -> Tensor:
    """The beta sequence of each family exactly as diffusers builds it (float32, then float64)."""
    if family == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float32).to(F64)
    if family == "scaled_linear":
        b = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
        return b.to(F64)
    if family == "sigmoid":
        s = torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float32))
        return (s * (beta_end - beta_start) + beta_start).to(F64)
    if family == "squaredcos_cap_v2":
        return _cosine_betas(T)
    raise ScheduleError(f"family: unknown beta schedule {family!r}; choose one of {DISCRETE_FAMILIES}")


def _cosine_betas(T: int, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021, eq. 17: ``alpha_bar(t) = cos^2((t + 0.008) / 1.008 * pi / 2)``."""

    def abar(x: float) -> float:
        return math.cos((x + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - abar((i + 1) / T) / abar(i / T), max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float32).to(F64)


def rescale_zero_terminal_snr(alphas_cumprod: Tensor) -> Tensor:
    """Lin et al. 2024, Algorithm 1: shift and scale ``sqrt(alpha_bar)`` so the last is exactly 0
    and the first is unchanged. Input and output: ``alpha_bar`` of shape (T,)."""
    root = alphas_cumprod.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    return root**2


@dataclass(frozen=True)
class DiscreteSchedule(Schedule):
    """A beta schedule over ``T`` steps (DDPM / Stable Diffusion / improved DDPM / sigmoid)."""

    family: str = "scaled_linear"
    num_train_timesteps: int = 1000
    beta_start: float | None = None
    beta_end: float | None = None
    ztsnr: bool = False
    is_discrete: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if self.family not in DISCRETE_FAMILIES:
            raise ScheduleError(f"family: {self.family!r} is not a beta schedule ({DISCRETE_FAMILIES})")
        if self.num_train_timesteps < 2:
            raise ScheduleError("num_train_timesteps: need at least 2 steps")
        start, end = self.betas_range
        if not (0.0 < start < 1.0 and 0.0 < end < 1.0):
            raise ScheduleError("beta_start/beta_end: betas must lie strictly between 0 and 1")
        if end <= start:
            raise ScheduleError(f"beta_end: must be greater than beta_start ({end} <= {start})")

    @property
    def betas_range(self) -> tuple[float, float]:
        """``(beta_start, beta_end)``: the given values, else the family's published defaults
        (:data:`DEFAULT_BETAS`)."""
        default = DEFAULT_BETAS[self.family] if self.family in DEFAULT_BETAS else (1e-4, 0.02)
        start = default[0] if self.beta_start is None else float(self.beta_start)
        end = default[1] if self.beta_end is None else float(self.beta_end)
        return start, end

    @cached_property
    def alphas_cumprod(self) -> Tensor:
        """``alpha_bar_i = prod_{j<=i} (1 - beta_j)``, shape (T,), float64."""
        abar = torch.cumprod(1.0 - _betas(self.family, self.num_train_timesteps, *self.betas_range), 0)
        return rescale_zero_terminal_snr(abar) if self.ztsnr else abar

    @cached_property
    def betas(self) -> Tensor:
        """``beta_i = 1 - alpha_bar_i / alpha_bar_(i-1)`` (``alpha_bar_(-1) = 1``), shape (T,), float64:
        the family's betas, or with ZTSNR those of the rescaled ``alpha_bar`` (the last is exactly 1), as
        diffusers' ``rescale_zero_terminal_snr`` returns them."""
        abar = self.alphas_cumprod
        return 1.0 - abar / torch.cat([abar.new_ones(1), abar[:-1]])

    @cached_property
    def _knots(self) -> tuple[Tensor, Tensor]:
        T = self.num_train_timesteps
        t = torch.arange(T + 1, dtype=F64) / T
        alpha = torch.cat([torch.ones(1, dtype=F64), self.alphas_cumprod.sqrt()])
        return t, alpha

    def alpha_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t`` linear between the knots ``(0, 1)`` and ``((i + 1) / T, sqrt(alpha_bar_i))``, and
        that segment's slope; float64 shaped like ``t``."""
        return linear_with_slope(t, *self._knots)

    def timestep(self, t: Tensor | float) -> Tensor:
        """Discrete index ``i = t T - 1`` (a float between the grid points)."""
        return _as_t(t) * self.num_train_timesteps - 1.0

    def time_of(self, timestep: Tensor | float) -> Tensor:
        """The inverse of :meth:`timestep`: ``t = (i + 1) / T`` for index ``i`` (float64)."""
        return (_as_t(timestep) + 1.0) / self.num_train_timesteps

    def index_to_t(self, i: Tensor) -> Tensor:
        """``t = (i + 1) / T`` for integer step indices ``i`` (any shape); float64."""
        return (i.to(F64) + 1.0) / self.num_train_timesteps

    def describe(self) -> str:
        """'scaled_linear (T=1000)', with ' + ZTSNR' when rescaled."""
        z = " + ZTSNR" if self.ztsnr else ""
        return f"{self.family} (T={self.num_train_timesteps}){z}"


@dataclass(frozen=True)
class FlowSchedule(Schedule):
    """Rectified flow (Liu et al. 2022; SD3): ``alpha = 1 - s(t)``, ``sigma = s(t)`` with the SD3
    time shift ``s(t) = shift t / (1 + (shift - 1) t)`` (Esser et al. 2024, eq. 23)."""

    shift: float = 1.0

    def __post_init__(self) -> None:
        if not self.shift > 0:
            raise ScheduleError(f"shift: must be positive, got {self.shift}")

    def _denominator(self, t: Tensor) -> Tensor:
        """``1 + (shift - 1) t`` written as ``(1 - t) + shift t``: exactly ``shift`` at t = 1."""
        return (1.0 - t) + self.shift * t

    def _shifted(self, t: Tensor) -> tuple[Tensor, Tensor]:
        denom = self._denominator(t)
        return self.shift * t / denom, self.shift / denom**2

    def alpha_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        # 1 - s(t) written as (1 - t) / denom: exactly 0 at t = 1 for every shift
        # (1 - s(1) rounds to -2e-16 for shift 0.1, and a negative alpha breaks log-SNR)
        """``alpha = 1 - s(t) = (1 - t) / (1 + (shift - 1) t)`` and ``-ds/dt``; float64 shaped like ``t``."""
        _, ds = self._shifted(t)
        return (1.0 - t) / self._denominator(t), -ds

    def sigma_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``sigma = s(t) = shift t / (1 + (shift - 1) t)`` (Esser et al. 2024, eq. 23) and
        ``ds/dt = shift / (1 + (shift - 1) t)^2``; float64 shaped like ``t``."""
        return self._shifted(t)

    def timestep(self, t: Tensor | float) -> Tensor:
        """diffusers' flow-matching convention: ``timestep = 1000 * sigma``."""
        return 1000.0 * self.sigma(t)

    def time_of(self, timestep: Tensor | float) -> Tensor:
        """The inverse of :meth:`timestep`: ``t`` whose shifted sigma is ``timestep / 1000``,
        ``t = s / (shift (1 - s) + s)`` (float64)."""
        s = _as_t(timestep) / 1000.0
        return s / (self.shift * (1.0 - s) + s)  # exactly 1 at s = 1

    def describe(self) -> str:
        """'rectified flow (shift 3)'."""
        return f"rectified flow (shift {self.shift:g})"


@dataclass(frozen=True)
class CosineSchedule(Schedule):
    """Continuous cosine VP schedule: ``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)``."""

    def alpha_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha = cos(pi t / 2)`` (exactly 0 from t = 1) and its slope; float64 shaped like ``t``."""
        alpha = torch.where(t >= 1.0, torch.zeros_like(t), torch.cos(0.5 * math.pi * t))
        return alpha, -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def sigma_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``sigma = sin(pi t / 2)`` and its slope; float64 shaped like ``t``."""
        return torch.sin(0.5 * math.pi * t), 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def describe(self) -> str:
        """'cosine (continuous)'."""
        return "cosine (continuous)"


@dataclass(frozen=True)
class EDMSchedule(Schedule):
    """Karras et al. 2022 (EDM) noise levels, variance-preserving form: with
    ``s(t) = (s_min^(1/rho) + t (s_max^(1/rho) - s_min^(1/rho)))^rho`` (their eq. 5),
    ``alpha = 1 / sqrt(1 + s^2)`` and ``sigma = s / sqrt(1 + s^2)``; uniform t gives Karras sigmas."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ScheduleError("sigma_max: must be greater than sigma_min > 0")
        if not self.rho > 0:
            raise ScheduleError("rho: must be positive")

    def ve_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(s(t), ds/dt)``: the variance-exploding noise level of Karras et al. 2022, eq. 5, run
        from ``sigma_min`` at t = 0 to ``sigma_max`` at t = 1; float64 shaped like ``t``."""
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        base = lo + t * (hi - lo)
        return base**self.rho, self.rho * base ** (self.rho - 1) * (hi - lo)

    def alpha_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha = 1 / sqrt(1 + s^2)`` of :meth:`ve_sigma`'s ``s`` and ``d alpha / dt =
        -s alpha^3 ds/dt``; float64 shaped like ``t``."""
        s, ds = self.ve_sigma(t)
        alpha = (1.0 + s**2).rsqrt()
        return alpha, -s * alpha**3 * ds

    def describe(self) -> str:
        """'EDM/Karras (sigma 0.002..80, rho 7)'."""
        return f"EDM/Karras (sigma {self.sigma_min:g}..{self.sigma_max:g}, rho {self.rho:g})"


@dataclass(frozen=True)
class CustomSchedule(Schedule):
    """A VP schedule given by control points of log-SNR over t, interpolated monotonically
    (Fritsch-Carlson). ``alpha^2 = sigmoid(lambda)``, ``sigma^2 = sigmoid(-lambda)``."""

    points: tuple[tuple[float, float], ...] = ((0.0, 10.0), (0.5, 0.0), (1.0, -10.0))

    def __post_init__(self) -> None:
        pts = self.points
        if len(pts) < 2:
            raise ScheduleError("points: need at least two control points")
        if any(b[0] <= a[0] for a, b in zip(pts, pts[1:])):
            raise ScheduleError("points: t values must be strictly increasing")
        if any(b[1] >= a[1] for a, b in zip(pts, pts[1:])):
            raise ScheduleError("points: log-SNR must strictly decrease as t grows (more noise)")
        if any(not math.isfinite(v) for p in pts for v in p):
            raise ScheduleError("points: control points must be finite numbers")

    @cached_property
    def _knots(self) -> tuple[Tensor, Tensor, Tensor]:
        xs = torch.tensor([p[0] for p in self.points], dtype=F64)
        ys = torch.tensor([p[1] for p in self.points], dtype=F64)
        return xs, ys, pchip_slopes(xs, ys)

    def lambda_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``lambda(t) = log SNR`` through the control points, and ``d lambda / dt``."""
        return monotone_cubic(t, *self._knots)

    def alpha_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha = sqrt(sigmoid(lambda))`` and its slope; float64 shaped like ``t``."""
        lam, dlam = self.lambda_and_slope(t)
        alpha = torch.sigmoid(lam).sqrt()
        return alpha, 0.5 * alpha * torch.sigmoid(-lam) * dlam

    def sigma_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``sigma = sqrt(sigmoid(-lambda))`` and its slope; float64 shaped like ``t``."""
        lam, dlam = self.lambda_and_slope(t)
        sigma = torch.sigmoid(-lam).sqrt()
        return sigma, -0.5 * sigma * torch.sigmoid(lam) * dlam

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(alpha, d_alpha, sigma, d_sigma)`` from one evaluation of ``lambda(t)``."""
        lam, dlam = self.lambda_and_slope(t)
        alpha2, sigma2 = torch.sigmoid(lam), torch.sigmoid(-lam)
        alpha, sigma = alpha2.sqrt(), sigma2.sqrt()
        return alpha, 0.5 * alpha * sigma2 * dlam, sigma, -0.5 * sigma * alpha2 * dlam

    def describe(self) -> str:
        """'custom (3 log-SNR points)'."""
        return f"custom ({len(self.points)} log-SNR points)"


@dataclass(frozen=True)
class ZeroTerminalSNR(Schedule):
    """Lin et al. 2024, Algorithm 1 for a continuous VP schedule: ``alpha`` shifted so that
    ``alpha(1) = 0`` and scaled so that ``alpha(0)`` is unchanged; ``sigma = sqrt(1 - alpha^2)``."""

    base: Schedule = field(default_factory=EDMSchedule)

    def alpha_and_slope(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha - alpha_1) * alpha_0 / (alpha_0 - alpha_1)`` of the base schedule (clamped at 0)
        and its slope; float64 shaped like ``t``."""
        a0, a1 = self.base.alpha(0.0), self.base.alpha(1.0)
        alpha, d_alpha = self.base.alpha_and_slope(t)
        scale = a0 / (a0 - a1)
        return ((alpha - a1) * scale).clamp_min(0.0), d_alpha * scale

    def timestep(self, t: Tensor | float) -> Tensor:
        """The base schedule's :meth:`~Schedule.timestep` (rescaling changes alpha, not the model's input)."""
        return self.base.timestep(t)

    def time_of(self, timestep: Tensor | float) -> Tensor:
        """The base schedule's :meth:`~Schedule.time_of`."""
        return self.base.time_of(timestep)

    def describe(self) -> str:
        """The base's description + ' + ZTSNR'."""
        return f"{self.base.describe()} + ZTSNR"


def make_schedule(
    family: str,
    *,
    ztsnr: bool = False,
    num_train_timesteps: int = 1000,
    beta_start: float | None = None,
    beta_end: float | None = None,
    shift: float = 1.0,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    points: tuple[tuple[float, float], ...] | None = None,
) -> Schedule:
    """Build a schedule from plain values (what configs, the CLI and the GUI hold): a
    :class:`DiscreteSchedule` for the beta families, else the continuous one, wrapped in
    :class:`ZeroTerminalSNR` when ``ztsnr`` (flow and cosine end at alpha = 0 already).
    Raises :class:`ScheduleError` for an unknown family or invalid parameters."""
    if family in DISCRETE_FAMILIES:
        return DiscreteSchedule(family, num_train_timesteps, beta_start, beta_end, ztsnr)
    if family == "flow":
        return FlowSchedule(shift)  # alpha(1) = 0 already
    if family == "cosine":
        return CosineSchedule()  # alpha(1) = 0 already
    if family == "edm":
        base: Schedule = EDMSchedule(sigma_min, sigma_max, rho)
    elif family == "custom":
        base = CustomSchedule(tuple(tuple(map(float, p)) for p in points) if points else CustomSchedule().points)
    else:
        raise ScheduleError(f"family: unknown schedule {family!r}; choose one of {', '.join(FAMILIES)}")
    return ZeroTerminalSNR(base) if ztsnr else base
