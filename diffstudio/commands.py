"""The headless subcommands behind ``diffstudio`` (argparse lives in cli.py). Qt-free."""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from diffstudio.engine.errors import UsageError, describe_error  # noqa: F401 - the one boundary, re-exported


def _schedule_from_args(args):
    from diffstudio.core.schedules import make_schedule

    kwargs = {"ztsnr": args.ztsnr, "num_train_timesteps": args.train_steps,
              "beta_start": args.beta_start, "beta_end": args.beta_end}
    if args.family == "flow" and args.shift is not None:
        kwargs["shift"] = args.shift
    return make_schedule(args.family, **kwargs)


def schedule(args) -> int:
    """Terminal signal, terminal SNR and the sampling timesteps of a schedule."""
    from diffstudio.core.grids import check_shift, default_spacing, model_timesteps, sampling_grid

    if args.shift is not None:
        check_shift(args.shift)  # ScheduleError: one line, exit 2 (0 is no longer read as "unset")
    sched = _schedule_from_args(args)
    spacing = args.spacing or default_spacing(sched)
    grid = sampling_grid(sched, args.steps, spacing, **({"shift": args.shift} if args.shift is not None else {}))
    steps = model_timesteps(sched, grid)
    timesteps = [int(round(v)) for v in steps.tolist()] if sched.is_discrete else [round(v, 6) for v in steps.tolist()]
    alpha = sched.alpha(grid)
    out = {"family": args.family, "description": sched.describe(), "ztsnr": sched.terminal_signal == 0.0,
           "terminal_signal": sched.terminal_signal, "terminal_snr": sched.terminal_snr, "spacing": spacing,
           "steps": args.steps, "timesteps": timesteps, "t": [round(v, 6) for v in grid[:-1].tolist()],
           "alpha_at_steps": [float(a) for a in alpha[:-1]]}
    if args.json:
        print(_dumps(out))
        return 0
    print(_schedule_table(out))
    return 0


def _schedule_table(o: dict) -> str:
    lines = [f"schedule         {o['description']}",
             f"terminal signal  alpha(1) = {o['terminal_signal']:.6g}  ({100 * o['terminal_signal']:.4g} % of the image left)",
             f"terminal SNR     {o['terminal_snr']:.6g}" + ("  (zero terminal SNR)" if o["terminal_snr"] == 0 else ""),
             f"sampling         {o['steps']} steps, {o['spacing']} spacing", "",
             f"{'step':>4}  {'timestep':>10}  {'t':>8}  {'alpha_t':>10}"]
    for i, (ts, t, a) in enumerate(zip(o["timesteps"], o["t"], o["alpha_at_steps"])):
        lines.append(f"{i:>4}  {ts:>10}  {t:>8.4f}  {a:>10.6f}")
    return "\n".join(lines)


def dataset(args) -> int:
    """``diffstudio dataset inspect``: what a source holds (counts, classes, sizes, brightness), as
    text or JSON; returns the exit code 0. Loading errors propagate to the CLI's error boundary."""
    from diffstudio.data.inspect import format_inspection, inspect_source

    report = inspect_source(args.source, resolution=args.resolution, channels=args.channels)
    print(_dumps(report) if args.json else format_inspection(report))
    return 0


_progress_line_open = False  # a progress bar line on stderr awaits its newline


def end_progress_line() -> None:
    """Finish a progress bar line on stderr, so that what follows (an error) starts a line."""
    global _progress_line_open
    if _progress_line_open:
        sys.stderr.write("\n")
        sys.stderr.flush()
        _progress_line_open = False


