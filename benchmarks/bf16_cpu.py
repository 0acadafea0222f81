"""bf16 autocast on the CPU against fp32: speed of the engine's training step, and quality at the
same number of steps. The evidence behind ``run.precision = "auto"`` (engine/precision.py).

Speed: the engine (``Trainer``) on the same data and model, fp32 and bf16 in alternating rounds,
images/s over the timed steps of each round (warm-up excluded), the ratio per round and of the
medians. Workloads: the ``quickstart`` preset (8x8 digits, 0.64M-parameter UNet, batch 64) and
``shapes-128`` (128x128 RGB, 3.0M-parameter UNet, batch 16).

Quality at the same steps and seed:
- ``quickstart`` at its 1500 steps: the share of 200 class-conditional samples that a
  LogisticRegression trained on the real digits classifies as the requested class;
- the lighting presets at their 500 steps: the spread ratio of 512 samples' mean brightness
  (samples' std / data's std; Lin et al.'s uniform-lighting figure) and the dark/bright tails.

    python benchmarks/bf16_cpu.py                  # speed and quality (about 25 min on 2 idle cores)
    python benchmarks/bf16_cpu.py --only speed     # or --only quality
    python benchmarks/bf16_cpu.py --only bare --threads 1   # the bare quickstart model, and where its time goes
    python benchmarks/bf16_cpu.py --quick          # smoke run (figures not meaningful)

Bare (``--only bare``; written to ``bf16_cpu_bare.json``): the quickstart's UNet alone, as the
issue measured its 6.5M-parameter model: forward, MSE loss, backward and a fused AdamW step on
fixed inputs, fp32 against bf16 autocast in alternating rounds, timed in the thread's CPU time
(``time.thread_time``, robust to other load), at ``--bare-batches``; then one profile per precision
(``torch.profiler``) gives the convolutions' forward and backward milliseconds per step, the
ceiling on what bf16 can gain for this model.

Writes benchmarks/results/bf16_cpu.json.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import _common as C  # noqa: E402
from diffstudio.data.registry import load_dataset  # noqa: E402
from diffstudio.engine.precision import cpu_bf16_supported, cpu_native_bf16  # noqa: E402
from diffstudio.engine.presets import preset  # noqa: E402
from diffstudio.engine.sampling import generate  # noqa: E402
from throughput import NEVER, engine_round  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def speed_workload(name: str):
    cfg = preset(name).updated(run={"preview_every": NEVER, "checkpoint_every": NEVER, "log_every": 10, "val_every": 0},
                               sampling={"num_samples": 1, "steps": 1})
    d = cfg.data
    data = load_dataset(d.source, resolution=d.resolution, channels=d.channels, labels=d.labels, n=d.num_points)
    return cfg, data


def speed(args) -> dict:
    out = {}
    for name in args.workloads.split(","):
        cfg, data = speed_workload(name)
        rounds = {p: [] for p in PRECISIONS}
        for r in range(args.rounds):
            order = PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]
            for p in order:
                res = engine_round(cfg.updated(run={"precision": p}), data, args.warmup, args.steps)
                rounds[p].append(res["images_per_s"])
        ratios = [b / f for f, b in zip(rounds["fp32"], rounds["bf16"])]
        med = {p: statistics.median(v) for p, v in rounds.items()}
        out[name] = {"images_per_s": {p: [round(v, 1) for v in vs] for p, vs in rounds.items()},
                     "median_images_per_s": {p: round(v, 1) for p, v in med.items()},
                     "steps_per_s": {p: round(v / cfg.optim.batch_size, 2) for p, v in med.items()},
                     "ratio_per_round": [round(x, 3) for x in ratios],
                     "ratio_of_medians": round(med["bf16"] / med["fp32"], 3)}
        print(f"{name}: bf16/fp32 = {out[name]['ratio_of_medians']} (rounds {out[name]['ratio_per_round']})",
              flush=True)
    return out


def quickstart_quality(precision: str, args, judge) -> dict:
    cfg = preset("quickstart")
    steps = args.quality_steps or cfg.run.steps
    cfg = cfg.updated(run={"steps": steps, "precision": precision, "preview_every": steps,
                           "checkpoint_every": steps})
    trainer, result, seconds = C.train(cfg, name=f"bf16-qs-{precision}")
    prev = generate(C.ema_model(trainer), cfg, trainer.info, n=args.samples, seed=1)
    score = judge.score(prev.samples, prev.labels)
    return {"steps": result.steps, "final_loss": round(result.final_loss, 5), "train_s": round(seconds, 1),
            "argmax_as_requested": round(score["argmax_as_requested"], 3),
            "as_requested": round(score["as_requested"], 3)}


def lighting_quality(name: str, precision: str, args, data) -> dict:
    from diffstudio.engine.metrics import brightness_spread

    cfg = preset(name)
    steps = args.quality_steps or cfg.run.steps
    cfg = cfg.updated(run={"steps": steps, "precision": precision, "preview_every": steps,
                           "checkpoint_every": steps}, sampling={"num_samples": 16})
    trainer, result, seconds = C.train(cfg, name=f"bf16-{name}-{precision}")
    prev = generate(C.ema_model(trainer), cfg, trainer.info, n=args.lighting_samples, seed=1)
    spread = brightness_spread(torch.from_numpy(prev.samples), data.x)
    return {"steps": result.steps, "final_loss": round(result.final_loss, 5), "train_s": round(seconds, 1),
            **{k: round(v, 4) for k, v in spread.items()}}


def quality(args) -> dict:
    names = args.quality_presets.split(",")
    out = {}
    if "quickstart" in names:
        judge = C.DigitsJudge()
        out["quickstart"] = {p: quickstart_quality(p, args, judge) for p in PRECISIONS}
        print("quickstart:", out["quickstart"], flush=True)
    data = load_dataset("lighting", resolution=32, channels=1, labels=False)
    for name in (n for n in names if n.startswith("lighting")):
        out[name] = {p: lighting_quality(name, p, args, data) for p in PRECISIONS}
        print(f"{name}:", out[name], flush=True)
    return out


def bare(args) -> dict:
    """fp32 vs bf16 autocast on the bare quickstart model (see the module docstring)."""
    from diffstudio.models.build import build_model
    from diffstudio.models.info import DataInfo

    cfg = preset("quickstart")
    info = DataInfo(kind="image", channels=1, resolution=8, num_classes=10)
    out = {}
    for batch in (int(b) for b in args.bare_batches.split(",")):
        g = torch.Generator().manual_seed(0)
        x, t = torch.randn(batch, 1, 8, 8, generator=g), torch.rand(batch, generator=g) * 999
        y = torch.randint(0, 10, (batch,), generator=g)
        models = {}
        for p in PRECISIONS:
            torch.manual_seed(0)
            m = build_model(cfg, info)
            models[p] = (m, torch.optim.AdamW(m.parameters(), lr=1e-3, fused=True))

        def step(p):
            m, opt = models[p]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=p == "bf16"):
                loss = (m(x, t, y).float() - x).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for p in PRECISIONS:
            for _ in range(args.warmup):
                step(p)
        ms = {p: [] for p in PRECISIONS}
        for r in range(args.rounds):
            for p in (PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]):
                c0 = time.thread_time()
                for _ in range(args.steps):
                    step(p)
                ms[p].append((time.thread_time() - c0) / args.steps * 1e3)
        conv = {}
        from torch.profiler import ProfilerActivity, profile

        for p in PRECISIONS:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(5):
                    step(p)
            ev = {e.key: e.self_cpu_time_total / 1e3 / 5 for e in prof.key_averages()}
            conv[p] = {"forward_ms": round(ev.get("aten::mkldnn_convolution", 0.0), 1),
                       "backward_ms": round(ev.get("aten::convolution_backward", 0.0), 1),
                       "all_ops_ms": round(sum(ev[k] for k in ev if k.startswith("aten::")), 1)}
        med = {p: statistics.median(v) for p, v in ms.items()}
        out[f"batch_{batch}"] = {
            "ms_per_step": {p: [round(v, 1) for v in vs] for p, vs in ms.items()},
            "median_ms_per_step": {p: round(v, 1) for p, v in med.items()},
            "bf16_speedup": round(med["fp32"] / med["bf16"], 3),
            "convolution_profile": conv,
            "conv_forward_speedup": round(conv["fp32"]["forward_ms"] / max(conv["bf16"]["forward_ms"], 1e-9), 2),
            "conv_backward_speedup": round(conv["fp32"]["backward_ms"] / max(conv["bf16"]["backward_ms"], 1e-9), 2)}
        r = out[f"batch_{batch}"]
        print(f"bare quickstart model, batch {batch}: fp32 {med['fp32']:.1f} ms, bf16 {med['bf16']:.1f} ms per step "
              f"({r['bf16_speedup']}x); convolutions fwd {r['conv_forward_speedup']}x, bwd "
              f"{r['conv_backward_speedup']}x", flush=True)
    return out


def main(argv=None) -> int:
    p = C.base_parser(__doc__)
    p.add_argument("--only", default="speed,quality", help="speed, quality and/or bare")
    p.add_argument("--workloads", default="quickstart,shapes-128")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--quality-steps", type=int, default=None, help="default: each preset's own")
    p.add_argument("--quality-presets", default="quickstart,lighting-sd-eps,lighting-ztsnr-v",
                   help="presets whose quality is compared (comma-separated)")
    p.add_argument("--samples", type=int, default=200, help="digits samples judged")
    p.add_argument("--lighting-samples", type=int, default=512)
    p.add_argument("--bare-batches", default="64,256", help="batch sizes of the bare-model part")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.warmup, args.steps, args.quality_steps = 1, 1, 2, 5
        args.samples, args.lighting_samples = 20, 32
    C.set_threads(args.threads)
    t0 = time.perf_counter()
    out = {"benchmark": "bf16_cpu", "machine": C.machine_info(), "revision": C.git_revision(),
           "native_bf16": cpu_native_bf16(), "torch_bf16_kernels": cpu_bf16_supported(),
           "command": "python benchmarks/bf16_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    parts = args.only.split(",")
    if "speed" in parts:
        out["speed"] = speed(args)
    if "quality" in parts:
        out["quality"] = quality(args)
    if "bare" in parts:
        out["bare"] = bare(args)
    out["total_s"] = round(time.perf_counter() - t0, 1)
    name = "bf16_cpu" + ("_bare" if parts == ["bare"] else "") + ("-quick" if args.quick else "")
    print(f"wrote {C.save_json(args.out, name, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
