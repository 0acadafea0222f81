"""The fine-tuning workflow of Lin et al. 2024 (Sec. 5) on the built-in ``lighting`` data: an
eps-trained model (preset ``lighting-sd-eps``: SD betas, eps, leading) fine-tuned with the preset
``finetune-ztsnr-v`` (the same betas rescaled to zero terminal SNR, v-prediction, trailing).

Reports the spread ratio (std of the samples' mean brightness / the data's; 1 is right, the SD
recipe compresses it) and the fractions of very dark / very bright samples, for the eps model
sampled with its own recipe and for each checkpoint of the fine-tune sampled with the new one (EMA
and raw weights: the EMA starts at the pretrained weights, so early on it still carries them),
plus the brightness statistics of the previews the fine-tune wrote (what the app's histogram shows).

    python benchmarks/finetune.py --eps-steps 500 --ft-steps 300     # train both, then measure
    python benchmarks/finetune.py --eps RUN --ft RUN                 # measure existing runs
    python benchmarks/finetune.py --quick                            # smoke run (figures not meaningful)

Writes benchmarks/results/finetune.json.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import _common as C  # noqa: E402
from diffstudio.data.registry import load_dataset  # noqa: E402
from diffstudio.engine.metrics import brightness_spread  # noqa: E402
from diffstudio.engine.run_dir import RunDir  # noqa: E402
from diffstudio.engine.sampling import generate, load_for_sampling  # noqa: E402


def train(preset: str, steps: int, out: str, threads: int | None, *sets: str) -> str:
    cmd = [sys.executable, "-m", "diffstudio", "train", "--preset", preset, "--steps", str(steps), "--out", out]
    cmd += ["--threads", str(threads)] if threads else []
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, PYTHONPATH=str(C.ROOT))
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return out


def measure(source, n: int, data: torch.Tensor, raw: bool = False) -> dict:
    """Spread figures of ``n`` samples (50 DDIM steps of the run's recipe) from the EMA weights,
    or from the raw weights with ``raw``."""
    loaded = load_for_sampling(source)
    if raw:
        from diffstudio.engine.checkpoint import load_checkpoint

        loaded.model.load_state_dict(load_checkpoint(source).model)
    samples = torch.from_numpy(generate(loaded.model, loaded.config, loaded.data_info, n=n, seed=1).samples)
    s, c = loaded.config, loaded.config.schedule
    row = {"source": str(loaded.path), "step": loaded.step, "weights": "raw" if raw else "ema",
           "recipe": f"{c.family}{' ZTSNR' if c.ztsnr else ''}, {s.objective.parameterization}, {s.sampling.spacing}"}
    row.update({k: round(v, 4) for k, v in brightness_spread(samples, data).items()})
    return row


def main() -> None:
    p = C.base_parser(__doc__)
    p.add_argument("--eps", default=None, help="an existing lighting-sd-eps run")
    p.add_argument("--ft", default=None, help="an existing finetune-ztsnr-v run")
    p.add_argument("--eps-steps", type=int, default=500)
    p.add_argument("--ft-steps", type=int, default=300)
    p.add_argument("--samples", type=int, default=256)
    args = p.parse_args()
    C.set_threads(args.threads)
    if args.quick:
        args.eps_steps, args.ft_steps, args.samples = 4, 4, 16
    work = tempfile.mkdtemp(prefix="dsfinetune-")
    eps = args.eps or train("lighting-sd-eps", args.eps_steps, os.path.join(work, "eps"), args.threads)
    ft = args.ft or train("finetune-ztsnr-v", args.ft_steps, os.path.join(work, "ft"), args.threads,
                          f"model.init_from={eps}")
    data = load_dataset("lighting", resolution=32, channels=1, labels=False, seed=0).x
    out = {"machine": C.machine_info(), "samples": args.samples, "rows": [measure(eps, args.samples, data)]}
    run = RunDir(ft)
    for step, path in run.checkpoints():
        out["rows"] += [measure(path, args.samples, data), measure(path, args.samples, data, raw=True)]
    out["fine_tune_previews"] = [
        {"step": step, "brightness_std_over_data": round(float(torch.tensor(stats["mean_brightness"]).std())
                                                         / float(data.flatten(1).mean(1).std()), 4)}
        for step, stats in _preview_stats(run)]
    print(C.table([[r["recipe"], r["step"], r["weights"], r["spread_ratio"], r["dark_fraction"], r["bright_fraction"]]
                   for r in out["rows"]], ["model", "step", "weights", "spread ratio", "dark", "bright"]))
    print("previews of the fine-tune (64 samples):", out["fine_tune_previews"])
    print(f"wrote {C.save_json(args.out, 'finetune' + ('-quick' if args.quick else ''), out)}")


def _preview_stats(run: RunDir):
    for step, _ in run.previews():
        stats = run.preview_stats(step)
        if stats and "mean_brightness" in stats:
            yield step, stats


if __name__ == "__main__":
    main()
