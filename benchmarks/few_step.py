"""Sample quality against the number of sampling steps (1, 2, 4, 8, 32) for eps, v and flow
prediction, with ``leading`` and ``trailing`` timestep spacing (Lin et al. 2024, Sec. 3.3-3.4).

Recipes (each trained with the engine's Trainer, sampled with DDIM, eta = 0; on a rectified-flow
schedule DDIM is exactly Euler):

- ``eps / SD``     scaled_linear betas (terminal signal alpha_1 = 0.068), eps-prediction
- ``eps / ZTSNR``  the same betas rescaled to zero terminal SNR, eps-prediction
- ``v / ZTSNR``    the same betas rescaled to zero terminal SNR, v-prediction
- ``flow / RF``    rectified flow (alpha = 1 - t, sigma = t), flow-prediction

``leading`` / ``trailing`` are diffusers' spacings over T = 1000 (index i is t = (i + 1) / T); for the
rectified-flow schedule the same t values are used (trailing = uniform t from 1).

Measures:
0. Samplers (no training): all seven samplers driven by exact denoisers. ``gaussians8``: sliced
   Wasserstein of 2000 samples, for v / ZTSNR + trailing, eps / SD + trailing and flow / RF; and
   karras against uniform spacing at 10 steps on the continuous zero-terminal-SNR schedules
   (cosine, flow, EDM + ZTSNR). ``lighting-flat`` (flat images of uniform brightness, 64 samples of
   16x16): noise left inside the samples (largest within-image std; 0 = all flat) and the
   brightness spread over the samples divided by the data's (1 = the full range).
1. 2-D toys: MLPs trained on ``moons`` and ``gaussians8``; sliced Wasserstein distance
   (``engine.metrics.sliced_wasserstein``) between 2000 samples and 4096 fresh data points. The floor
   is the distance between two data samples of those sizes.
2. The exact denoiser of ``gaussians8`` (``engine.oracle``): the same table with no training error,
   which separates what the schedule/parameterization/spacing allow from what training reached.
3. ``digits`` (class-conditional UNet, the quickstart recipe otherwise: min-SNR-5 weighting, CFG 1.5
   with rescale 0.7): a scikit-learn LogisticRegression trained on 75 % of the real digits judges 200
   samples (20 per class): recognized = top probability >= 0.9; as requested = recognized and the top
   class is the requested one; blank = per-image pixel std < 0.1 ("nothing").

    python benchmarks/few_step.py                      # full (toys 2000 steps, digits 1500 steps)
    python benchmarks/few_step.py --digits-steps 800   # a smaller digits budget
    python benchmarks/few_step.py --skip-digits        # samplers + toys only (18 min on 1 thread, load 7-11)
    python benchmarks/few_step.py --only-samplers      # section 0 only (a few minutes, no training)
    python benchmarks/few_step.py --quick              # smoke run (< 1 min; figures not meaningful)

The trained toy models are sampled with DDIM on both spacings and with every sampler on trailing.

Writes benchmarks/results/few_step.json and few_step.png.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import _common as C  # noqa: E402
from diffstudio.core.denoiser import Denoiser, oracle_model  # noqa: E402
from diffstudio.core.grids import discrete_timesteps, sampling_grid  # noqa: E402
from diffstudio.core.samplers import SAMPLERS, sample  # noqa: E402
from diffstudio.core.schedules import DiscreteSchedule  # noqa: E402
from diffstudio.data.registry import load_dataset  # noqa: E402
from diffstudio.engine.metrics import sliced_wasserstein  # noqa: E402
from diffstudio.core.schedules import make_schedule  # noqa: E402
from diffstudio.engine.oracle import oracle_data  # noqa: E402
from diffstudio.engine.presets import preset  # noqa: E402
from diffstudio.engine.sampling import to_grid  # noqa: E402

STEPS = (1, 2, 4, 8, 32)
SPACINGS = ("leading", "trailing")
RECIPES = {
    "eps / SD": ({"family": "scaled_linear", "ztsnr": False}, "eps"),
    "eps / ZTSNR": ({"family": "scaled_linear", "ztsnr": True}, "eps"),
    "v / ZTSNR": ({"family": "scaled_linear", "ztsnr": True}, "v"),
    "flow / RF": ({"family": "flow", "ztsnr": False}, "flow"),
}


def grid_for(schedule, steps: int, spacing: str) -> torch.Tensor:
    """Diffusers' leading/trailing times; for a continuous schedule the same t = (i + 1) / 1000."""
    if isinstance(schedule, DiscreteSchedule):
        return sampling_grid(schedule, steps, spacing)
    t = (torch.from_numpy(discrete_timesteps(1000, steps, spacing)).double() + 1.0) / 1000.0
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


