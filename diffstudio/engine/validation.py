"""Checks of a :class:`~diffstudio.engine.config.Config`, each error naming its field."""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffstudio.core.grids import CONTINUOUS_SPACINGS, DISCRETE_SPACINGS
from diffstudio.core.objectives import TIME_SAMPLINGS, WEIGHTINGS
from diffstudio.core.parameterization import PARAMETERIZATIONS
from diffstudio.core.samplers import SAMPLERS
from diffstudio.core.schedules import FAMILIES, ScheduleError

if TYPE_CHECKING:
    from diffstudio.engine.config import Config

MODEL_PRESETS = ("tiny", "small", "base")
PRECISIONS = ("fp32", "bf16", "fp16")


def _choice(errors, name: str, value, options) -> None:
    if value not in options:
        errors.append((name, f"{value!r} is not one of {', '.join(map(str, options))}"))


def _positive(errors, name: str, value, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        errors.append((name, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}"))


def _schedule(cfg: "Config", errors: list) -> None:
    s = cfg.schedule
    _choice(errors, "schedule.family", s.family, FAMILIES)
    if s.family not in FAMILIES:
        return
    try:
        s.build()
    except ScheduleError as e:
        name, _, msg = str(e).partition(": ")
        errors.append((f"schedule.{name}", msg or str(e)))


def _sampling(cfg: "Config", errors: list) -> None:
    s = cfg.sampling
    _choice(errors, "sampling.sampler", s.sampler, tuple(SAMPLERS))
    spacings = DISCRETE_SPACINGS if cfg.schedule.is_discrete else CONTINUOUS_SPACINGS
    _choice(errors, "sampling.spacing", s.spacing, spacings)
    _positive(errors, "sampling.steps", s.steps)
    if cfg.schedule.is_discrete and isinstance(s.steps, int) and s.steps > cfg.schedule.num_train_timesteps:
        errors.append(("sampling.steps", f"at most {cfg.schedule.num_train_timesteps} for this schedule"))
    _positive(errors, "sampling.num_samples", s.num_samples)
    _positive(errors, "sampling.guidance_scale", s.guidance_scale, allow_zero=True)
    if not 0.0 <= s.guidance_rescale <= 1.0:
        errors.append(("sampling.guidance_rescale", "must lie between 0 and 1"))
    _positive(errors, "sampling.eta", s.eta, allow_zero=True)


def _objective(cfg: "Config", errors: list) -> None:
    o = cfg.objective
    _choice(errors, "objective.parameterization", o.parameterization, PARAMETERIZATIONS)
    _choice(errors, "objective.weighting", o.weighting, WEIGHTINGS)
    _choice(errors, "objective.time_sampling", o.time_sampling, TIME_SAMPLINGS)
    _positive(errors, "objective.gamma", o.gamma)
    _positive(errors, "objective.logit_std", o.logit_std)
    _positive(errors, "objective.offset_noise", o.offset_noise, allow_zero=True)


def _training(cfg: "Config", errors: list) -> None:
    o, r, m, d = cfg.optim, cfg.run, cfg.model, cfg.data
    for name in ("batch_size", "lr", "grad_accum"):
        _positive(errors, f"optim.{name}", getattr(o, name))
    for name in ("warmup_steps", "weight_decay", "grad_clip"):
        _positive(errors, f"optim.{name}", getattr(o, name), allow_zero=True)
    if not 0.0 <= o.ema_decay < 1.0:
        errors.append(("optim.ema_decay", "must lie in [0, 1)"))
    _choice(errors, "optim.lr_schedule", o.lr_schedule, ("cosine", "constant"))
    for name in ("steps", "preview_every", "checkpoint_every", "log_every", "keep_checkpoints"):
        _positive(errors, f"run.{name}", getattr(r, name))
    _choice(errors, "run.precision", r.precision, PRECISIONS)
    _positive(errors, "run.threads", r.threads, allow_zero=True)
    _choice(errors, "model.preset", m.preset, MODEL_PRESETS)
    if not 0.0 <= m.cond_drop_prob < 1.0:
        errors.append(("model.cond_drop_prob", "must lie in [0, 1)"))
    if d.channels not in (None, 1, 3):
        errors.append(("data.channels", "must be 1 or 3"))
    if d.resolution is not None and (not isinstance(d.resolution, int) or d.resolution < 4):
        errors.append(("data.resolution", "must be an integer >= 4"))
    if not str(d.source).strip():
        errors.append(("data.source", "choose a built-in dataset or a folder"))
    _positive(errors, "data.memory_budget_mb", d.memory_budget_mb, allow_zero=True)


def validate(cfg: "Config") -> list[tuple[str, str]]:
    """All problems of ``cfg`` as ``[(dotted.field, message)]``; empty when it can run."""
    errors: list[tuple[str, str]] = []
    _schedule(cfg, errors)
    _objective(cfg, errors)
    _sampling(cfg, errors)
    _training(cfg, errors)
    return errors
