"""Datasets of any size: a large image folder trained from its on-disk uint8 cache.

Parts (``--only build,memory,throughput``):

- ``build`` and ``memory``: a folder of ``--count`` JPEGs (192x160, generated here in a temporary
  folder) trained at 128 px for ``--steps`` steps by ``python -m diffstudio train`` in a child
  process, after the same run on a 64-image folder (the memory of the model, its activations and
  the runtime, i.e. everything but the data), three times: (1) no cache yet: the cache is built (images/s), then the run streams;
  (2) the cache exists: time from launch to the first step; (3) the same with the memory budget
  raised so the uint8 pixels sit in memory (device-resident). Peak RSS is the child's ``ru_maxrss``
  (``wait4``), which counts the memory-mapped pages it touched. ``--float-baseline`` adds (4):
  today's in-memory float32 loading of the same folder (``load_dataset`` + Trainer).
- ``throughput``: streamed vs device-resident steps/s on the same small folder (``--small`` images
  at 32 px, quickstart model), in this process, alternating rounds; wall and CPU time.

Ratios are measured in the same run; the machine's load is recorded at the start and the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import _common as C  # noqa: E402  (puts the repository on sys.path)

from diffstudio.engine.presets import preset  # noqa: E402


def make_folder(root: Path, count: int, size=(192, 160)) -> float:
    """``count`` JPEGs (quality 90) of smooth colour gradients with noise; returns seconds taken."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    w, h = size
    ramp = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]

    def one(i: int) -> None:
        rng = np.random.default_rng(i)
        a, b = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
        img = a + (b - a) * ramp + rng.normal(0, 12, (h, w, 3)).astype(np.float32)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"{i:05d}.jpg", quality=90)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - t0


def big_config(folder: Path, args, budget_mb: float):
    return preset("quickstart").updated(
        data={"source": str(folder), "resolution": 128, "channels": 3, "labels": False, "hflip": True,
              "memory_budget_mb": budget_mb},
        optim={"batch_size": args.batch}, sampling={"num_samples": 4, "steps": 2},
        run={"steps": args.steps, "log_every": 1, "preview_every": 100_000, "checkpoint_every": 100_000,
             "threads": args.threads or 0})


def cli_run(cfg, tmp: Path, name: str, env: dict) -> dict:
    """``python -m diffstudio train cfg`` in a child: seconds to marks, ru_maxrss (MB), exit code."""
    path = cfg.save(tmp / f"{name}.toml")
    cmd = [sys.executable, "-m", "diffstudio", "train", str(path), "--device", "cpu", "--out", str(tmp / name)]
    marks = {"cache_built": r"dataset cache: ([\d,]+) / \1 images", "placed": r"memory budget",
             "first_step": r"\] 1/\d+ ", "last_step": rf"\] {cfg.run.steps}/{cfg.run.steps} "}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=C.ROOT)
    seen, text = C.watch_marks(proc.stdout, marks, t0)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seen.update(rc=proc.returncode, exit_s=round(time.perf_counter() - t0, 2),
                peak_rss_mb=round(usage.ru_maxrss / 1024.0, 1), command=" ".join(cmd[1:]))
    placement = [line for line in text.splitlines() if "memory budget" in line]
    seen["placement"] = placement[-1].strip() if placement else None
    if proc.returncode != 0:
        seen["output_tail"] = text[-1500:]
    return seen


FLOAT_BASELINE = """
import resource, sys, time
from diffstudio.engine.config import Config
from diffstudio.data.registry import load_dataset
from diffstudio.engine.trainer import Trainer
cfg = Config.load(sys.argv[1])
data = load_dataset(cfg.data.source, resolution=128, channels=3, labels=False)  # today's float32 loading
print("float32 dataset MB", round(data.x.numel() * 4 / 2**20, 1), flush=True)
Trainer(cfg, dataset=data, run_dir=sys.argv[2]).run()
print("peak", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, flush=True)
"""


def float_baseline(cfg, tmp: Path, env: dict) -> dict:
    path = cfg.save(tmp / "float.toml")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", FLOAT_BASELINE, str(path), str(tmp / "float")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=C.ROOT)
    _, text = C.watch_marks(proc.stdout, {}, t0)
    _, status, usage = os.wait4(proc.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    return {"rc": rc, "exit_s": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),
            **({"output_tail": text[-1500:]} if rc else {})}