def run_sampler(model, schedule, param, x, grid, cond=None, uncond=None, scale=1.0, rescale=0.0, sampler="ddim",
                seed=0):
    den = Denoiser(model, schedule, param, cond, uncond, scale, rescale, on_singular="warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sample(sampler, den, x, grid, schedule, eta=0.5, generator=torch.Generator().manual_seed(seed))
    return out.float(), bool(caught)


def recipe_config(base, recipe: str):
    sched, param = RECIPES[recipe]
    return base.updated(schedule=sched, objective={"parameterization": param},
                        sampling={"sampler": "ddim", "spacing": "trailing" if sched["family"] != "flow" else "uniform"})


# ------------------------------------------------------------------------------------------ toys


def toy_table(model, cfg, reference: torch.Tensor, n: int, seed: int) -> list[dict]:
    schedule = cfg.schedule.build()
    param = cfg.objective.parameterization
    x = torch.randn((n, 2), generator=torch.Generator().manual_seed(seed))
    rows = []
    for spacing in SPACINGS:
        for steps in STEPS:
            out, singular = run_sampler(model, schedule, param, x.to(torch.float32) if model is not None else x,
                                        grid_for(schedule, steps, spacing))
            out = torch.nan_to_num(out.double(), nan=1e3, posinf=1e3, neginf=-1e3)
            rows.append({"spacing": spacing, "steps": steps, "sw": round(sliced_wasserstein(out, reference), 4),
                         "spread": round(float(out.std(0).mean()), 3), "singular_warning": singular})
    return rows


def sampler_rows(model, schedule, param, x, grid_of, reference) -> dict:
    """{sampler: [SW at each of STEPS]} on the grids ``grid_of(steps)``."""
    table = {}
    for name in SAMPLERS:
        sws = []
        for steps in STEPS:
            out, _ = run_sampler(model, schedule, param, x, grid_of(steps), sampler=name, seed=steps)
            out = torch.nan_to_num(out.double(), nan=1e3, posinf=1e3, neginf=-1e3)
            sws.append(round(sliced_wasserstein(out, reference), 4))
        table[name] = sws
    return table


# ------------------------------------------------------------------------------------------ samplers

SAMPLER_RECIPES = {  # name -> (schedule settings, parameterization, spacing)
    "v / ZTSNR, trailing": ({"family": "scaled_linear", "ztsnr": True}, "v", "trailing"),
    "eps / SD, trailing": ({"family": "scaled_linear", "ztsnr": False}, "eps", "trailing"),
    "flow / RF, uniform": ({"family": "flow", "ztsnr": False}, "flow", "uniform"),
}
KARRAS_SCHEDULES = {"cosine": {"family": "cosine"}, "flow": {"family": "flow"},
                    "edm + ZTSNR": {"family": "edm", "ztsnr": True}}
KARRAS_STEPS = 10


def samplers_section(args, result: dict) -> None:
    """Every sampler on exact denoisers: no training, so only the sampler and its grid are measured."""
    n = args.toy_samples
    ref = load_dataset("gaussians8", n=4096, seed=1, labels=False).x.double()
    g8 = oracle_data("gaussians8")
    x = torch.randn((n, 2), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    out = {"gaussians8": {}, "karras_vs_uniform": {}, "lighting_flat": {}}
    for recipe, (sched, param, spacing) in SAMPLER_RECIPES.items():
        schedule = make_schedule(**sched)
        model = oracle_model(g8.x0_fn, schedule, param)
        out["gaussians8"][recipe] = sampler_rows(model, schedule, param, x,
                                                 lambda k: sampling_grid(schedule, k, spacing), ref)
    for label, sched in KARRAS_SCHEDULES.items():
        schedule = make_schedule(**sched)
        model = oracle_model(g8.x0_fn, schedule, "v")
        entry = {}
        for name in SAMPLERS:
            entry[name] = {}
            for spacing in ("uniform", "karras"):
                o, _ = run_sampler(model, schedule, "v", x, sampling_grid(schedule, KARRAS_STEPS, spacing), sampler=name)
                entry[name][spacing] = round(sliced_wasserstein(o.double(), ref), 4)
        out["karras_vs_uniform"][label] = entry
    flat = oracle_data("lighting-flat", resolution=16, channels=1)
    xi = torch.randn((64, 1, 16, 16), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for recipe, (sched, param, spacing) in SAMPLER_RECIPES.items():
        schedule = make_schedule(**sched)
        model = oracle_model(flat.x0_fn, schedule, param)
        entry = {}
        for name in SAMPLERS:
            rows = []
            for steps in STEPS:
                o, _ = run_sampler(model, schedule, param, xi, sampling_grid(schedule, steps, spacing), sampler=name,
                                   seed=steps)
                o = o.double()
                rows.append({"within_std": float(f"{float(o.flatten(1).std(1).max()):.3g}"),
                             "spread": round(float(o.flatten(1).mean(1).std()) / flat.data_std, 3)})
            entry[name] = rows
        out["lighting_flat"][recipe] = entry
    result["samplers"] = out
    print("  samplers on exact denoisers: done", flush=True)


def toys(args, result: dict) -> None:
    base = preset("moons-flow").updated(run={"steps": args.toy_steps, "preview_every": args.toy_steps,
                                             "checkpoint_every": args.toy_steps},
                                        sampling={"num_samples": 64, "steps": 8})
    n = args.toy_samples
    result["toys"] = {}
    sources = list(args.toy_sources) + [s for s in args.oracle_sources if s not in args.toy_sources]
    for source in sources:
        ref = load_dataset(source, n=4096, seed=1, labels=False).x.double()
        other = load_dataset(source, n=n, seed=2, labels=False).x.double()
        entry = {"floor_sw_data_vs_data": round(sliced_wasserstein(other, ref), 4),
                 "sw_noise_vs_data": round(sliced_wasserstein(torch.randn(n, 2, dtype=torch.float64), ref), 4),
                 "sw_point_at_origin_vs_data": round(sliced_wasserstein(torch.zeros(n, 2, dtype=torch.float64), ref), 4),
                 "trained": {}}
        for recipe in (args.recipes if source in args.toy_sources else []):
            cfg = recipe_config(base.updated(data={"source": source}), recipe)
            trainer, res, seconds = C.train(cfg, name=f"{source}-{recipe.replace(' / ', '-')}")
            model = C.ema_model(trainer)
            schedule, param = cfg.schedule.build(), cfg.objective.parameterization
            x = torch.randn((n, 2), generator=torch.Generator().manual_seed(7))
            entry["trained"][recipe] = {"train_seconds": round(seconds, 1), "final_loss": round(res.final_loss, 4),
                                        "rows": toy_table(model, cfg, ref, n, seed=7),
                                        "samplers_trailing": sampler_rows(model, schedule, param, x,
                                                                          lambda k: grid_for(schedule, k, "trailing"), ref)}
            print(f"  {source} {recipe}: trained {res.steps} steps in {seconds:.1f} s", flush=True)
        if source in args.oracle_sources:
            entry["oracle"] = {}
            data = oracle_data("gaussians8")
            for recipe in RECIPES:
                cfg = recipe_config(base, recipe)
                schedule, param = cfg.schedule.build(), cfg.objective.parameterization
                model = oracle_model(data.x0_fn, schedule, param)
                entry["oracle"][recipe] = {"rows": toy_table(model, cfg, ref, n, seed=7)}
        result["toys"][source] = entry


# ------------------------------------------------------------------------------------------ digits


def digits(args, result: dict, judge) -> dict:
    base = preset("quickstart").updated(run={"steps": args.digits_steps, "preview_every": args.digits_steps,
                                             "checkpoint_every": args.digits_steps},
                                        sampling={"num_samples": 10, "steps": 4})
    n = args.digit_samples
    cond = torch.arange(n) % 10
    uncond = torch.full_like(cond, 10)
    x = torch.randn((n, 1, 8, 8), generator=torch.Generator().manual_seed(11))
    s = base.sampling
    out = {"judge_on_real_held_out": judge.held_out, "steps_trained": args.digits_steps, "trained": {}}
    sheets = {}
    for recipe in args.digit_recipes:
        cfg = recipe_config(base, recipe)
        trainer, res, seconds = C.train(cfg, name=f"digits-{recipe.replace(' / ', '-')}")
        model = C.ema_model(trainer)
        schedule, param = cfg.schedule.build(), cfg.objective.parameterization
        rows = []
        for spacing in SPACINGS:
            for steps in STEPS:
                samples, singular = run_sampler(model, schedule, param, x, grid_for(schedule, steps, spacing),
                                                cond, uncond, s.guidance_scale, s.guidance_rescale)
                samples = torch.nan_to_num(samples, nan=0.0).clamp(-1, 1)
                score = judge.score(samples.numpy(), cond.numpy())
                blank = float((samples.flatten(1).std(1) < 0.1).float().mean())
                rows.append({"spacing": spacing, "steps": steps, **{k: round(v, 3) for k, v in score.items()},
                             "blank": round(blank, 3), "singular_warning": singular})
                if spacing == "trailing" and steps in (1, 32):
                    sheets[(recipe, steps)] = samples[:10]
        out["trained"][recipe] = {"train_seconds": round(seconds, 1), "final_loss": round(res.final_loss, 4), "rows": rows}
        print(f"  digits {recipe}: trained {res.steps} steps in {seconds:.1f} s", flush=True)
    result["digits"] = out
    return sheets


# ------------------------------------------------------------------------------------------ report


def print_samplers(sec: dict) -> None:
    header = ["recipe", "sampler"] + [f"{s} st" for s in STEPS]
    print("\ngaussians8, exact denoiser: sliced Wasserstein to the data by sampler (lower is better)")
    print(C.table([[r, name] + sws for r, e in sec["gaussians8"].items() for name, sws in e.items()], header))
    print(f"\nkarras vs uniform spacing, {KARRAS_STEPS} steps, gaussians8 exact v-denoiser (SW)")
    print(C.table([[sch, name, v["uniform"], v["karras"]] for sch, e in sec["karras_vs_uniform"].items()
                   for name, v in e.items()], ["schedule", "sampler", "uniform", "karras"]))
    print("\nlighting-flat, exact denoiser: largest within-image std (noise left) / brightness spread vs the data's")
    print(C.table([[r, name] + [f"{x['within_std']:.2g} / {x['spread']:.2f}" for x in rows]
                   for r, e in sec["lighting_flat"].items() for name, rows in e.items()], header))


def print_report(result: dict) -> None:
    if "samplers" in result:
        print_samplers(result["samplers"])
    for source, entry in result.get("toys", {}).items():
        print(f"\n{source}: sliced Wasserstein to the data (lower is better); floor {entry['floor_sw_data_vs_data']}, "
              f"N(0, I) {entry['sw_noise_vs_data']}, point at origin {entry['sw_point_at_origin_vs_data']}")
        blocks = [("trained", entry["trained"])] + ([("exact", entry["oracle"])] if "oracle" in entry else [])
        for kind, recipes in blocks:
            if not recipes:
                continue
            header = ["model", "spacing"] + [f"{s} st" for s in STEPS]
            rows = []
            for recipe, e in recipes.items():
                for spacing in SPACINGS:
                    vals = [r for r in e["rows"] if r["spacing"] == spacing]
                    rows.append([f"{kind} {recipe}", spacing] + [r["sw"] for r in vals])
            print(C.table(rows, header))
        for recipe, e in entry["trained"].items():
            if "samplers_trailing" in e:
                print(f"{source}, trained {recipe}, trailing, by sampler (SW)")
                print(C.table([[name] + sws for name, sws in e["samplers_trailing"].items()],
                              ["sampler"] + [f"{s} st" for s in STEPS]))
    if "digits" in result:
        d = result["digits"]
        h = d["judge_on_real_held_out"]
        print(f"\ndigits ({d['steps_trained']} training steps): share of 200 samples recognized as the requested class "
              f"with p >= 0.9 [blank share]; real held-out digits: {h['recognized']:.3f} recognized")
        header = ["model", "spacing"] + [f"{s} st" for s in STEPS]
        rows = []
        for recipe, e in d["trained"].items():
            for spacing in SPACINGS:
                vals = [r for r in e["rows"] if r["spacing"] == spacing]
                rows.append([recipe, spacing] + [f"{r['as_requested']:.2f}" + (f" [{r['blank']:.2f}]" if r["blank"] else "")
                                                 for r in vals])
        print(C.table(rows, header))


def figure(result: dict, sheets: dict, path: str) -> None:
    panels = []
    if "samplers" in result:
        row = [C.line_plot({name: (STEPS, sws) for name, sws in e.items()},
                           title=f"gaussians8, exact, {recipe}: sliced W by sampler (clipped at 1.5)",
                           xlabel="sampling steps", ylabel="SW", ylim=(0.0, 1.5))
               for recipe, e in result["samplers"]["gaussians8"].items()]
        panels.append(C.stack(row, horizontal=True))
    for source, entry in result.get("toys", {}).items():
        blocks = [("trained MLP", entry["trained"])] + ([("exact denoiser", entry["oracle"])] if "oracle" in entry else [])
        for kind, recipes in blocks:
            if not recipes:
                continue
            row = []
            for spacing in SPACINGS:
                series = {r: (STEPS, [x["sw"] for x in e["rows"] if x["spacing"] == spacing]) for r, e in recipes.items()}
                row.append(C.line_plot(series, title=f"{source}, {kind}, {spacing}: sliced W (floor "
                                       f"{entry['floor_sw_data_vs_data']:.3f}; clipped at 1.5)",
                                       xlabel="sampling steps", ylabel="SW", ylim=(0.0, 1.5)))
            panels.append(C.stack(row, horizontal=True))
    if "digits" in result:
        row = []
        for spacing in SPACINGS:
            series = {r: (STEPS, [x["as_requested"] for x in e["rows"] if x["spacing"] == spacing])
                      for r, e in result["digits"]["trained"].items()}
            row.append(C.line_plot(series, title=f"digits, {spacing}: recognized as requested (p >= 0.9)",
                                   xlabel="sampling steps", ylabel="share", ylim=(0.0, 1.0)))
        panels.append(C.stack(row, horizontal=True))
    if sheets:
        tiles = []
        for (recipe, steps), s in sheets.items():
            tile = C.image_tile(to_grid(s, nrow=10), scale=4)
            tiles.append(C.stack([C.caption(f"{recipe}, {steps} step(s), trailing: 0..9", tile.width), tile]))
        half = (len(tiles) + 1) // 2
        panels.append(C.stack([C.stack(tiles[:half], horizontal=True), C.stack(tiles[half:], horizontal=True)]))
    C.stack(panels).save(path)


def main(argv=None) -> int:
    p = C.base_parser(__doc__)
    p.add_argument("--toy-steps", type=int, default=2000)
    p.add_argument("--toy-samples", type=int, default=2000)
    p.add_argument("--digits-steps", type=int, default=1500)
    p.add_argument("--digit-samples", type=int, default=200)
    p.add_argument("--skip-digits", action="store_true")
    p.add_argument("--recipes", default=",".join(RECIPES), help="recipes trained on the toys (comma-separated)")
    p.add_argument("--digit-recipes", default=",".join(RECIPES))
    p.add_argument("--toy-sources", default="moons,gaussians8", help="toys to train on")
    p.add_argument("--skip-toys", action="store_true")
    p.add_argument("--only-samplers", action="store_true", help="only the exact-denoiser sampler tables")
    args = p.parse_args(argv)
    if args.quick:  # every recipe on the toys, the singular and the fixed recipe on digits
        args.toy_steps, args.toy_samples, args.digits_steps, args.digit_samples = 10, 256, 2, 20
        args.toy_sources, args.digit_recipes = "moons", "eps / ZTSNR,v / ZTSNR"
    args.recipes, args.digit_recipes = args.recipes.split(","), args.digit_recipes.split(",")
    args.toy_sources = args.toy_sources.split(",")
    args.oracle_sources = ["gaussians8"]
    C.set_threads(args.threads)
    t0 = time.perf_counter()
    result = {"benchmark": "few_step", "mode": "quick" if args.quick else "full", "machine": C.machine_info(),
              "revision": C.git_revision(), "command": "python benchmarks/few_step.py " + " ".join(argv or sys.argv[1:]),
              "steps": STEPS, "sampler": "ddim (eta 0) unless a table names the sampler; ddim_eta with eta 0.5"}
    samplers_section(args, result)
    if args.only_samplers:
        args.skip_toys = args.skip_digits = True
    if not args.skip_toys:
        toys(args, result)
    sheets = {}
    if not args.skip_digits:
        sheets = digits(args, result, C.DigitsJudge())
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    print_report(result)
    path = C.save_json(args.out, "few_step", result)
    png = os.path.join(args.out, "few_step.png")
    figure(result, sheets, png)
    print(f"\ntotal {result['total_seconds']} s; wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
