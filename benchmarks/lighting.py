"""The seed's uniform-lighting claim (Lin et al. 2024, Sec. 3) on the built-in ``lighting`` data.

Trains the presets ``lighting-sd-eps`` (Stable Diffusion's scaled_linear betas, eps, leading) and
``lighting-ztsnr-v`` (the same betas rescaled to zero terminal SNR, v, trailing) with the same
budget (tiny UNet, 32x32 grey, batch 64, 500 steps), samples >= 512 images from each with 50 DDIM
steps and reports the spread ratio = std of the samples' mean brightness / std of the data's, plus
the fractions of very dark (< -0.7) and very bright (> 0.7) samples against the data's.

Then the same figures for the *exact* denoiser (``engine.oracle``, data ``lighting-flat``), for the
two recipes and for every mix of schedule x parameterization x spacing, which shows how much of
the compression is the recipe itself rather than training; and the control: the SD model (trained
and exact) started from the correct noisy distribution at the first grid time,
``x = alpha_T0 x0_data + sigma_T0 eps`` with real data images, instead of pure noise.

    python benchmarks/lighting.py            # full: two 500-step trainings, 512 samples each
    python benchmarks/lighting.py --quick    # smoke run (< 1 min; figures not meaningful)

Writes benchmarks/results/lighting.json and lighting.png (sample grids + brightness histograms).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import _common as C  # noqa: E402
from diffstudio.core.denoiser import Denoiser, oracle_model  # noqa: E402
from diffstudio.core.grids import sampling_grid  # noqa: E402
from diffstudio.core.parameterization import Coefficients, add_noise  # noqa: E402
from diffstudio.core.samplers import sample  # noqa: E402
from diffstudio.data.lighting import make_lighting_flat  # noqa: E402
from diffstudio.data.registry import load_dataset  # noqa: E402
from diffstudio.engine.metrics import brightness_spread  # noqa: E402
from diffstudio.engine.oracle import oracle_data, oracle_preview  # noqa: E402
from diffstudio.engine.presets import preset  # noqa: E402
from diffstudio.engine.sampling import generate, to_grid  # noqa: E402

RECIPES = {"lighting-sd-eps": "SD + eps + leading", "lighting-ztsnr-v": "ZTSNR + v + trailing"}


def spread_of(samples: torch.Tensor, data: torch.Tensor) -> dict[str, float]:
    return {k: round(v, 4) for k, v in brightness_spread(samples, data).items()}


def start_from_data(schedule, grid, x0: torch.Tensor, seed: int) -> torch.Tensor:
    """The correct marginal at the grid's first time: ``alpha_T0 x0 + sigma_T0 eps``."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed), dtype=x0.dtype)
    return add_noise(x0, eps, Coefficients.at(schedule, float(grid[0])))


def oracle_figures(cfg, n: int, seed: int = 0) -> dict:
    """The exact denoiser of lighting-flat under ``cfg``'s recipe, from pure noise."""
    flat = cfg.updated(data={"source": "lighting-flat", "resolution": 32, "channels": 1})
    prev = oracle_preview(flat, n=n, seed=seed, grid_count=0)
    b = prev.mean_brightness
    return {"spread_ratio": round(prev.spread, 4), "dark_fraction": round(float((b < -0.7).mean()), 4),
            "bright_fraction": round(float((b > 0.7).mean()), 4), "warnings": prev.warnings,
            "first_grid_t": float(prev.grid_times[0])}


def oracle_control(cfg, n: int, seed: int = 0) -> dict:
    """The exact SD-eps denoiser started from ``alpha_T0 b + sigma_T0 eps`` (b ~ U(-1, 1)), not noise."""
    data = oracle_data("lighting-flat", 32, 1)
    schedule = cfg.schedule.build()
    param = cfg.objective.parameterization
    grid = sampling_grid(schedule, cfg.sampling.steps, cfg.sampling.spacing)
    x0 = make_lighting_flat(n, 32, 1, seed=seed + 1).x.double()
    x = start_from_data(schedule, grid, x0, seed + 2)
    den = Denoiser(oracle_model(data.x0_fn, schedule, param), schedule, param, on_singular="warn")
    out = sample(cfg.sampling.sampler, den, x, grid, schedule)
    b = out.flatten(1).mean(1)
    return {"spread_ratio": round(float(b.std() / data.data_std), 4),
            "dark_fraction": round(float((b < -0.7).double().mean()), 4),
            "bright_fraction": round(float((b > 0.7).double().mean()), 4),
            "corr_with_start_image": round(float(np.corrcoef(b.numpy(), x0.flatten(1).mean(1).numpy())[0, 1]), 4)}