def _cli_hooks(quiet: bool = False):
    """Progress bar on stderr (stdout stays clean for --json); Ctrl-C -> checkpoint and stop."""
    from diffstudio.engine.trainer import TrainerHooks

    class _CliHooks(TrainerHooks):
        """Progress bar on stderr (stdout stays clean for --json); Ctrl-C -> checkpoint and stop."""

        def __init__(self):
            self.stop, self.total, self.start_step = False, 0, 0
            self.quiet = quiet

        def on_start(self, info):
            self.total, self.start_step = info["total_steps"], info["start_step"]
            self._say(f"training on {info['device']} in {info.get('precision', 'fp32')} ({info['num_params']:,} parameters) "
                      f"-> {info['run_dir']}\n")
            if info.get("precision_reason"):
                self._say(f"precision: {info['precision_reason']}\n")

        def on_metrics(self, step, m):
            width = 30
            done = int(width * step / max(1, self.total))
            eta = m["eta_s"]
            eta_s = f"{int(eta // 60)}:{int(eta % 60):02d}" if math.isfinite(eta) else "?"
            self._say(f"\r[{'#' * done}{'.' * (width - done)}] {step}/{self.total}  loss {m['loss']:.4f}  "
                      f"{m['steps_per_s']:.1f} steps/s  ETA {eta_s}   ")

        def on_message(self, level, text):
            self._say(f"\n{level}: {text}\n")

        def on_validation(self, step, result):
            from diffstudio.engine.evaluation import summary_line

            self._say(f"\n{summary_line(result)}\n")

        def on_quality(self, step, quality):
            self._say(f"\nquality at step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in quality.items()) + "\n")

        def should_stop(self):
            return self.stop

        def _say(self, text):
            global _progress_line_open
            if self.quiet:
                return
            sys.stderr.write(text)
            sys.stderr.flush()
            _progress_line_open = not text.endswith("\n")

    return _CliHooks()


def _dumps(obj) -> str:
    """Strict JSON (RFC 8259): NaN and infinities become null, never the bare ``NaN`` that
    Python's json writes by default and other parsers reject."""
    return json.dumps(_json_safe(obj), allow_nan=False)


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def config_differences(a, b) -> list[tuple[str, object, object]]:
    """``[(dotted.name, value in a, value in b)]`` for every setting where two Configs differ."""
    fa, fb = a.flat(), b.flat()
    return [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def _refuse_source_with_resume(args, resumed) -> None:
    """A config file or preset beside --resume would be ignored (the run keeps its checkpoint's
    settings): refuse it, naming what differs and how to continue with changed settings."""
    from diffstudio.engine.config import Config
    from diffstudio.engine.presets import preset

    what = args.config if args.config else f"--preset {args.preset}"
    given = Config.load(args.config) if args.config else preset(args.preset)
    diffs = config_differences(resumed, given)
    if not diffs:
        raise UsageError(f"{what} cannot be combined with --resume: a resumed run keeps the settings stored in "
                         f"its checkpoint (they match this file's); leave it out")
    shown = ", ".join(f"{k} {old!r} -> {new!r}" for k, old, new in diffs[:6])
    more = f" and {len(diffs) - 6} more" if len(diffs) > 6 else ""
    sets = " ".join("--set " + shlex.quote(f"{k}={new if isinstance(new, str) else json.dumps(new)}")
                    for k, _, new in diffs[:2])
    raise UsageError(f"{what} cannot be combined with --resume: a resumed run keeps the settings stored in its "
                     f"checkpoint, and {len(diffs)} differ ({shown}{more}). To continue with changed settings, "
                     f"start a new run from the checkpoint: diffstudio train --resume {shlex.quote(args.resume)} --out NEW_FOLDER "
                     f"{sets} (the run length with --steps)")


# what a resumed run may change in its own folder: how it runs, logs and previews, not what it learns
RESUME_IN_PLACE = ("run.steps", "run.device", "run.threads", "run.precision", "run.compile", "run.preview_every",
                   "run.checkpoint_every", "run.log_every", "run.keep_checkpoints", "sampling.")


def _refuse_sets_in_place(args) -> None:
    """``--resume RUN --set optim.lr=...`` would change what the run folder's history means:
    such changes continue into a new folder (``--out``)."""
    from diffstudio.engine.settings import SettingAssignmentError, parse_assignment

    try:
        names = [parse_assignment(a)[0] for a in getattr(args, "assignments", [])]
    except SettingAssignmentError as e:
        raise UsageError(str(e)) from None
    learned = [n for n in names if not n.startswith(RESUME_IN_PLACE)]
    if learned:
        raise UsageError(f"--set {', '.join(learned)} with --resume changes what the run learns; continue into a new "
                         f"run folder instead: diffstudio train --resume {shlex.quote(args.resume)} --out NEW_FOLDER "
                         + " ".join(f"--set {shlex.quote(a)}" for a in args.assignments))


def _refuse_init_from_with_resume(args, resumed) -> None:
    """``--resume RUN --set model.init_from=X`` would be ignored (a resumed run continues from its
    checkpoint's weights) while the new run's config.toml recorded X: refuse it, and say how to
    fine-tune from X (a new run) or from this run (a new run with ``model.init_from=RUN``)."""
    from diffstudio.engine.settings import SettingAssignmentError, parse_assignment

    try:
        given = [parse_assignment(a) for a in getattr(args, "assignments", [])]
    except SettingAssignmentError as e:
        raise UsageError(str(e)) from None
    changed = [v for name, v in given if name == "model.init_from" and v != resumed.model.init_from]
    if changed:
        raise UsageError(f"--set model.init_from cannot be combined with --resume: a resumed run continues from the "
                         f"weights of {args.resume}, not from {changed[-1]!r}. To fine-tune {changed[-1]!r}, start a "
                         f"new run without --resume; to fine-tune this run's weights with other settings, start one "
                         f"with --set {shlex.quote('model.init_from=' + args.resume)}")


def _train_config(args):
    from diffstudio.engine.config import Config
    from diffstudio.engine.devices import resolve_device
    from diffstudio.engine.presets import preset

    if args.resume:
        from diffstudio.engine.checkpoint import CheckpointError, load_meta

        meta = load_meta(args.resume)
        if not isinstance(meta.get("config"), dict):
            raise CheckpointError(f"{args.resume}: the checkpoint carries no run settings, so it cannot be resumed")
        cfg = Config.from_dict(meta["config"])
        if args.config or args.preset:
            _refuse_source_with_resume(args, cfg)
    elif args.config:
        cfg = Config.load(args.config)
    else:
        cfg = preset(args.preset or "quickstart")
    if args.steps is not None:
        cfg = cfg.updated(run={"steps": args.steps})
    if args.device:
        cfg = cfg.updated(run={"device": args.device})
    if getattr(args, "threads", None) is not None:
        cfg = cfg.updated(run={"threads": args.threads})
    if args.resume:
        _refuse_init_from_with_resume(args, cfg)
    if args.resume and not args.out:
        _refuse_sets_in_place(args)
    cfg = _apply_sets(cfg, getattr(args, "assignments", []))
    if getattr(args, "preset", None) and not args.resume:
        from diffstudio.engine.config import ConfigError
        from diffstudio.engine.presets import missing_required

        if missing_required(args.preset, cfg):
            raise ConfigError(missing_required(args.preset, cfg))
    if args.device:
        resolve_device(args.device, "--device")  # the flag's own name in its message
    cfg.check()
    _check_data_source(cfg)
    resolve_device(cfg.run.device, "run.device")  # exit 2 before any work
    _check_out_folder(args, cfg)
    return cfg


def _check_out_folder(args, cfg) -> None:
    """The run folder can be created where ``--out`` or ``run.out_dir`` puts it: a read-only or
    refusing file system is one line naming the flag or field and the OS's reason (exit 2), before
    any data load, for the run and its ``--dry-run`` alike. Raises UsageError or ConfigError."""
    from diffstudio.engine.config import ConfigError
    from diffstudio.engine.run_dir import run_folder_problem

    problem = run_folder_problem(args.out, cfg.run.out_dir, args.resume)
    if problem and args.out:
        raise UsageError(f"--out: {problem}")
    if problem:
        raise ConfigError([("run.out_dir", problem)])


def _check_data_source(cfg) -> None:
    """``data.source`` names a built-in dataset, a 2-D toy or a folder that exists: a typo is a
    settings error naming the field (exit 2) before anything loads. Raises ConfigError."""
    from diffstudio.data.errors import DatasetError
    from diffstudio.data.registry import source_kind
    from diffstudio.engine.config import ConfigError

    try:
        source_kind(cfg.data.source)
    except DatasetError as e:
        raise ConfigError([("data.source", str(e))]) from None


def _apply_sets(cfg, assignments: list[str]):
    """``--set name=value`` on top of everything else; a bad name is a usage error (exit 2)."""
    from diffstudio.engine.settings import SettingAssignmentError, apply_assignments

    try:
        return apply_assignments(cfg, assignments)
    except SettingAssignmentError as e:
        raise UsageError(str(e)) from None


def settings(args) -> int:
    """Every setting with its type, default, range or choices and help (``docs/settings.md``)."""
    from diffstudio.engine.config import Config
    from diffstudio.engine.settings import describe, settings_json, settings_markdown

    if args.json:
        print(json.dumps(settings_json(Config), indent=1, default=str))
    elif args.markdown:
        sys.stdout.write(settings_markdown(Config))
    else:
        for s in describe(Config):
            extra = s.range_text() or (", ".join(str(c.value) for c in s.choices))
            print(f"{s.name:<28} {json.dumps(s.default):<16} {extra:<40} {s.spec.help}")
    return 0


def dry_run(args) -> int:
    """``train --dry-run``: the estimate of engine/dry_run.py, as text or one JSON object.
    ``--device-memory`` is in GiB. Raises UsageError with ``--resume`` or a non-positive
    ``--device-memory``."""
    from diffstudio.engine.dry_run import GiB, estimate, format_estimate

    if args.resume:
        raise UsageError("--dry-run estimates a new run; it does not combine with --resume")
    if args.device_memory is not None and not (args.device_memory > 0 and math.isfinite(args.device_memory)):
        raise UsageError(f"--device-memory: must be a positive number of GiB, got {args.device_memory}")
    cfg = _train_config(args)
    budget = None if args.device_memory is None else int(args.device_memory * GiB)
    est = estimate(cfg, available_bytes=budget)
    print(json.dumps(est.to_json()) if args.json else format_estimate(est, cfg.run.steps))
    return 0


def _stopped_before_training(args, why: str, t0: float, main_rank: bool) -> int:
    """Ctrl-C before the first step (the folder's pixel cache or the latents were being built,
    and resume from where they stopped): one line, exit 0 as for a stop during training."""
    if not main_rank:
        return 0
    end_progress_line()
    if args.json:
        print(_dumps({"steps": None, "final_loss": None, "images_per_second": 0.0, "run_dir": None, "stopped": True,
                      "nothing_to_do": False, "seconds": round(time.perf_counter() - t0, 2)}))
    else:
        print(f"stopped before training: {why}")
    return 0


def train(args) -> int:
    """``diffstudio train``: run the Trainer headless (Ctrl+C stops after saving), print the summary
    (or JSON); under torchrun only rank 0 prints. Returns 0. Raises UsageError for flags that do not
    combine; the Trainer's errors propagate to the CLI's error boundary."""
    from diffstudio.engine.trainer import Trainer

    if args.dry_run:
        return dry_run(args)
    if getattr(args, "device_memory", None) is not None:  # it would be silently ignored
        raise UsageError("--device-memory plans a --dry-run for another machine; a training run uses what its "
                         "device has (data.memory_budget_mb sets how much data it holds there)")

    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    cfg = _train_config(args)
    hooks = _cli_hooks(quiet=not main_rank)
    previous = signal.signal(signal.SIGINT, lambda *_: setattr(hooks, "stop", True))
    from diffstudio.data.errors import LoadCancelled

    try:
        t0 = time.perf_counter()
        try:
            result = Trainer(cfg, hooks=hooks, run_dir=args.out, resume=args.resume).run()
        except LoadCancelled as e:  # Ctrl-C while the data were decoded or encoded: a stop, not an error
            if not hooks.stop:
                raise
            return _stopped_before_training(args, str(e), t0, main_rank)
    finally:
        signal.signal(signal.SIGINT, previous)
    if not main_rank:
        return 0
    end_progress_line()
    out = {"steps": result.steps, "final_loss": result.final_loss, "images_per_second": result.images_per_second,
           "run_dir": result.run_dir, "stopped": result.stopped, "nothing_to_do": result.nothing_to_do,
           "seconds": round(time.perf_counter() - t0, 2)}
    if args.json:
        print(_dumps(out))
    elif result.nothing_to_do:
        print(f"nothing to do: the run is already at step {result.steps}; run folder {result.run_dir}")
    else:
        loss = f"{result.final_loss:.4f}" if math.isfinite(result.final_loss) else "n/a"
        print(f"{'stopped' if result.stopped else 'done'}: {result.steps} steps, final loss {loss}, "
              f"{result.images_per_second:.0f} images/s, run folder {result.run_dir}")
    return 0


MAX_SEED = 2**63 - 1


def _check_sample_args(args) -> None:
    """Bad numbers and unavailable devices are usage errors (exit 2), found before any loading."""
    from diffstudio.engine.devices import resolve_device

    if args.n < 1:
        raise UsageError(f"--n: the number of samples must be at least 1, got {args.n}")
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed: must lie in 0..2**63-1 ({MAX_SEED}), got {args.seed}")
    _check_output_files(args.out, getattr(args, "npy", None))
    resolve_device(args.device, "--device")


def _check_output_files(out: str, npy: str | None) -> None:
    """``--out`` must name an image file Pillow can write (by its extension) and ``--npy`` a
    ``.npy`` file (``numpy.save`` would append ``.npy`` to any other name): usage errors (exit 2)
    found before a model is loaded or a sample drawn. Raises UsageError."""
    from PIL import Image

    Image.init()  # registers every format plugin, so the extension table is complete
    out_path = Path(out)
    if out_path.is_dir():
        raise UsageError(f"--out: {out} is a folder; give an image file, e.g. {out_path / 'samples.png'}")
    writable = sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE)
    if out_path.suffix.lower() not in writable:
        what = f"{out_path.suffix!r} is not an image format Pillow writes" if out_path.suffix else "has no extension"
        raise UsageError(f"--out: {out} {what}; end the name with .png (or .jpg, .webp, .tif, ...)")
    if npy is not None:
        if Path(npy).is_dir():
            raise UsageError(f"--npy: {npy} is a folder; give a file ending in .npy")
        if Path(npy).suffix != ".npy":
            raise UsageError(f"--npy: {npy} does not end in .npy (numpy would write {npy}.npy instead)")


def _sampling_overrides(args) -> dict:
    overrides = {"sampler": args.sampler, "steps": args.steps, "spacing": args.spacing, "eta": args.eta,
                 "shift": args.shift, "guidance_scale": args.cfg, "guidance_rescale": args.cfg_rescale}
    return {k: v for k, v in overrides.items() if v is not None}


def _refuse(cfg, sections: tuple[str, ...]) -> None:
    errors = [e for e in cfg.validate() if e[0].startswith(sections)]
    if errors:
        raise UsageError("; ".join(f"{f}: {m}" for f, m in errors))


def sample(args) -> int:
    """``diffstudio sample``: images (or points) from a run's checkpoint, or from the exact
    denoiser with ``--oracle``, written to ``--out``. Returns 0. Raises UsageError for flags that do
    not combine."""
    _check_sample_args(args)
    if args.oracle:
        return _sample_oracle(args)
    if args.source is None:
        raise UsageError("sample: give a run or checkpoint folder, or --oracle DATASET")
    if args.config or args.preset:
        raise UsageError("--config/--preset: only with --oracle (a run carries its own config)")
    from diffstudio.engine.sampling import generate, load_for_sampling

    loaded = load_for_sampling(args.source, args.device)
    cfg = loaded.config.updated(sampling=_sampling_overrides(args))
    _refuse(cfg, ("sampling.",))
    preview = generate(loaded.model, cfg, loaded.data_info, n=args.n, seed=args.seed, device=args.device,
                       on_singular="raise")
    from diffstudio.engine.latents import decoded_if_latent

    preview = decoded_if_latent(preview, cfg, args.device)  # a latent model: decoded with the run's VAE
    _write_samples(args, preview.grid, preview.samples)
    return 0


def _sample_oracle(args) -> int:
    """``sample --oracle DATASET``: the exact denoiser under a config's schedule and sampler."""
    from diffstudio.engine.config import Config
    from diffstudio.engine.oracle import oracle_preview
    from diffstudio.engine.presets import preset

    if args.source is not None:
        raise UsageError(f"--oracle: samples the exact denoiser, not a model; drop {args.source!r}")
    if args.config and args.preset:
        raise UsageError("--config/--preset: give one of them")
    cfg = Config.load(args.config) if args.config else preset(args.preset) if args.preset else Config()
    cfg = cfg.updated(data={"source": args.oracle}, sampling=_sampling_overrides(args))
    _refuse(cfg, ("sampling.", "schedule.", "objective."))
    preview = oracle_preview(cfg, n=args.n, seed=args.seed)
    for message in preview.warnings:
        sys.stderr.write(f"warning: {message}\n")
    if cfg.sampling.guidance_scale != 1.0 or cfg.sampling.guidance_rescale:
        sys.stderr.write("note: the exact denoiser is unconditional, so guidance changes nothing\n")
    _write_samples(args, preview.grid, preview.samples, f" ({preview.title}; spread {preview.spread:.3f} of the data's)")
    return 0


def _write_samples(args, grid, samples, detail: str = "") -> None:
    import numpy as np
    from PIL import Image

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if grid is not None:
        Image.fromarray(grid).save(out)
    else:
        _scatter_png(samples, out)
    if args.npy:
        Path(args.npy).parent.mkdir(parents=True, exist_ok=True)  # as for --out
        np.save(args.npy, samples)
    print(f"wrote {len(samples)} samples to {out}" + (f" and {args.npy}" if args.npy else "") + detail)


def _scatter_png(points, out: Path, size: int = 512) -> None:
    """2-D samples as a plain scatter picture (Pillow; no plotting library needed)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    lim = 3.0
    for x, y in points:
        px, py = (x / lim + 1) * size / 2, (1 - y / lim) * size / 2
        draw.ellipse([px - 1.5, py - 1.5, px + 1.5, py + 1.5], fill=(40, 90, 200))
    img.save(out)


def export(args) -> int:
    """``diffstudio export``: a checkpoint as a diffusers folder or one safetensors file; returns 0.
    Raises UsageError for an ``--out`` that contradicts the format (a folder for diffusers; a
    ``.safetensors`` file or a folder for safetensors), ExportError (:func:`diffstudio.engine.export.export`)."""
    from diffstudio.engine.export import FORMATS, target_problem
    from diffstudio.engine.export import export as do_export

    problem = target_problem(args.format, args.out) if args.format in FORMATS else None
    if problem:
        raise UsageError(f"--out: {problem}")  # exit 2, before the checkpoint is read
    path = do_export(args.source, args.format, args.out)
    print(f"exported {args.format} to {path}")
    return 0


def eval(args) -> int:  # noqa: A001 - the subcommand's name
    """``diffstudio eval``: validation by t and quality measures (engine/eval_run.py).
    Raises UsageError for a negative ``--quality-samples``."""
    from diffstudio.engine.eval_run import evaluate_checkpoint

    if args.quality_samples is not None and args.quality_samples < 0:
        raise UsageError("--quality-samples: expected 0 or more")
    out = evaluate_checkpoint(args.source, which=args.model, device=args.device, quality_samples=args.quality_samples)
    if args.json:
        print(json.dumps(out, allow_nan=False))
        return 0
    print(_eval_table(out))
    return 0


def _eval_table(o: dict) -> str:
    def f(v):
        return "undefined" if v is None else f"{v:.5g}"

    lines = [f"step {o['step']}, {o['model']} weights, {o.get('items', 0)} held-out items",
             f"{'t':>8}  {'log-SNR':>8}  {'loss':>10}  {'x0-MSE':>10}  {'eps-MSE':>10}"]
    for t, lam, lo, x0, ep in zip(o["t"], o["log_snr"], o["loss"], o["x0_mse"], o["eps_mse"]):
        lines.append(f"{t:>8.4f}  {'-inf' if lam is None else f'{lam:.2f}':>8}  {f(lo):>10}  {f(x0):>10}  {f(ep):>10}")
    lines.append(f"x0-MSE averaged uniformly in t: {f(o['x0_mse_mean'])}")
    lines += [f"undefined at t = {u['t']}: {u['reason']}" for u in o.get("undefined", [])]
    lines += [f"quality {k}: {v:.4g}" for k, v in o["quality"].items()]
    return "\n".join(lines)

