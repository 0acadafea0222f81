"""Checks of a :class:`~diffstudio.engine.config.Config`, each error naming its field.

Two passes. The field pass (type, range, finiteness, choice) is derived from the settings
description by :func:`diffstudio.engine.settings.field_errors`. The rules between fields
(a spacing that suits the schedule, a schedule that can be built, steps within T) run only on
sections whose fields passed, so a bad value is reported once, where it is, and ``validate`` never
raises."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from diffstudio.core.grids import CONTINUOUS_SPACINGS, DISCRETE_SPACINGS
from diffstudio.core.schedules import ScheduleError
from diffstudio.engine.settings import field_errors

if TYPE_CHECKING:
    from diffstudio.engine.config import Config

Rule = Callable[["Config", list], None]


def _schedule(cfg: "Config", errors: list) -> None:
    try:
        cfg.schedule.build()
    except ScheduleError as e:
        name, _, msg = str(e).partition(": ")
        field = name if name.startswith("schedule.") else f"schedule.{name.split('/')[0]}"
        errors.append((field if " " not in field else "schedule", msg or str(e)))


def _sampling(cfg: "Config", errors: list) -> None:
    s = cfg.sampling
    discrete = cfg.schedule.is_discrete
    spacings = DISCRETE_SPACINGS if discrete else CONTINUOUS_SPACINGS
    if s.spacing not in spacings:
        kind = "a beta (discrete) schedule" if discrete else "a continuous schedule"
        errors.append(("sampling.spacing", f"{s.spacing!r} does not apply to {kind}; use one of {', '.join(spacings)}"))
    if discrete and s.steps > cfg.schedule.num_train_timesteps:
        errors.append(("sampling.steps", f"at most {cfg.schedule.num_train_timesteps} (the schedule's T)"))


def _data(cfg: "Config", errors: list) -> None:
    if not cfg.data.source.strip():
        errors.append(("data.source", "choose a built-in dataset or a folder"))


def _paths(cfg: "Config", errors: list) -> None:
    """A VAE named by path must exist (its contents are checked when a run starts: models.vae).
    ``model.init_from`` is checked when a fresh run starts (engine.pretrained), not here: a run
    that resumes no longer needs the pretrained folder."""
    from pathlib import Path

    vae = cfg.data.vae.strip()
    if vae and not Path(vae).expanduser().exists():
        errors.append(("data.vae", f"{vae} does not exist (give a folder you have; nothing is downloaded)"))


# (sections whose fields a rule reads, rule)
RULES: tuple[tuple[tuple[str, ...], Rule], ...] = (
    (("schedule",), _schedule),
    (("schedule", "sampling"), _sampling),
    (("data",), _data),
    (("data",), _paths),
)


def validate(cfg: "Config") -> list[tuple[str, str]]:
    """All problems of ``cfg`` as ``[(dotted.field, message)]``; empty when it can run. Never raises."""
    errors = field_errors(cfg)
    bad_sections = {name.split(".", 1)[0] for name, _ in errors}
    for sections, rule in RULES:
        if bad_sections.intersection(sections):
            continue
        try:
            rule(cfg, errors)
        except Exception as e:  # a rule tripping over a value is still a message, never a crash
            errors.append((sections[-1], f"cannot be checked: {e}"))
    return errors
