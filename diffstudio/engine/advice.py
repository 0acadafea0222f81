"""Plain-language advice about a configuration (and its data), for every front end.

Pure functions over a :class:`~diffstudio.engine.config.Config`, no Qt, nothing printed:

- :func:`training_advice` ``(config, dataset) -> [Advice]``: what the Trainer sends to its hooks'
  ``on_message`` at the start of a run (the CLI prints it, the app's log shows it): eps/score
  prediction made singular by zero terminal SNR, rectified flow with a shift, skipped files, the
  loader's notes.
- :func:`objective_advice` ``(config) -> (warnings, notes)``: the same warnings plus notes, for the
  Objective panel while settings are edited.
- :func:`run_advice` ``(config, stats) -> [str]``: after a run (or one of its previews), what its
  samples' brightness spread says and which of Lin et al.'s fixes the run does *not* use yet.

None raises on a config that does not validate (it then says less)."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from diffstudio.core.grids import sampling_grid
from diffstudio.core.schedules import DISCRETE_FAMILIES, ScheduleError

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


BETA_RANGE_FAMILIES = ("linear", "scaled_linear", "sigmoid")
"""Beta schedules built from ``beta_start``/``beta_end`` (``squaredcos_cap_v2`` has its own betas)."""
SELF_TERMINATING_FAMILIES = ("flow", "cosine")
"""Continuous families whose alpha_1 is 0 by construction, so ``schedule.ztsnr`` changes nothing."""


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else f"{value}"


def _inapplicable(cfg, dataset: Any) -> list[tuple[str, str]]:
    """``[(setting, why it does nothing)]`` for every setting that the rest of ``cfg`` (and the
    data: ``dataset.kind``, ``dataset.num_classes`` when given) leaves without effect."""
    from diffstudio.core.samplers import SAMPLERS
    from diffstudio.data.registry import is_toy_source

    s, o, sm, m, d, r = cfg.schedule, cfg.objective, cfg.sampling, cfg.model, cfg.data, cfg.run
    kind = getattr(dataset, "kind", None) or ("points" if is_toy_source(str(d.source)) else "image")
    classes = getattr(dataset, "num_classes", None)
    unconditional = not (m.class_conditional and d.labels) or classes == 0
    why_uncond = ("the model is not class-conditional (model.class_conditional, data.labels"
                  + (", and the data have no classes)" if classes == 0 else ")"))
    sampler = SAMPLERS.get(sm.sampler)
    rules = [
        (("schedule.beta_start", "schedule.beta_end"), s.family not in BETA_RANGE_FAMILIES,
         f"the {s.family} schedule has no beta range (only {', '.join(BETA_RANGE_FAMILIES)} use one)"),
        (("schedule.num_train_timesteps",), s.family not in DISCRETE_FAMILIES,
         f"the {s.family} schedule is continuous (no discrete steps)"),
        (("schedule.ztsnr",), s.family in SELF_TERMINATING_FAMILIES,
         f"the {s.family} schedule ends at zero terminal SNR by construction"),
        (("schedule.shift",), s.family != "flow", "only the flow schedule shifts its time (schedule.family = flow); "
                                                   "the sampling grid's shift is sampling.shift"),
        (("schedule.sigma_min", "schedule.sigma_max", "schedule.rho"), s.family != "edm",
         "only the edm schedule uses it"),
        (("schedule.points",), s.family != "custom", "only the custom schedule uses control points"),
        (("objective.gamma",), o.weighting != "min_snr", f"it caps min_snr weighting; objective.weighting is "
                                                        f"{o.weighting!r}"),
        (("objective.logit_mean", "objective.logit_std"), o.time_sampling != "logit_normal",
         f"objective.time_sampling is {o.time_sampling!r}, not 'logit_normal'"),
        (("sampling.eta",), sampler is not None and not sampler.has_eta,
         f"the {sm.sampler} sampler takes no eta (ddim_eta does)"),
        (("sampling.shift",), sm.spacing != "shifted", f"it shifts the 'shifted' spacing; sampling.spacing is "
                                                        f"{sm.spacing!r}"),
        (("sampling.guidance_scale", "sampling.guidance_rescale", "model.cond_drop_prob"), unconditional,
         why_uncond),
        (("sampling.guidance_rescale",), not unconditional and sm.guidance_scale == 1.0,
         "rescaling needs guidance (sampling.guidance_scale is 1: the plain conditional model)"),
        (("data.resolution", "data.channels", "data.hflip", "model.preset"), kind == "points",
         "the data are 2-D points, trained with the MLP (model.mlp_width, model.mlp_depth)"),
        (("model.mlp_width", "model.mlp_depth"), kind == "image", "images train a UNet (model.preset); the MLP is "
                                                                 "for 2-D points"),
        (("model.preset",), bool(str(m.init_from).strip()), "the architecture comes from model.init_from"),
        (("run.val_model", "run.val_items", "run.val_times"), r.val_every == 0 or d.val_fraction == 0,
         "validation is off (run.val_every or data.val_fraction is 0)"),
        (("data.val_seed",), d.val_fraction == 0, "nothing is held out (data.val_fraction is 0)"),
    ]
    return [(name, why) for names, applies, why in rules if applies for name in names]


def ineffective_settings(cfg, dataset: Any = None) -> list[Advice]:
    """A warning for each setting changed from its default that does nothing under the rest of
    ``cfg`` (e.g. ``sampling.eta`` with the ddim sampler, ``schedule.shift`` on a beta schedule,
    guidance for a model without classes, ``data.resolution`` for 2-D points), so a setting is
    never silently ignored. ``dataset``: anything with ``kind`` and ``num_classes`` (the loaded
    data), or None to judge by ``cfg`` alone. Never raises."""
    try:
        found = _inapplicable(cfg, dataset)
    except Exception:  # an invalid config: validation reports it
        return []
    out, seen = [], set()
    for name, why in found:
        section, key = name.split(".", 1)
        value = getattr(getattr(cfg, section), key)
        if name in seen or value == getattr(type(getattr(cfg, section))(), key):
            continue
        seen.add(name)
        out.append(Advice("warning", name, f"{name} = {_show(value)} has no effect: {why}"))
    return out


def training_advice(cfg, dataset: Any = None) -> list[Advice]:
    """Everything worth saying before training ``cfg`` on ``dataset``, warnings first."""
    items = (singular_prediction(cfg) + flow_shift(cfg) + ineffective_settings(cfg, dataset)
             + skipped_files(dataset, str(cfg.data.source)) + dataset_notes(dataset))
    return sorted(items, key=lambda a: a.level != "warning")



ZTSNR_SIGNAL = 1e-9
"""A terminal signal alpha_1 at or below this counts as zero terminal SNR."""
LEAKY_TERMINAL_SIGNAL = 0.01
"""Above this terminal signal, eps-prediction gets the 'samples stay near mid-grey' note."""
SQUEEZED_RATIO = 0.5
"""Samples whose brightness spread is below this fraction of the data's are 'squeezed to mid-grey'."""
GRID_STARTS_AT_ONE = 1e-6
"""A sampling grid whose first time is within this of t = 1 starts from the last training step."""

