"""Wall time until class-conditional ``digits`` samples are recognized as the requested class at
least 90 % of the time: the engine (``quickstart`` preset) against a plain loop written in the
style of diffusers' training examples, on the same model, schedule and objective.

Both runs are judged the same way at the same points (every ``preview_every`` = 100 steps): the
engine's ``generate`` draws 100 samples (10 per class, fixed seed, the preset's DDIM 25 trailing
steps, CFG 1.5 rescaled 0.7) from the EMA weights and a scikit-learn LogisticRegression trained on
75 % of the real digits classifies them. Two criteria, each >= 90 %: the share whose top class is the requested one
(``argmax_as_requested``; real held-out digits: ~0.97) and the stricter ``as_requested`` (top class
right *and* p >= 0.9; real held-out digits: ~0.91). A run stops once both are met.
The clock excludes evaluation (sampling + judging) for both; times with it are reported as well.

The engine runs through a Trainer hook (``on_preview`` scores the preview, ``should_stop`` ends the
run). The plain loop: the digits as PNG-encoded PIL images, a torch ``DataLoader`` (shuffle, batch
64, no workers: the example's defaults) whose dataset decodes each image and applies per-image
transforms in PIL/numpy (Resize, to-tensor, normalize to [-1, 1]); diffusers' ``DDPMScheduler``
(scaled_linear, ``rescale_betas_zero_snr``, v-prediction) for ``add_noise``/``get_velocity``;
``training_utils.compute_snr`` for min-SNR-5 weights; 10 % label dropout; AdamW with the same
warm-up + cosine learning rate, gradient clipping 1.0 and the same EMA (0.995) as the engine.
Only the loop and the data pipeline differ. The two alternate, one pair per round.

    python benchmarks/time_to_quality.py             # full: 3 rounds, up to 1500 steps each
    python benchmarks/time_to_quality.py --quick     # smoke run (< 1 min; figures not meaningful)

Writes benchmarks/results/time_to_quality.json.
"""

from __future__ import annotations

import io
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import _common as C  # noqa: E402
from diffstudio.engine.presets import preset  # noqa: E402
from diffstudio.engine.sampling import generate  # noqa: E402
from diffstudio.engine.trainer import TrainerHooks, lr_at  # noqa: E402
from diffstudio.models.info import DataInfo  # noqa: E402


METRICS = ("argmax_as_requested", "as_requested")


def record_reached(reached: dict, row: dict, target: float) -> bool:
    """Note the first row where each metric meets the target; True once all have."""
    for m in METRICS:
        if m not in reached and row[m] >= target:
            reached[m] = row
    return all(m in reached for m in METRICS)


class QualityHooks(TrainerHooks):
    """Scores every preview; stops the run once every criterion is met."""

    def __init__(self, judge, metric: str, target: float):
        self.judge, self.metric, self.target = judge, metric, target
        self.t_metrics = None
        self.eval_s = 0.0
        self.history: list[dict] = []
        self.reached_all: dict = {}
        self.stop = False

    @property
    def reached(self):
        return self.reached_all.get(self.metric)

    def on_start(self, info):
        self.t0 = time.perf_counter()

    def on_metrics(self, step, metrics):
        self.t_metrics = (step, time.perf_counter())  # a preview at this step starts right after

    def on_preview(self, step, preview):
        t_enter = time.perf_counter()
        began = self.t_metrics[1] if self.t_metrics and self.t_metrics[0] == step else t_enter
        score = self.judge.score(preview.samples, preview.labels)
        t_exit = time.perf_counter()
        train_s = began - self.t0 - self.eval_s
        self.eval_s += t_exit - began
        row = {"step": step, "train_s": round(train_s, 2), "wall_s": round(t_exit - self.t0, 2),
               **{k: round(v, 3) for k, v in score.items()}}
        self.history.append(row)
        self.stop = record_reached(self.reached_all, row, self.target)

    def should_stop(self):
        return self.stop


def run_engine(cfg, judge, args) -> dict:
    hooks = QualityHooks(judge, args.metric, args.target)
    t0 = time.perf_counter()
    trainer, result, seconds = C.train(cfg, hooks=hooks, name="ttq-engine")
    setup = hooks.t0 - t0
    return {"reached": hooks.reached, "reached_by_metric": hooks.reached_all, "history": hooks.history,
            "setup_s": round(setup, 2),
            "steps_run": result.steps, "total_s": round(seconds, 2)}


# ------------------------------------------------------------------------------------------ plain loop


