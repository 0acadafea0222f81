"""Plain-language advice about a configuration (and its data), for every front end.

Pure functions over a :class:`~diffstudio.engine.config.Config`: the Trainer sends the result to
its hooks' ``on_message`` at the start of a run (the CLI prints it, the app's log shows it), and
the app's panels can show the same words while settings are edited. Each function returns a list
of :class:`Advice`; none raises on a config that does not validate (it then says less)."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any

SINGULAR_AT_T1 = {
    "eps": ("eps-prediction cannot recover the image at t = 1: with zero terminal SNR the input there is "
            "pure noise, and removing noise from pure noise leaves nothing (det = alpha = 0)"),
    "score": ("score prediction cannot recover the image at t = 1: with zero terminal SNR the score of pure "
              "noise says nothing about the image (det = -alpha/sigma = 0)"),
}
"""Why each prediction is singular where alpha_t = 0 (DESIGN.md's table of det = alpha*b - sigma*a)."""


@dataclass(frozen=True)
class Advice:
    """One message. ``level``: "warning" (the run or its sampling will go wrong) or "info";
    ``field``: the dotted setting it is about (for a GUI to mark), or "" for the data."""

    level: str
    field: str
    text: str


def _terminal_signal(cfg) -> float | None:
    try:
        return float(cfg.schedule.build().terminal_signal)
    except Exception:  # an invalid schedule: validation reports it, advice says nothing
        return None


def _grid_starts_at_pure_noise(cfg) -> bool | None:
    """Whether the configured sampling grid's first time has alpha_t = 0 (None if unknown)."""
    try:
        from diffstudio.core.grids import sampling_grid

        schedule = cfg.schedule.build()
        s = cfg.sampling
        grid = sampling_grid(schedule, int(s.steps), s.spacing, shift=s.shift)
        return float(schedule.alpha(grid[:1])[0]) < 1e-7
    except Exception:
        return None


def singular_prediction(cfg) -> list[Advice]:
    """eps or score prediction on a zero-terminal-SNR schedule: the 2x2 system that turns the
    prediction into (x0, eps) is singular at t = 1. When the configured sampling grid starts there
    (trailing or linspace spacing; uniform on a continuous schedule) ``sample`` refuses to run, and
    the previews of training show nothing of the image."""
    param = cfg.objective.parameterization
    if param not in SINGULAR_AT_T1:
        return []
    signal = _terminal_signal(cfg)
    if signal is None or signal > 1e-9:
        return []
    starts = _grid_starts_at_pure_noise(cfg)
    if starts:
        then = (f"; sampling with {cfg.sampling.spacing!r} spacing starts at t = 1, where the sampler cannot "
                f"recover the image (`diffstudio sample` refuses)")
    else:
        then = "; a sampler that starts at t = 1 (trailing spacing) cannot recover the image there"
    return [Advice("warning", "objective.parameterization",
                   SINGULAR_AT_T1[param] + then + ". Use v or flow prediction, or a schedule without zero terminal SNR.")]


def flow_shift(cfg) -> list[Advice]:
    """Rectified flow with ``schedule.shift != 1``: the known limit (README, Known limits)."""
    s = cfg.schedule
    shift = getattr(s, "shift", 1.0)
    if s.family != "flow" or not isinstance(shift, (int, float)) or not math.isfinite(shift) or shift == 1.0:
        return []
    return [Advice("warning", "schedule.shift",
                   f"rectified flow with shift {shift:g} trains the derivative of the shifted path, not SD3's "
                   f"target (README: Known limits): `diffstudio export --format diffusers` refuses such a model; "
                   f"use shift 1 to export it to diffusers")]


def skipped_files(dataset: Any, source: str = "") -> list[Advice]:
    """How many files the data loader skipped, with a pointer to ``dataset inspect`` for the
    reasons. ``dataset``: anything with a ``skipped`` list (InMemoryDataset), or None."""
    skipped = list(getattr(dataset, "skipped", None) or [])
    if not skipped:
        return []
    first = skipped[0]
    file, reason = getattr(first, "file", first), getattr(first, "reason", "")
    where = f" {shlex.quote(source)}" if source else ""
    return [Advice("warning", "data.source",
                   f"{len(skipped)} file(s) of the dataset were skipped (first: {file!s}: {reason}); "
                   f"`diffstudio dataset inspect{where}` lists every one with its reason")]


def dataset_notes(dataset: Any) -> list[Advice]:
    """The loader's one-line notes (dropped empty classes, the native resolution chosen and the
    image sizes found, upscaling): ``dataset.notes``, when it has them."""
    return [Advice("info", "data.source", str(n)) for n in (getattr(dataset, "notes", None) or [])]


def training_advice(cfg, dataset: Any = None) -> list[Advice]:
    """Everything worth saying before training ``cfg`` on ``dataset``, warnings first."""
    items = (singular_prediction(cfg) + flow_shift(cfg) + skipped_files(dataset, str(cfg.data.source))
             + dataset_notes(dataset))
    return sorted(items, key=lambda a: a.level != "warning")


__all__ = ["Advice", "SINGULAR_AT_T1", "dataset_notes", "flow_shift", "singular_prediction", "skipped_files", "training_advice"]
