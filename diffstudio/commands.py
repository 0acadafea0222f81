"""The headless subcommands behind ``diffstudio`` (argparse lives in cli.py). Qt-free."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

from diffstudio.cli import UsageError


def _schedule_from_args(args):
    from diffstudio.core.schedules import make_schedule

    kwargs = {"ztsnr": args.ztsnr, "num_train_timesteps": args.train_steps,
              "beta_start": args.beta_start, "beta_end": args.beta_end}
    if args.family == "flow" and args.shift is not None:
        kwargs["shift"] = args.shift
    return make_schedule(args.family, **kwargs)


def schedule(args) -> int:
    """Terminal signal, terminal SNR and the sampling timesteps of a schedule."""
    from diffstudio.core.grids import default_spacing, model_timesteps, sampling_grid

    sched = _schedule_from_args(args)
    spacing = args.spacing or default_spacing(sched)
    grid = sampling_grid(sched, args.steps, spacing, **({"shift": args.shift} if args.shift else {}))
    steps = model_timesteps(sched, grid)
    timesteps = [int(round(v)) for v in steps.tolist()] if sched.is_discrete else [round(v, 6) for v in steps.tolist()]
    alpha = sched.alpha(grid)
    out = {"family": args.family, "description": sched.describe(), "ztsnr": sched.terminal_signal == 0.0,
           "terminal_signal": sched.terminal_signal, "terminal_snr": sched.terminal_snr, "spacing": spacing,
           "steps": args.steps, "timesteps": timesteps, "t": [round(v, 6) for v in grid[:-1].tolist()],
           "alpha_at_steps": [float(a) for a in alpha[:-1]]}
    if args.json:
        print(json.dumps(out))
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
    from diffstudio.data.inspect import format_inspection, inspect_source

    report = inspect_source(args.source, resolution=args.resolution, channels=args.channels)
    print(json.dumps(report) if args.json else format_inspection(report))
    return 0


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
            self._say(f"training on {info['device']} ({info['num_params']:,} parameters) -> {info['run_dir']}\n")

        def on_metrics(self, step, m):
            width = 30
            done = int(width * step / max(1, self.total))
            eta = m["eta_s"]
            eta_s = f"{int(eta // 60)}:{int(eta % 60):02d}" if math.isfinite(eta) else "?"
            self._say(f"\r[{'#' * done}{'.' * (width - done)}] {step}/{self.total}  loss {m['loss']:.4f}  "
                      f"{m['steps_per_s']:.1f} steps/s  ETA {eta_s}   ")

        def on_message(self, level, text):
            self._say(f"\n{level}: {text}\n")

        def should_stop(self):
            return self.stop

        def _say(self, text):
            if self.quiet:
                return
            sys.stderr.write(text)
            sys.stderr.flush()

    return _CliHooks()


def _train_config(args):
    from diffstudio.engine.config import Config
    from diffstudio.engine.presets import preset

    if args.resume:
        from diffstudio.engine.checkpoint import load_checkpoint

        cfg = Config.from_dict(load_checkpoint(args.resume).meta["config"])
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
    cfg = _apply_sets(cfg, getattr(args, "assignments", []))
    if getattr(args, "preset", None) and not args.resume:
        from diffstudio.engine.config import ConfigError
        from diffstudio.engine.presets import missing_required

        if missing_required(args.preset, cfg):
            raise ConfigError(missing_required(args.preset, cfg))
    return cfg


def _apply_sets(cfg, assignments: list[str]):
    """``--set name=value`` on top of everything else; a bad name is a usage error (exit 2)."""
    from diffstudio.engine.settings import SettingAssignmentError, apply_assignments

    try:
        return apply_assignments(cfg, assignments)
    except SettingAssignmentError as e:
        raise UsageError(str(e)) from None


def settings(args) -> int:
    """Every setting with its type, default, range or choices and help (``docs/settings.md``)."""
    from diffstudio.engine.settings import describe, settings_json, settings_markdown

    if args.json:
        print(json.dumps(settings_json(), indent=1, default=str))
    elif args.markdown:
        sys.stdout.write(settings_markdown())
    else:
        for s in describe():
            extra = s.range_text() or (", ".join(str(c.value) for c in s.choices))
            print(f"{s.name:<28} {json.dumps(s.default):<16} {extra:<40} {s.spec.help}")
    return 0


def train(args) -> int:
    from diffstudio.engine.trainer import Trainer

    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    hooks = _cli_hooks(quiet=not main_rank)
    previous = signal.signal(signal.SIGINT, lambda *_: setattr(hooks, "stop", True))
    try:
        t0 = time.perf_counter()
        result = Trainer(_train_config(args), hooks=hooks, run_dir=args.out, resume=args.resume).run()
    finally:
        signal.signal(signal.SIGINT, previous)
    if not main_rank:
        return 0
    sys.stderr.write("\n")
    out = {"steps": result.steps, "final_loss": result.final_loss, "images_per_second": result.images_per_second,
           "run_dir": result.run_dir, "stopped": result.stopped, "seconds": round(time.perf_counter() - t0, 2)}
    print(json.dumps(out) if args.json else f"{'stopped' if result.stopped else 'done'}: {result.steps} steps, "
          f"final loss {result.final_loss:.4f}, {result.images_per_second:.0f} images/s, run folder {result.run_dir}")
    return 0


def sample(args) -> int:
    import numpy as np
    from PIL import Image

    from diffstudio.engine.sampling import generate, load_for_sampling

    loaded = load_for_sampling(args.source, args.device)
    overrides = {"sampler": args.sampler, "steps": args.steps, "spacing": args.spacing, "eta": args.eta,
                 "guidance_scale": args.cfg, "guidance_rescale": args.cfg_rescale}
    cfg = loaded.config.updated(sampling={k: v for k, v in overrides.items() if v is not None})
    errors = [e for e in cfg.validate() if e[0].startswith("sampling.")]
    if errors:
        raise UsageError("; ".join(f"{f}: {m}" for f, m in errors))
    preview = generate(loaded.model, cfg, loaded.data_info, n=args.n, seed=args.seed, device=args.device,
                       on_singular="raise")
    if cfg.data.vae:  # a latent model: decode with the run's VAE
        from diffstudio.engine.latents import decode_preview, load_codec

        preview = decode_preview(preview, load_codec(cfg.data.vae, args.device))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if preview.grid is not None:
        Image.fromarray(preview.grid).save(out)
    else:
        _scatter_png(preview.samples, out)
    if args.npy:
        np.save(args.npy, preview.samples)
    print(f"wrote {args.n} samples to {out}" + (f" and {args.npy}" if args.npy else ""))
    return 0


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
    from diffstudio.engine.export import export as do_export

    path = do_export(args.source, args.format, args.out)
    print(f"exported {args.format} to {path}")
    return 0


def describe_error(e: BaseException) -> tuple[str | None, int]:
    """A one-line message and exit code for the failures a user can cause, else (None, 1)."""
    from diffstudio.core.parameterization import SingularPredictionError
    from diffstudio.core.schedules import ScheduleError
    from diffstudio.engine.config import ConfigError
    known: list[type] = [ScheduleError, ConfigError, SingularPredictionError, FileNotFoundError]
    for mod, name in (("diffstudio.engine.trainer", "TrainingError"), ("diffstudio.data.errors", "DatasetError"), ("diffstudio.engine.checkpoint", "CheckpointError"),
                      ("diffstudio.engine.export", "ExportError")):
        try:
            known.append(getattr(__import__(mod, fromlist=[name]), name))
        except (ImportError, AttributeError):  # that module was never needed, so none of its errors
            pass
    if isinstance(e, (ScheduleError, ConfigError)):
        return str(e), 2
    if isinstance(e, tuple(known)):
        return str(e), 1
    return None, 1
