"""Validation by noise level: the model's error at fixed times t on held-out data, on a scale that
is the same for every parameterization.

Every prediction converts to ``(x0_hat, eps_hat)`` (:func:`~diffstudio.core.parameterization.to_x0_eps`),
so the MSE of ``x0_hat`` against the held-out ``x0`` at a fixed t compares an eps run with a v run,
and shows where in t a model fails (the lesson of Lin et al. 2024: near a zero-SNR terminal an eps
model's x0 estimate falls apart, a v model's stays at the data mean). Per t we report:

- ``loss``: the objective's own loss (its target, units and weighting) at that t;
- ``x0_mse``: ``mean ||x0_hat - x0||^2 / D``; ``eps_mse``: the same for ``eps_hat`` against ``eps``;
  both ``None`` where the 2x2 system is singular (``det = 0``: eps or score at ``alpha_t = 0``),
  with the reason in ``undefined`` — never a huge number;
- ``x0_mse_mean``: the x0-MSE averaged with uniform weight in t (the trapezoid rule over the grid
  points where it is defined, divided by their t-span).

The set is fixed: the same held-out items, the same noise (a CPU generator seeded from
``data.val_seed``, one stream per grid point) and the same grid, so the curve moves only when the
model does. Runs without gradients. Qt-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from diffstudio.core.objectives import Objective, loss_weight, sample_noise
from diffstudio.core.parameterization import Coefficients, add_noise, determinant, make_target, to_x0_eps
from diffstudio.core.schedules import Schedule

ModelFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]
CONTINUOUS_CANDIDATES = 4096  # continuous schedules: the grid is picked from t = k / 4096
SINGULAR_TOL = 1e-7  # |det| below this is singular (as in to_x0_eps)
NOISE_STREAM = 7919  # offset of the validation noise seeds from data.val_seed * 1000


def validation_times(schedule: Schedule, count: int = 20) -> Tensor:
    """``count`` times, ascending, float64 (K,), spread uniformly in log-SNR over the schedule's
    finite range and always ending at ``t = 1``. Each is snapped to the nearest time the schedule
    trains on (``t = (i+1)/T`` for a beta schedule, ``k/4096`` for a continuous one). Where the
    log-SNR at t = 1 is finite, t = 1 is the grid's last point; at zero terminal SNR (log-SNR -inf)
    ``count - 1`` points cover the finite range below it and t = 1 is added. Fewer when the
    schedule has fewer distinct times. Raises ValueError for ``count < 2``."""
    if count < 2:
        raise ValueError(f"validation_times: need at least 2 times, got {count}")
    if schedule.is_discrete:
        T = int(schedule.num_train_timesteps)
        cand = (torch.arange(T, dtype=torch.float64) + 1.0) / T
    else:
        cand = torch.arange(1, CONTINUOUS_CANDIDATES + 1, dtype=torch.float64) / CONTINUOUS_CANDIDATES
    lam = schedule.log_snr(cand)
    ok = torch.isfinite(lam)
    terminal_finite = bool(ok[-1])
    cand, lam = cand[ok], lam[ok]
    targets = torch.linspace(float(lam.max()), float(lam.min()), count if terminal_finite else count - 1,
                             dtype=torch.float64)
    picks = (lam[None, :] - targets[:, None]).abs().argmin(1)
    times = torch.unique(cand[picks])
    return times if terminal_finite else torch.cat([times, torch.ones(1, dtype=torch.float64)])


def singular_reason(param: str, schedule: Schedule, t: float) -> str | None:
    """Why ``(x0, eps)`` cannot be recovered from a ``param`` prediction at time ``t``, or None."""
    c = Coefficients.at(schedule, float(t))
    if float(determinant(param, c).abs()) >= SINGULAR_TOL:
        return None
    where = "alpha_t = 0 (zero terminal SNR)" if float(c.alpha.abs()) < SINGULAR_TOL else "sigma_t = 0"
    return (f"{param}-prediction at t = {float(t):g}: {where} makes the conversion to (x0, eps) singular "
            f"(det = 0); the prediction carries no information about the image")


@dataclass(frozen=True)
class ValidationSet:
    """The fixed evaluation set: ``x0`` (N, ...) held-out items on the model's device, ``cond``
    (N,) their labels for a class-conditional model (else None), ``times`` (K,) float64, and
    ``seed`` of the noise (grid point k draws its noise from ``seed * 1000 + NOISE_STREAM + k``)."""

    x0: Tensor
    cond: Tensor | None
    times: Tensor
    seed: int = 0
    offset_noise: float = 0.0

    def noise(self, k: int) -> Tensor:
        """The noise of grid point ``k`` (like ``x0``), drawn on the CPU: identical on every device."""
        g = torch.Generator().manual_seed((self.seed * 1000 + NOISE_STREAM + k) % 2**63)
        eps = sample_noise(torch.empty(self.x0.shape, dtype=torch.float32), g, self.offset_noise)
        return eps.to(self.x0.device)


def make_validation_set(data, schedule: Schedule, *, count: int, items: int, seed: int,
                        conditional: bool, offset_noise: float = 0.0) -> ValidationSet | None:
    """The first ``items`` items of ``data`` (an InMemoryDataset of held-out items) at
    :func:`validation_times` ``(schedule, count)``; None when ``data`` is empty or None."""
    if data is None or len(data) == 0:
        return None
    n = min(items, len(data))
    cond = data.labels[:n] if (conditional and data.labels is not None) else None
    x0 = data.x[:n]
    if x0.dtype == torch.uint8:  # held-out images stored as uint8 (as the training data): data units
        from diffstudio.data.pixels import uint8_to_unit_range

        x0 = uint8_to_unit_range(x0)
    return ValidationSet(x0, cond, validation_times(schedule, count), seed, offset_noise)


@dataclass(frozen=True)
class ValidationResult:
    """One evaluation. Lists are per grid time; ``None`` marks an undefined value (see
    ``undefined``: ``[{"t": t, "reason": text}]``). ``log_snr`` is None where infinite."""

    step: int
    model: str
    parameterization: str
    t: list[float]
    log_snr: list[float | None]
    loss: list[float | None]
    x0_mse: list[float | None]
    eps_mse: list[float | None]
    x0_mse_mean: float | None
    items: int
    undefined: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The metrics.jsonl payload (JSON-safe: None, never NaN or inf)."""
        return {"model": self.model, "parameterization": self.parameterization, "items": self.items,
                "t": self.t, "log_snr": self.log_snr, "loss": self.loss, "x0_mse": self.x0_mse,
                "eps_mse": self.eps_mse, "x0_mse_mean": self.x0_mse_mean, "undefined": self.undefined}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ValidationResult | None":
        """Read back a metrics row ``{"step": s, "validation": {...}}``; None if it is not one."""
        v = row.get("validation") if isinstance(row, dict) else None
        if not isinstance(v, dict) or not isinstance(v.get("t"), list):
            return None
        try:
            return cls(int(row.get("step", 0)), str(v.get("model", "")), str(v.get("parameterization", "")),
                       list(v["t"]), list(v.get("log_snr") or [None] * len(v["t"])), list(v["loss"]),
                       list(v["x0_mse"]), list(v["eps_mse"]), v.get("x0_mse_mean"), int(v.get("items", 0)),
                       list(v.get("undefined") or []))
        except (KeyError, TypeError, ValueError):
            return None


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def x0_mse_mean(t: list[float], x0_mse: list[float | None]) -> float | None:
    """The x0-MSE averaged with uniform weight in t: trapezoid rule over the points where it is
    defined, divided by their t-span (their value when there is one point; None for none)."""
    pts = [(a, b) for a, b in zip(t, x0_mse) if b is not None]
    if not pts:
        return None
    if len(pts) == 1 or pts[-1][0] == pts[0][0]:
        return float(pts[0][1])
    area = sum(0.5 * (b1 + b2) * (a2 - a1) for (a1, b1), (a2, b2) in zip(pts, pts[1:]))
    return _finite(area / (pts[-1][0] - pts[0][0]))