WARN_SCORE_SMALL_T = ("score prediction is numerically unstable at small t: its target −ε/σ grows "
                      "without bound as the noise vanishes, so training breaks near clean images "
                      "(why DDPM switched to eps). Prefer eps, v or flow.")
NOTE_FLOW_ON_BETAS = ("flow prediction on a beta schedule is fine: the target is dx_t/dt of this "
                      "schedule and every sampler converts it to (x0, ε).")
NOTE_OFFSET_WITH_ZTSNR = ("offset noise is a workaround for non-zero terminal SNR; with this "
                          "zero-terminal-SNR schedule it is not needed (Lin et al. 2024).")
NOTE_EPS_LEAKY = ("eps works with this schedule, but it leaves {pct} of the image at t=1 while "
                  "sampling starts from pure noise: samples stay close to mid-grey. Zero terminal SNR "
                  "with v-prediction fixes it.")


def format_percent(fraction: float) -> str:
    """0.068265 -> '6.83 %'; tiny values keep three significant digits; exactly 0 -> '0 %'."""
    pct = 100.0 * fraction
    if pct == 0:
        return "0 %"
    if pct >= 0.1:
        return f"{pct:.2f} %"
    return f"{pct:.3g} %"


def objective_advice(config) -> tuple[list[str], list[str]]:
    """``(warnings, notes)`` in plain words for ``config``'s objective on its schedule.

    Warnings: choices that cannot work (eps/score prediction with zero terminal SNR, score at small
    t) or that cannot be exported (rectified flow with ``schedule.shift != 1``). Notes: choices that
    work at a cost. An invalid schedule gives only what does not depend on it; never raises."""
    o = config.objective
    warnings: list[str] = []
    notes: list[str] = []
    terminal = _terminal_signal(config)
    ztsnr = terminal is not None and terminal <= ZTSNR_SIGNAL
    warnings.extend(a.text for a in singular_prediction(config))  # the words `train` prints too
    if o.parameterization == "score":
        warnings.append(WARN_SCORE_SMALL_T)
    warnings.extend(a.text for a in flow_shift(config))
    if o.parameterization == "flow" and config.schedule.family in DISCRETE_FAMILIES:
        notes.append(NOTE_FLOW_ON_BETAS)
    if o.parameterization == "eps" and terminal is not None and terminal > LEAKY_TERMINAL_SIGNAL:
        notes.append(NOTE_EPS_LEAKY.format(pct=format_percent(terminal)))
    if ztsnr and isinstance(o.offset_noise, (int, float)) and o.offset_noise > 0:
        notes.append(NOTE_OFFSET_WITH_ZTSNR)
    return warnings, notes


