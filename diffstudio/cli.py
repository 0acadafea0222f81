"""``diffstudio``: with no arguments it opens the app; subcommands work headless.

Bad arguments give a one-line error and exit code 2; failures a one-line error and exit code 1."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from diffstudio.core.grids import SPACINGS
from diffstudio.core.schedules import FAMILIES
from diffstudio.engine.errors import UsageError, report_error


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise UsageError(message)


def whole_number(text: str) -> int:
    """An int flag's value: digits only (``1000``, ``-3``), as argparse's ``int``; ``1e3`` or
    ``2.5`` is refused with what to write instead (``write 1000``), never converted silently.
    Raises ``argparse.ArgumentTypeError`` (one line, exit 2)."""
    from diffstudio.engine.settings import whole_number_hint

    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}{whole_number_hint(text)}") from None


def _schedule_parser(sub) -> None:
    p = sub.add_parser("schedule", help="print a noise schedule's terminal signal and sampling timesteps")
    p.add_argument("family", choices=FAMILIES)
    p.add_argument("--ztsnr", action="store_true", help="rescale to zero terminal SNR (Lin et al. 2024)")
    p.add_argument("--steps", type=whole_number, default=10, help="number of sampling steps")
    p.add_argument("--spacing", choices=SPACINGS, default=None, help="timestep spacing")
    p.add_argument("--shift", type=float, default=None, help="flow: SD3 time shift; others: for --spacing shifted")
    p.add_argument("--beta-start", type=float, default=None)
    p.add_argument("--beta-end", type=float, default=None)
    p.add_argument("--train-steps", type=whole_number, default=1000, help="T of a beta schedule")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _dataset_parser(sub) -> None:
    p = sub.add_parser("dataset", help="datasets")
    dsub = p.add_subparsers(dest="dataset_command", required=True, parser_class=_Parser)
    q = dsub.add_parser("inspect", help="count usable images and list skipped files with reasons")
    q.add_argument("source", help="a built-in name or a folder")
    q.add_argument("--resolution", type=whole_number, default=None)
    q.add_argument("--channels", type=whole_number, choices=(1, 3), default=None)
    q.add_argument("--json", action="store_true")


def _train_parser(sub) -> None:
    from diffstudio.engine.presets import PRESETS

    p = sub.add_parser("train", help="train headless (also under torchrun)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("config", nargs="?", help="a config file (.toml or .json)")
    src.add_argument("--preset", choices=list(PRESETS), help="a named configuration")
    p.add_argument("--steps", type=whole_number, default=None, help="the run's total step count")
    p.add_argument("--out", default=None, help="the run folder to create")
    p.add_argument("--resume", default=None, help="a run folder or checkpoint to continue")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=whole_number, default=None,
                   help="CPU threads for PyTorch (0: PyTorch's default; 1 is fastest on a busy machine)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="assignments",
                   help="change one setting, e.g. --set optim.lr=3e-4 (repeatable; `diffstudio settings` lists them)")
    p.add_argument("--dry-run", action="store_true",
                   help="set up, estimate memory and time per step (3-step probe), and write nothing")
    p.add_argument("--device-memory", type=float, default=None, metavar="GIB",
                   help="with --dry-run: the memory to plan for, instead of what this device has")
    p.add_argument("--json", action="store_true", help="end with one JSON line of results")


def _sample_parser(sub) -> None:
    from diffstudio.core.samplers import SAMPLERS
    from diffstudio.engine.oracle import ORACLE_SOURCES
    from diffstudio.engine.presets import PRESETS

    p = sub.add_parser("sample", help="sample a trained run, a checkpoint or a perfect model to a PNG grid")
    p.add_argument("source", nargs="?", help="a run folder or checkpoint folder (not with --oracle)")
    p.add_argument("--oracle", choices=ORACLE_SOURCES, default=None, metavar="DATASET",
                   help=f"sample the exact denoiser of a dataset instead of a model ({', '.join(ORACLE_SOURCES)}): "
                        "what the schedule and sampler give with no training")
    p.add_argument("--config", default=None, help="with --oracle: a config file (.toml or .json)")
    p.add_argument("--preset", choices=list(PRESETS), default=None, help="with --oracle: a named configuration")
    p.add_argument("--sampler", choices=list(SAMPLERS), default=None)
    p.add_argument("--steps", type=whole_number, default=None)
    p.add_argument("--spacing", choices=SPACINGS, default=None)
    p.add_argument("--shift", type=float, default=None, help="the time shift of --spacing shifted (SD3: 3)")
    p.add_argument("--n", type=whole_number, default=16)
    p.add_argument("--seed", type=whole_number, default=0)
    p.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale")
    p.add_argument("--cfg-rescale", type=float, default=None, help="guidance rescale phi (Lin et al.)")
    p.add_argument("--eta", type=float, default=None, help="ddim_eta's noise, 0 (DDIM) to 1 (DDPM)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="the PNG file to write")
    p.add_argument("--npy", default=None, help="also save the raw samples as .npy")


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint for diffusers or as one safetensors file")
    p.add_argument("source", help="a run folder or checkpoint folder")
    p.add_argument("--format", choices=("diffusers", "safetensors"), default="diffusers")
    p.add_argument("--out", required=True)


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="validation loss by noise level and sample quality of a run or checkpoint")
    p.add_argument("source", help="a run folder or checkpoint folder")
    p.add_argument("--model", choices=("ema", "raw"), default="ema", help="which weights (default: EMA)")
    p.add_argument("--quality-samples", type=whole_number, default=None, help="samples for the quality measures "
                   "(default: the run's sampling.quality_samples; 0 skips them)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys t, loss, x0_mse, eps_mse, "
                   "x0_mse_mean, quality, ...)")


def _settings_parser(sub) -> None:
    p = sub.add_parser("settings", help="list every setting with its type, default, range or choices, and help")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object (with a JSON Schema per section)")
    fmt.add_argument("--markdown", action="store_true", help="the Markdown of docs/settings.md")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every subcommand (schedule, dataset, train, sample, export, eval, settings)."""
    p = _Parser(prog="diffstudio", description="Train diffusion and flow-matching models and see why choices work. "
                "Run without arguments to open the app.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    for add in (_schedule_parser, _dataset_parser, _train_parser, _sample_parser, _export_parser, _eval_parser,
                _settings_parser):
        add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. The one error boundary: every exception ends as one line on stderr
    (``describe_error``) and exit code 2 (usage) or 1 (run time); an unexpected one also leaves
    its traceback in a log file that the line names."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 0
        from diffstudio import commands

        return getattr(commands, args.command.replace("-", "_"))(args)
    except (Exception, KeyboardInterrupt) as e:
        report = report_error(e)
        commands = sys.modules.get("diffstudio.commands")
        if commands is not None:
            commands.end_progress_line()
        print(f"diffstudio: error: {report.message}", file=sys.stderr)
        return report.code


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["main", "build_parser", "UsageError", "json"]