@torch.no_grad()
def evaluate(model: ModelFn, schedule: Schedule, objective: Objective, vset: ValidationSet, *,
             step: int = 0, model_name: str = "ema", batch_size: int = 256) -> ValidationResult:
    """Evaluate ``model(x_t, timestep, cond) -> prediction`` on the fixed set ``vset`` (see the
    module docstring). Runs under ``torch.no_grad``; ``batch_size`` items per forward pass."""
    param = objective.parameterization.value
    out: dict[str, list] = {"loss": [], "x0_mse": [], "eps_mse": []}
    undefined = []
    times = [float(t) for t in vset.times]
    for k, t in enumerate(times):
        reason = singular_reason(param, schedule, t)
        sums = _sums_at(model, schedule, objective, vset, k, t, batch_size, reason is None)
        n = vset.x0.shape[0]
        out["loss"].append(_finite(sums[0] / n))
        out["x0_mse"].append(None if reason else _finite(sums[1] / n))
        out["eps_mse"].append(None if reason else _finite(sums[2] / n))
        if reason:
            undefined.append({"t": t, "reason": reason})
        elif any(v is None for v in (out["loss"][-1], out["x0_mse"][-1], out["eps_mse"][-1])):
            undefined.append({"t": t, "reason": f"the model's output at t = {t:g} is not finite"})
    lam = [_finite(float(v)) for v in schedule.log_snr(vset.times)]
    return ValidationResult(step, model_name, param, times, lam, out["loss"], out["x0_mse"], out["eps_mse"],
                            x0_mse_mean(times, out["x0_mse"]), int(vset.x0.shape[0]), undefined)