@dataclass(frozen=True)
class BrightnessStats:
    """The spread of per-image mean brightness: a preview's samples against the data the run
    trained on (std over images, in data units [-1, 1]). ``data_std`` is None when unknown."""

    sample_std: float
    data_std: float | None
    samples: int
    step: int | None = None

    @property
    def ratio(self) -> float | None:
        """sample_std / data_std (1 = the data's full spread), or None when it cannot be judged."""
        if self.data_std is None or not self.data_std > 0 or self.samples < 2:
            return None
        return self.sample_std / self.data_std

    @classmethod
    def of(cls, sample_means: Sequence[float] | np.ndarray, data_means: Sequence[float] | np.ndarray | None,
           step: int | None = None) -> "BrightnessStats":
        """From per-image means of the samples (N,) and of the data (M,) (None: unknown)."""
        s = np.asarray(sample_means, dtype=np.float64).reshape(-1)
        d = None if data_means is None else np.asarray(data_means, dtype=np.float64).reshape(-1)
        data_std = float(d.std()) if d is not None and len(d) > 1 else None
        return cls(float(s.std()) if len(s) else float("nan"), data_std, int(len(s)), step)


def _sampling_start(config) -> float | None:
    """The first time of the config's sampling grid (1.0 when sampling starts at the last
    training step), or None when the schedule or grid is invalid."""
    s = config.sampling
    try:
        grid = sampling_grid(config.schedule.build(), int(s.steps), s.spacing, shift=float(s.shift))
    except (ScheduleError, ValueError, TypeError):
        return None
    return float(grid[0])


def run_advice(config: Any, stats: BrightnessStats) -> list[str]:
    """What the brightness of a run's samples says, judged against that run's own settings.

    ``config``: the config of the run (or checkpoint) that made the samples, not the one being
    edited. Returns [] when the spread is fine or cannot be judged; else a finding and either the
    fixes of Lin et al. 2024 that this run does not use yet (zero terminal SNR, v/flow prediction
    with it, sampling from t = 1) or, when it uses them all, the remaining causes. Never advises a
    fix the run already has."""
    ratio = stats.ratio
    if ratio is None or not math.isfinite(ratio) or ratio >= SQUEEZED_RATIO:
        return []
    at = f" at step {stats.step:,}" if stats.step is not None else ""
    out = [f"The samples{at} spread {ratio:.2f} × as widely in brightness as the data: squeezed toward "
           "mid-grey (the 'uniform lighting' problem)."]
    param = config.objective.parameterization
    terminal = _terminal_signal(config)
    start = _sampling_start(config)
    fixes: list[str] = []
    if terminal is not None and terminal > ZTSNR_SIGNAL:
        fixes.append(f"zero terminal SNR (this run leaves {format_percent(terminal)} of the image at t = 1)")
        if param in ("eps", "score"):
            fixes.append("v or flow prediction with it")
    elif param in ("eps", "score"):
        fixes.append(f"v or flow prediction ({param} cannot use zero terminal SNR)")
    if start is not None and start < 1.0 - GRID_STARTS_AT_ONE:
        spacing = "'trailing'" if config.schedule.family in DISCRETE_FAMILIES else "'uniform' or 'shifted'"
        fixes.append(f"{spacing} spacing (sampling starts at t = {start:.3f}, not t = 1)")
    if fixes:
        out.append("Try " + "; ".join(fixes) + " (Lin et al. 2024).")
    else:
        out.append(f"This run already uses zero terminal SNR, {param}-prediction and a grid that starts at "
                   "t = 1, which remove the known schedule causes: the model probably needs more training, "
                   "or the sampler more steps.")
    return out


__all__ = ["Advice", "BrightnessStats", "SINGULAR_AT_T1", "dataset_notes", "flow_shift", "format_percent",
           "objective_advice", "run_advice", "singular_prediction", "skipped_files", "training_advice"]
