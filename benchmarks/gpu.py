"""Mixed precision and torch.compile against eager fp32 on a GPU, same model and batch.

The engine's Trainer trains the `shapes` preset's UNet (32x32 RGB, class-conditional) with
``run.precision`` fp32 / bf16 (/ fp16) and ``run.compile`` off / on, in alternating rounds; each
round times ``--steps`` steps after ``--warmup`` (compilation happens in the warm-up and its time
is reported separately as the first step). The clock synchronises the device at every step
boundary. Prints images/s per variant and the ratios to eager fp32, with the card's name, and writes
``results/gpu.json``. On a machine without CUDA it says so and exits (``--device cpu`` runs the same
code as a smoke test; on the CPU bf16 is autocast too, see ``bf16_cpu.py`` for those figures).

    python benchmarks/gpu.py [--batch 256] [--rounds 3] [--variants fp32,bf16,fp32+compile,bf16+compile]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import _common as C  # noqa: E402
from diffstudio.data.registry import load_dataset  # noqa: E402
from diffstudio.engine.presets import preset  # noqa: E402
from diffstudio.engine.trainer import Trainer, TrainerHooks  # noqa: E402

NEVER = 10**9


class SyncedClock(TrainerHooks):
    """Step boundaries (``should_stop`` is polled once per step), after the device has finished."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.ts: list[float] = []

    def should_stop(self):
        if self.cuda:
            torch.cuda.synchronize()
        self.ts.append(time.perf_counter())
        return False


def variant_config(base, name: str):
    precision, _, extra = name.partition("+")
    return base.updated(run={"precision": precision, "compile": extra == "compile"})


def one_round(cfg, data, warmup: int, steps: int, device: str, out_dir: str) -> dict:
    clock = SyncedClock(device)
    run = cfg.updated(run={"steps": warmup + steps + 1, "device": device, "out_dir": out_dir})
    Trainer(run, hooks=clock, dataset=data).run()
    ts = clock.ts
    timed = ts[warmup + steps] - ts[warmup]
    return {"images_per_s": steps * cfg.optim.batch_size / timed, "first_step_s": round(ts[1] - ts[0], 3)}


def card(device: str) -> str:
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    return f"CPU ({C.cpu_model()})"


def main() -> None:
    p = C.base_parser(__doc__)
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--variants", default="fp32,bf16,fp32+compile,bf16+compile")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing to measure (use --device cpu for a smoke run)")
        return
    if args.quick:
        args.rounds, args.warmup, args.steps, args.batch = 1, 2, 3, 16
    C.set_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    base = preset("shapes").updated(optim={"batch_size": args.batch},
                                    run={"preview_every": NEVER, "checkpoint_every": NEVER, "log_every": 10, "val_every": 0},
                                    sampling={"num_samples": 1, "steps": 1})
    data = load_dataset("shapes", resolution=32, channels=3, labels=True)
    print(f"{card(args.device)}; shapes UNet ({base.model.preset}), batch {args.batch}, "
          f"{args.rounds} rounds x {args.steps} timed steps")
    out: dict = {"benchmark": "gpu", "machine": C.machine_info(), "card": card(args.device), "batch": args.batch,
                 "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            row = {v: one_round(variant_config(base, v), data, args.warmup, args.steps, args.device, tmp)
                   for v in order}
            out["rounds"].append(row)
            print(f"round {r + 1}: " + ", ".join(f"{v} {row[v]['images_per_s']:.0f} img/s" for v in variants))
    medians = {v: float(np.median([row[v]["images_per_s"] for row in out["rounds"]])) for v in variants}
    ref = medians.get("fp32") or next(iter(medians.values()))
    out["median_images_per_s"] = medians
    out["ratio_to_fp32"] = {v: m / ref for v, m in medians.items()}
    out["first_step_s"] = {v: out["rounds"][0][v]["first_step_s"] for v in variants}
    for v in variants:
        print(f"{v:>14}: {medians[v]:9.1f} images/s  ({medians[v] / ref:.2f}x fp32; first step "
              f"{out['first_step_s'][v]} s)")
    print(f"wrote {C.save_json(args.out, 'gpu', out)}")


if __name__ == "__main__":
    main()