def _sums_at(model, schedule, objective, vset, k, t, batch_size, convert) -> tuple[float, float, float]:
    """Sums over the items of (weighted p-MSE, x0-MSE, eps-MSE) at grid point k (time t)."""
    param = objective.parameterization
    eps_all = vset.noise(k)
    total = [0.0, 0.0, 0.0]
    for lo in range(0, vset.x0.shape[0], batch_size):
        x0, eps = vset.x0[lo:lo + batch_size], eps_all[lo:lo + batch_size]
        cond = None if vset.cond is None else vset.cond[lo:lo + batch_size]
        tt = torch.full((x0.shape[0],), t, dtype=torch.float64)
        c = Coefficients.at(schedule, tt)
        x_t = add_noise(x0, eps, c)
        pred = model(x_t, schedule.timestep(tt).to(device=x0.device, dtype=torch.float32), cond).float()
        per_item = (pred - make_target(param, x0, eps, c)).pow(2).flatten(1).mean(1)
        w = loss_weight(objective.weighting, param, c, objective.gamma).to(per_item)
        total[0] += float((w * per_item).double().sum())
        if convert:
            x0_hat, eps_hat = to_x0_eps(param, pred, x_t, c, on_singular="raise", tol=SINGULAR_TOL)
            total[1] += float((x0_hat - x0).double().pow(2).flatten(1).mean(1).sum())
            total[2] += float((eps_hat - eps).double().pow(2).flatten(1).mean(1).sum())
    return total[0], total[1], total[2]


def summary_line(result: ValidationResult) -> str:
    """One line for a terminal: the summary and the two ends of the curve."""
    def f(v):
        return "undefined" if v is None else f"{v:.4g}"

    return (f"validation at step {result.step} ({result.model}, {result.items} items): x0-MSE mean "
            f"{f(result.x0_mse_mean)}; at t={result.t[0]:.3g} {f(result.x0_mse[0])}, "
            f"at t={result.t[-1]:g} {f(result.x0_mse[-1])}")


__all__ = ["ValidationSet", "ValidationResult", "validation_times", "singular_reason", "make_validation_set",
           "evaluate", "x0_mse_mean", "summary_line"]