class PNGDigits(torch.utils.data.Dataset):
    """The 1797 digits as PNG bytes (as an image dataset stores them), decoded and transformed per item."""

    def __init__(self, resolution: int = 8):
        from PIL import Image
        from sklearn.datasets import load_digits

        d = load_digits()
        self.resolution = resolution
        self.labels = d.target.astype(np.int64)
        self.png = []
        for img in d.images:
            buf = io.BytesIO()
            Image.fromarray(np.round(img * 255.0 / 16.0).astype(np.uint8), mode="L").save(buf, format="PNG")
            self.png.append(buf.getvalue())

    def __len__(self):
        return len(self.png)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.open(io.BytesIO(self.png[i])).convert("L")
        img = img.resize((self.resolution, self.resolution), Image.Resampling.BILINEAR)  # transforms.Resize
        arr = np.asarray(img, dtype=np.float32) / 255.0  # transforms.ToTensor
        arr = (arr - 0.5) / 0.5  # transforms.Normalize([0.5], [0.5])
        return torch.from_numpy(arr)[None], int(self.labels[i])


def run_plain(cfg, judge, args) -> dict:
    """The diffusers-example-style loop; same model, schedule, objective, optimizer, EMA."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import compute_snr
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from diffstudio.models.build import build_model

    t_setup = time.perf_counter()
    torch.manual_seed(cfg.run.seed)
    info = DataInfo("image", 1, 8, 10)
    model = build_model(cfg, info)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema_decay))
    o = cfg.optim
    optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay, betas=(o.beta1, o.beta2))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, cfg) / o.lr)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                    beta_schedule="scaled_linear", prediction_type="v_prediction",
                                    rescale_betas_zero_snr=True)
    loader = torch.utils.data.DataLoader(PNGDigits(), batch_size=o.batch_size, shuffle=True, num_workers=0)
    gamma = cfg.objective.gamma
    t0 = time.perf_counter()
    setup = t0 - t_setup
    eval_s, data_s, step, history, reached_all, done = 0.0, 0.0, 0, [], {}, False
    model.train()
    while step < cfg.run.steps and not done:
        t_data = time.perf_counter()
        for clean, labels in loader:
            data_s += time.perf_counter() - t_data
            noise = torch.randn_like(clean)
            timesteps = torch.randint(0, 1000, (clean.shape[0],)).long()
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            target = noise_scheduler.get_velocity(clean, noise, timesteps)
            drop = torch.rand(labels.shape) < cfg.model.cond_drop_prob
            labels = torch.where(drop, torch.full_like(labels, 10), labels)
            pred = model(noisy, timesteps, labels)
            snr = compute_snr(noise_scheduler, timesteps)
            weights = torch.stack([snr, gamma * torch.ones_like(timesteps)], dim=1).min(dim=1)[0] / (snr + 1)
            loss = torch.nn.functional.mse_loss(pred.float(), target.float(), reduction="none")
            loss = (loss.mean(dim=list(range(1, loss.dim()))) * weights).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
            optimizer.step()
            scheduler.step()
            ema.update_parameters(model)
            step += 1
            if step % cfg.run.preview_every == 0:
                began = time.perf_counter()
                ema.module.eval()
                preview = generate(ema.module, cfg, info, step=step)
                ema.module.train()
                score = judge.score(preview.samples, preview.labels)
                t_exit = time.perf_counter()
                row = {"step": step, "train_s": round(began - t0 - eval_s, 2), "wall_s": round(t_exit - t0, 2),
                       **{k: round(v, 3) for k, v in score.items()}}
                eval_s += t_exit - began
                history.append(row)
                done = record_reached(reached_all, row, args.target)
                if done:
                    break
            if step >= cfg.run.steps:
                break
            t_data = time.perf_counter()
    return {"reached": reached_all.get(args.metric), "reached_by_metric": reached_all, "history": history,
            "setup_s": round(setup, 2), "steps_run": step,
            "total_s": round(time.perf_counter() - t_setup, 2), "data_loading_s": round(data_s, 2)}


def summarize(runs: list[dict], metric: str) -> dict:
    reached = [r["reached_by_metric"][metric] for r in runs if metric in r["reached_by_metric"]]
    per_step = [r["history"][-1]["train_s"] / r["history"][-1]["step"] for r in runs if r["history"]]
    return {"reached_in": f"{len(reached)}/{len(runs)} rounds",
            "median_train_s_to_target": float(np.median([r["train_s"] for r in reached])) if reached else None,
            "median_steps_to_target": float(np.median([r["step"] for r in reached])) if reached else None,
            "median_wall_s_incl_eval": float(np.median([r["wall_s"] for r in reached])) if reached else None,
            "median_train_s_per_step": float(np.median(per_step)) if per_step else None}


def main(argv=None) -> int:
    p = C.base_parser(__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=1500, help="the quickstart preset's budget")
    p.add_argument("--metric", default="argmax_as_requested", choices=("argmax_as_requested", "as_requested"))
    p.add_argument("--target", type=float, default=0.9)
    p.add_argument("--eval-samples", type=int, default=100)
    p.add_argument("--preview-every", type=int, default=100)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.max_steps, args.preview_every, args.eval_samples = 1, 4, 2, 10
    C.set_threads(args.threads)
    t_start = time.perf_counter()
    judge = C.DigitsJudge()
    out = {"benchmark": "time_to_quality", "mode": "quick" if args.quick else "full", "machine": C.machine_info(),
           "revision": C.git_revision(),
           "command": "python benchmarks/time_to_quality.py " + " ".join(argv or sys.argv[1:]),
           "criterion": f"{args.metric} >= {args.target} on {args.eval_samples} samples every {args.preview_every} steps",
           "judge_on_real_held_out": judge.held_out, "rounds": []}
    engine_runs, plain_runs = [], []
    for r in range(args.rounds):
        cfg = preset("quickstart").updated(
            # log_every divides preview_every: the hook then sees when each preview starts
            run={"steps": args.max_steps, "preview_every": args.preview_every, "seed": r,
                 "log_every": math.gcd(10, args.preview_every), "val_every": 0},
            sampling={"num_samples": args.eval_samples, "quality_samples": 0},
            data={"val_fraction": 0.0})  # the plain loop holds nothing out either
        e = run_engine(cfg, judge, args)
        print(f"round {r} engine: reached {e['reached']}", flush=True)
        pl = run_plain(cfg, judge, args)
        print(f"round {r} plain : reached {pl['reached']}", flush=True)
        engine_runs.append(e)
        plain_runs.append(pl)
        out["rounds"].append({"seed": r, "engine": e, "plain": pl})
    for m in METRICS:
        out[f"engine_{m}"], out[f"plain_{m}"] = summarize(engine_runs, m), summarize(plain_runs, m)
        pairs = [(e["reached_by_metric"][m]["train_s"], pl["reached_by_metric"][m]["train_s"])
                 for e, pl in zip(engine_runs, plain_runs) if m in e["reached_by_metric"] and m in pl["reached_by_metric"]]
        out[f"ratio_plain_over_engine_train_s_{m}"] = [round(b / a, 3) for a, b in pairs]
        out[f"ratio_of_medians_plain_over_engine_{m}"] = (
            round(out[f"plain_{m}"]["median_train_s_to_target"] / out[f"engine_{m}"]["median_train_s_to_target"], 3)
            if out[f"engine_{m}"]["median_train_s_to_target"] and out[f"plain_{m}"]["median_train_s_to_target"] else None)
    out["ratio_plain_over_engine_train_s"] = out[f"ratio_plain_over_engine_train_s_{args.metric}"]
    steps_pairs = [(e["history"][-1], pl["history"][-1]) for e, pl in zip(engine_runs, plain_runs)
                   if e["history"] and pl["history"]]
    out["ratio_plain_over_engine_s_per_step"] = [round((b["train_s"] / b["step"]) / (a["train_s"] / a["step"]), 3)
                                                 for a, b in steps_pairs]
    out["total_seconds"] = round(time.perf_counter() - t_start, 1)

    for m in METRICS:
        rows = []
        for name, runs in (("engine (quickstart)", engine_runs), ("plain diffusers-style loop", plain_runs)):
            for i, r in enumerate(runs):
                rr = r["reached_by_metric"].get(m)
                rows.append([name, i, rr["step"] if rr else f">{r['steps_run']}", rr["train_s"] if rr else math.nan,
                             rr["wall_s"] if rr else math.nan,
                             r["history"][-1]["train_s"] / max(1, r["history"][-1]["step"]) if r["history"] else math.nan])
        print(f"\ncriterion {m} >= {args.target}:")
        print(C.table(rows, ["loop", "round", "steps to target", "train s", "wall s incl. eval", "s/step"]))
        print(f"plain / engine time to target per round {out[f'ratio_plain_over_engine_train_s_{m}']}; "
              f"ratio of medians {out[f'ratio_of_medians_plain_over_engine_{m}']}")
    print(f"plain / engine s per step: {out['ratio_plain_over_engine_s_per_step']}; total {out['total_seconds']} s")
    path = C.save_json(args.out, "time_to_quality", out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