def build_and_memory(args, out: dict, env: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="dsbench-stream-") as tmp_name:
        tmp = Path(tmp_name)
        env = dict(env, DIFFSTUDIO_CACHE=str(tmp / "cache"))
        folder = tmp / "photos"
        gen_s = make_folder(folder, args.count)
        print(f"generated {args.count} JPEGs in {gen_s:.1f} s", flush=True)
        uint8_mb = args.count * 3 * 128 * 128 / 2**20
        make_folder(tmp / "few", 64)  # the same run on 64 images: the memory of everything but the data
        runs = {"baseline_64_images": cli_run(big_config(tmp / "few", args, 0), tmp, "few", env)}
        runs["cold_streamed"] = cli_run(big_config(folder, args, 0), tmp, "cold", env)
        print("cold run done", runs["cold_streamed"].get("exit_s"), flush=True)
        runs["warm_streamed"] = cli_run(big_config(folder, args, 0), tmp, "warm", env)
        runs["warm_resident"] = cli_run(big_config(folder, args, 2 * uint8_mb + 64), tmp, "resident", env)
        if args.float_baseline:
            runs["float32_in_memory"] = float_baseline(big_config(folder, args, 2 * uint8_mb + 64), tmp, env)
        cold = runs["cold_streamed"]
        out["build"] = {"images": args.count, "source_size": "192x160 JPEG q90", "resolution": 128,
                        "generate_folder_s": round(gen_s, 1),
                        "launch_to_cache_built_s": cold.get("cache_built"),
                        "images_per_s_including_start_up": round(args.count / cold["cache_built"], 1)
                        if cold.get("cache_built") else None,
                        "warm_launch_to_first_step_s": runs["warm_streamed"].get("first_step"),
                        "cold_launch_to_first_step_s": cold.get("first_step")}
        out["memory"] = {"images": args.count, "uint8_pixels_mb": round(uint8_mb, 1),
                         "float32_pixels_mb": round(4 * uint8_mb, 1), "steps": args.steps, "batch": args.batch,
                         "runs": runs}


def throughput(args, out: dict) -> None:
    import torch

    with tempfile.TemporaryDirectory(prefix="dsbench-stream-small-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["DIFFSTUDIO_CACHE"] = str(tmp / "cache")
        make_folder(tmp / "small", args.small, size=(40, 40))
        rounds = []
        for r in range(args.rounds):
            order = ("resident", "streamed") if r % 2 == 0 else ("streamed", "resident")
            row = {}
            for path in order:
                row[path] = small_round(tmp, path, args)
            rounds.append(row)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v['steps_per_s']:.2f} steps/s" for k, v in row.items()),
                  flush=True)
        med = lambda path, key: float(np.median([row[path][key] for row in rounds]))  # noqa: E731
        ratios = [row["streamed"]["steps_per_s"] / row["resident"]["steps_per_s"] for row in rounds]
        cpu_ratios = [row["streamed"]["steps_per_cpu_s"] / row["resident"]["steps_per_cpu_s"] for row in rounds]
        out["throughput"] = {"images": args.small, "resolution": 32, "batch": 64, "model": "quickstart (tiny UNet)",
                             "timed_steps": args.small_steps, "warmup_steps": args.warmup, "rounds": rounds,
                             "median_steps_per_s": {"resident": med("resident", "steps_per_s"),
                                                    "streamed": med("streamed", "steps_per_s")},
                             "streamed_over_resident_median_of_rounds": round(float(np.median(ratios)), 3),
                             "streamed_over_resident_cpu_median_of_rounds": round(float(np.median(cpu_ratios)), 3),
                             "torch_threads": torch.get_num_threads(), "device": args.device}


class _Clock:
    """Trainer hooks that time the steps after the warm-up (wall and process CPU time)."""

    def __init__(self, warmup: int, device: str = "cpu"):
        import torch

        from diffstudio.engine.trainer import TrainerHooks

        self.warmup, self.marks = warmup, {}
        clock = self

        class Hooks(TrainerHooks):
            def on_metrics(self, step, m):
                if step in (clock.warmup, clock.last):
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()  # the step has finished on the device, not only been queued
                    clock.marks[step] = (time.perf_counter(), time.process_time())

        self.hooks = Hooks()