def oracle_matrix(n: int, steps: int) -> list[dict]:
    """Every mix of {SD, ZTSNR} x {eps, v} x {leading, trailing} under the exact denoiser."""
    rows = []
    base = preset("lighting-sd-eps")
    for ztsnr in (False, True):
        for param in ("eps", "v"):
            for spacing in ("leading", "trailing"):
                cfg = base.updated(schedule={"ztsnr": ztsnr}, objective={"parameterization": param},
                                   sampling={"spacing": spacing, "steps": steps})
                r = oracle_figures(cfg, n)
                rows.append({"schedule": "ZTSNR" if ztsnr else "SD", "param": param, "spacing": spacing,
                             "first_grid_t": r["first_grid_t"], "spread_ratio": r["spread_ratio"],
                             "dark_fraction": r["dark_fraction"], "bright_fraction": r["bright_fraction"],
                             "singular_warning": bool(r["warnings"])})
    return rows


def trained_figures(name: str, args, data) -> tuple[dict, dict]:
    cfg = preset(name)
    steps = args.steps or cfg.run.steps
    # one preview at the end only (previews do not change training); fewer preview samples
    cfg = cfg.updated(run={"steps": steps, "preview_every": steps, "checkpoint_every": max(1, steps // 2)},
                      sampling={"num_samples": 16, "steps": args.sample_steps})
    trainer, result, seconds = C.train(cfg, name=name)
    model = C.ema_model(trainer)
    t0 = time.perf_counter()
    prev = generate(model, cfg, trainer.info, n=args.samples, seed=1)
    sample_seconds = time.perf_counter() - t0
    samples = torch.from_numpy(prev.samples)
    fig = {"recipe": RECIPES[name], "train_steps": result.steps, "final_loss": round(result.final_loss, 5),
           "train_seconds": round(seconds, 1), "train_cpu_seconds": round(trainer.bench_cpu_seconds, 1),
           "sample_seconds": round(sample_seconds, 1),
           "n_samples": len(samples), "sampling_steps": cfg.sampling.steps, **spread_of(samples, data.x)}
    extra = {"samples": samples, "model": model, "cfg": cfg}
    return fig, extra


def trained_control(extra, data, n: int) -> dict:
    """The trained SD model started from alpha_T0 x0_data + sigma_T0 eps (real lighting images)."""
    cfg, model = extra["cfg"], extra["model"]
    schedule = cfg.schedule.build()
    grid = sampling_grid(schedule, cfg.sampling.steps, cfg.sampling.spacing)
    idx = torch.randperm(len(data.x), generator=torch.Generator().manual_seed(2))[:n]
    x0 = data.x[idx]
    x = start_from_data(schedule, grid, x0, seed=3)
    den = Denoiser(model, schedule, cfg.objective.parameterization, on_singular="warn")
    with torch.no_grad():
        out = sample(cfg.sampling.sampler, den, x, grid, schedule)
    fig = spread_of(out, data.x)
    fig["corr_with_start_image"] = round(float(np.corrcoef(out.flatten(1).mean(1).numpy(),
                                                          x0.flatten(1).mean(1).numpy())[0, 1]), 4)
    fig["first_grid_t"] = float(grid[0])
    fig["alpha_T0"] = round(float(schedule.alpha(float(grid[0]))), 5)
    return fig, out


def figure(panels, data_brightness: np.ndarray, path) -> None:
    cols = []
    for title, samples, stats in panels:
        grid = C.image_tile(to_grid(samples[:64], nrow=8), scale=2)
        b = samples.flatten(1).mean(1).numpy()
        hist = C.histogram([data_brightness, b], ["data", "samples"], size=(grid.width, 200),
                           title=f"mean brightness: spread ratio {stats['spread_ratio']:.2f}")
        cols.append(C.stack([C.caption(title, grid.width), grid, hist]))
    C.stack(cols, horizontal=True).save(path)


def main(argv=None) -> int:
    p = C.base_parser(__doc__)
    p.add_argument("--steps", type=int, default=None, help="training steps per preset (default: the preset's 500)")
    p.add_argument("--samples", type=int, default=512, help="images sampled from each model")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--oracle-samples", type=int, default=4096)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.samples, args.sample_steps, args.oracle_samples = args.steps or 3, 32, 5, 256
    C.set_threads(args.threads)
    t_start = time.perf_counter()
    out = {"benchmark": "lighting", "mode": "quick" if args.quick else "full", "machine": C.machine_info(),
           "revision": C.git_revision(), "command": "python benchmarks/lighting.py" + (" --quick" if args.quick else "")}
    data = load_dataset("lighting", resolution=32, channels=1, labels=False)
    data_b = data.x.flatten(1).mean(1).numpy()
    out["data"] = {"n": len(data), "brightness_std": round(float(data_b.std()), 4),
                   "dark_fraction": round(float((data_b < -0.7).mean()), 4),
                   "bright_fraction": round(float((data_b > 0.7).mean()), 4)}

    # exact denoiser (no training): the two recipes, the control, and the full matrix
    oracle = {}
    for name, label in RECIPES.items():
        cfg = preset(name).updated(sampling={"steps": args.sample_steps})
        oracle[label] = oracle_figures(cfg, args.oracle_samples)
    oracle["SD + eps + leading, started from the data marginal"] = oracle_control(
        preset("lighting-sd-eps").updated(sampling={"steps": args.sample_steps}), args.oracle_samples)
    out["oracle"] = oracle
    out["oracle_matrix"] = oracle_matrix(args.oracle_samples, args.sample_steps)

    trained, extras = {}, {}
    for name in RECIPES:
        trained[name], extras[name] = trained_figures(name, args, data)
        print(f"trained {name}: {trained[name]['train_seconds']} s", flush=True)
    control, control_samples = trained_control(extras["lighting-sd-eps"], data, args.samples)
    out["trained"] = trained
    out["trained_control_sd_eps"] = control
    sd, zt = trained["lighting-sd-eps"], trained["lighting-ztsnr-v"]
    out["train_time_ratio_ztsnr_over_sd"] = round(zt["train_seconds"] / sd["train_seconds"], 3)
    out["total_seconds"] = round(time.perf_counter() - t_start, 1)

    rows = [["data", "-", 1.0, out["data"]["dark_fraction"], out["data"]["bright_fraction"]]]
    for name, f in trained.items():
        rows.append([f"trained {f['recipe']}", f"{f['train_steps']} steps", f["spread_ratio"], f["dark_fraction"],
                     f["bright_fraction"]])
    rows.append(["trained SD + eps + leading from data marginal", f"t0={control['first_grid_t']:.3f}",
                 control["spread_ratio"], control["dark_fraction"], control["bright_fraction"]])
    for label, f in oracle.items():
        rows.append([f"exact {label}", "-", f["spread_ratio"], f["dark_fraction"], f["bright_fraction"]])
    print(C.table(rows, ["model", "budget", "spread ratio", "dark < -0.7", "bright > 0.7"]))
    print()
    print("exact denoiser, every mix (from pure noise):")
    print(C.table([[r["schedule"], r["param"], r["spacing"], r["first_grid_t"], r["spread_ratio"],
                    "yes" if r["singular_warning"] else ""] for r in out["oracle_matrix"]],
                  ["schedule", "param", "spacing", "first t", "spread ratio", "singular at t0"]))
    print(f"\ntraining seconds: SD-eps {sd['train_seconds']}, ZTSNR-v {zt['train_seconds']} "
          f"(ratio {out['train_time_ratio_ztsnr_over_sd']}); total {out['total_seconds']} s")

    path = C.save_json(args.out, "lighting", out)
    png = os.path.join(args.out, "lighting.png")
    figure([(f"trained {RECIPES['lighting-sd-eps']} (from noise)", extras["lighting-sd-eps"]["samples"], sd),
            (f"trained {RECIPES['lighting-ztsnr-v']} (from noise)", extras["lighting-ztsnr-v"]["samples"], zt),
            ("trained SD + eps + leading, from the data marginal", control_samples, control)], data_b, png)
    print(f"wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