def small_round(tmp: Path, path: str, args) -> dict:
    budget = 1e-3 if path == "streamed" else 1024.0
    cfg = preset("quickstart").updated(
        data={"source": str(tmp / "small"), "resolution": 32, "channels": 3, "labels": False, "hflip": True,
              "memory_budget_mb": budget},
        optim={"batch_size": 64}, sampling={"num_samples": 2, "steps": 2},
        run={"steps": args.warmup + args.small_steps, "log_every": 1, "preview_every": 100_000,
             "checkpoint_every": 100_000})
    clock = _Clock(args.warmup, args.device)
    clock.last = args.warmup + args.small_steps
    trainer, _, _ = C.train(cfg, hooks=clock.hooks, out_dir=str(tmp / "runs"), name=f"{path}-{time.time_ns()}",
                              device=args.device)
    (w0, c0), (w1, c1) = clock.marks[args.warmup], clock.marks[clock.last]
    kind = type(trainer.data).__name__
    assert (kind == "StreamingDataset") == (path == "streamed"), kind
    return {"steps_per_s": args.small_steps / (w1 - w0), "steps_per_cpu_s": args.small_steps / (c1 - c0),
            "data": kind, **({"reads": dict(trainer.data.reads)} if path == "streamed" else {})}


def main(argv=None) -> int:
    p = C.base_parser(__doc__)
    p.add_argument("--only", default="build,memory,throughput")
    p.add_argument("--count", type=int, default=20_000, help="images in the large folder")
    p.add_argument("--steps", type=int, default=20, help="steps of each large-folder run")
    p.add_argument("--batch", type=int, default=8, help="batch of the large-folder runs")
    p.add_argument("--float-baseline", action="store_true", help="also run today's float32 in-memory loading")
    p.add_argument("--small", type=int, default=1024, help="images in the small folder (throughput)")
    p.add_argument("--small-steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--device", default="cpu", help="device of the throughput runs (e.g. cuda)")
    args = p.parse_args(argv)
    if args.quick:
        args.count, args.steps, args.small, args.small_steps, args.rounds = 300, 3, 128, 5, 2
    C.set_threads(args.threads)
    parts = set(args.only.split(","))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    out = {"benchmark": "streaming", "mode": "quick" if args.quick else "full", "machine": C.machine_info(),
           "revision": C.git_revision(), "command": "python benchmarks/streaming.py " + " ".join(argv or sys.argv[1:])}
    t0 = time.perf_counter()
    if parts & {"build", "memory"}:
        build_and_memory(args, out, env)
    if "throughput" in parts:
        throughput(args, out)
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    out["load_average_at_end"] = C._loadavg()
    report(out)
    print(f"wrote {C.save_json(args.out, 'streaming', out)}")
    return 0


def report(out: dict) -> None:
    if "build" in out:
        b, m = out["build"], out["memory"]
        print(f"\n{b['images']} images ({b['source_size']}) -> 128 px: launch to cache built "
              f"{b['launch_to_cache_built_s']} s ({b['images_per_s_including_start_up']} images/s incl. start-up); "
              f"launch to first step: cold {b['cold_launch_to_first_step_s']} s, cache present "
              f"{b['warm_launch_to_first_step_s']} s")
        rows = [[k, r.get("peak_rss_mb"), r.get("first_step"), r.get("exit_s"), r.get("rc")]
                for k, r in m["runs"].items()]
        print(C.table(rows, ["run", "peak RSS MB", "launch->step 1 s", "total s", "rc"]))
        print(f"uint8 pixels {m['uint8_pixels_mb']} MB, float32 {m['float32_pixels_mb']} MB")
    if "throughput" in out:
        t = out["throughput"]
        print(f"\nsmall folder ({t['images']} images, 32 px, batch 64, {t.get('device', 'cpu')}): streamed / resident steps/s, median of "
              f"{len(t['rounds'])} alternating rounds: {t['streamed_over_resident_median_of_rounds']} wall, "
              f"{t['streamed_over_resident_cpu_median_of_rounds']} CPU")


if __name__ == "__main__":
    raise SystemExit(main())
