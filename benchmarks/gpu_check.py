"""Issue 12's GPU check, as one prepared script for a session that is lent a CUDA machine.

Each part runs in its own child process so that one failure (an unsupported kernel, a compile error)
is recorded and the rest still runs; everything goes to ``results/gpu_check.json`` and a summary is
printed at the end. Parts, in order:

1. ``quickstart`` on ``--device`` in fp32, bf16 and fp32 + ``torch.compile``: steps/s after a
   warm-up (the device synchronised at each step's end), launch to the first step (data, model,
   compilation) and the second step's time,
   the peak device memory and the final loss.
2. A 128 px folder run (``shapes-128``'s UNet on a generated folder of JPEGs), the same variants.
3. Export the fp32 quickstart run (``diffstudio export``) and sample it twice: ``diffstudio
   sample`` and diffusers' ``UNet2DModel`` + ``DDIMScheduler`` loaded from the export, on the same
   start noise; the largest pixel difference is recorded.
4. ``benchmarks/gpu.py`` (fp32 / bf16 / compile throughput of the shapes UNet, alternating rounds).
5. ``benchmarks/streaming.py --only throughput``: the streamed path against the device-resident one.

    python benchmarks/gpu_check.py                   # on the GPU machine (about 6 min on an H200)
    python benchmarks/gpu_check.py --device cpu --quick   # smoke run of the same code here

Sized to finish well inside one 10-minute device command; ``--parts`` picks a subset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VARIANTS = ("fp32", "bf16", "fp32+compile")
PARTS = ("quickstart", "folder128", "export", "gpu", "streaming")


def _child(code: str, args: list[str], timeout: float) -> dict:
    """Run ``code`` (a function body below, by name) in a fresh interpreter; its last stdout line is
    JSON. A failure becomes {"error": ...} with the last lines of stderr."""
    env = _env(HERE)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", code, *args]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = round(time.perf_counter() - t0, 1)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-6:])
        return {"error": f"exit {p.returncode}: {tail}", "wall_s": wall}
    out = json.loads(lines[-1])
    out["wall_s"] = wall
    return out


# ------------------------------------------------------------------------------------ children


def child_train(preset_name: str, variant: str, device: str, steps: int, warmup: int, out_dir: str,
                source: str = "", keep: str = "") -> dict:
    """Train ``preset_name`` as ``variant`` (precision[+compile]) for warmup + steps steps."""
    import torch

    from diffstudio.engine.presets import preset
    from diffstudio.engine.trainer import Trainer
    from diffstudio.engine.trainer import TrainerHooks
    from gpu import variant_config

    class StepClock(TrainerHooks):
        """The time at the end of each step (log_every = 1), after the device has finished; unlike
        gpu.py's clock it is not fooled by the cache build polling should_stop."""

        def __init__(self):
            self.at: dict[int, float] = {}

        def on_metrics(self, step, metrics):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            self.at[step] = time.perf_counter()

    cfg = variant_config(preset(preset_name), variant)
    data = {"source": source} if source else {}
    last = warmup + steps + 1
    cfg = cfg.updated(data=data, run={"steps": last, "device": device, "out_dir": out_dir, "val_every": 0,
                                      "preview_every": 10**9, "checkpoint_every": last if keep else 10**9,
                                      "log_every": 1, "name": keep or "gpu-check"},
                      sampling={"num_samples": 4, "steps": 10})
    clock = StepClock()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer = Trainer(cfg, hooks=clock)
    result = trainer.run()
    at = clock.at
    return {"variant": variant, "effective_precision": trainer.precision.effective,
            "steps_per_s": round(steps / (at[warmup + 1 + steps] - at[warmup + 1]), 2),
            "launch_to_step1_s": round(at[1] - t0, 2), "step1_to_step2_s": round(at[2] - at[1], 2),
            "final_loss": round(float(result.final_loss), 5),
            "peak_device_mib": round(torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda") else None,
            "run_dir": str(trainer.run_dir.path) if keep else None}


def child_export_sample(run_dir: str, device: str, out_dir: str) -> dict:
    """Export a run, sample it with diffstudio and with diffusers from the export, same start noise."""
    import numpy as np
    import torch
    from diffusers import DDIMScheduler, UNet2DModel

    from diffstudio import cli

    export = Path(out_dir) / "export"
    assert cli.main(["export", run_dir, "--out", str(export)]) == 0
    grid = Path(out_dir) / "samples.png"
    code = cli.main(["sample", run_dir, "--out", str(grid), "--device", device, "--n", "4"])
    unet_dir = export / "unet" if (export / "unet").is_dir() else export
    unet = UNet2DModel.from_pretrained(unet_dir).to(device).eval()
    sched = DDIMScheduler.from_pretrained(export / "scheduler" if (export / "scheduler").is_dir() else export)
    sched.set_timesteps(25)
    g = torch.Generator("cpu").manual_seed(0)
    size = unet.config.sample_size
    x = torch.randn(2, unet.config.in_channels, size, size, generator=g).to(device)
    labels = torch.zeros(2, dtype=torch.long, device=device) if unet.config.num_class_embeds else None
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t, class_labels=labels).sample, t, x).prev_sample
    return {"export_files": sorted(p.name for p in export.iterdir()), "diffstudio_sample_exit": code,
            "sample_png": grid.is_file(), "diffusers_samples_finite": bool(torch.isfinite(x).all()),
            "diffusers_range": [round(float(x.min()), 3), round(float(x.max()), 3)],
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "numpy": np.__version__}


def _env(*more: Path) -> dict:
    """The environment of a child: the source tree (and ``more``) first on PYTHONPATH, the caller's
    PYTHONPATH kept after it (on the GPU machine it holds packages carried as wheels)."""
    path = os.pathsep.join([str(ROOT), *map(str, more), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")


def _script(name: str, args: list[str], timeout: float) -> dict:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        p = subprocess.run([sys.executable, str(HERE / name), "--out", tmp, *args], capture_output=True, text=True,
                           timeout=timeout, cwd=ROOT, env=_env())
        results = {f.name: json.loads(f.read_text()) for f in Path(tmp).glob("*.json")}
    return {"exit": p.returncode, "wall_s": round(time.perf_counter() - t0, 1),
            "stdout_tail": p.stdout.strip().splitlines()[-12:], "stderr_tail": p.stderr.strip().splitlines()[-6:],
            "results": results}


# ------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    p = C.base_parser(__doc__)
    p.add_argument("--device", default="cuda")
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--steps", type=int, default=200, help="timed quickstart steps per variant")
    p.add_argument("--steps-128", type=int, default=40, help="timed 128 px steps per variant")
    p.add_argument("--images", type=int, default=512, help="images in the generated 128 px folder")
    p.add_argument("--variants", default=",".join(VARIANTS), help="precision[+compile], comma-separated")
    p.add_argument("--child", nargs="+", help=argparse_hidden())
    args = p.parse_args(argv)
    if args.child:
        name, *rest = args.child
        fn = {"train": child_train, "export": child_export_sample}[name]
        print(json.dumps(fn(*json.loads(rest[0]))), flush=True)
        return 0
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing to check (use --device cpu --quick for a smoke run)")
        return 2
    warmup, steps, steps128, images = (10, args.steps, args.steps_128, args.images)
    if args.quick:
        warmup, steps, steps128, images = 2, 3, 2, 16
    parts = [s for s in args.parts.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]
    if "export" in parts and "fp32" not in variants:
        variants.insert(0, "fp32")  # the export samples the fp32 quickstart run
    out: dict = {"benchmark": "gpu_check", "machine": C.machine_info(), "revision": C.git_revision(),
                 "device": args.device, "card": _card(args.device), "command": " ".join(sys.argv)}
    print(out["card"], flush=True)
    t_all = time.perf_counter()
    name = "gpu_check" + ("-quick" if args.quick else "")

    def save() -> None:  # after every part, so that a run stopped at its limit keeps what finished
        out["total_s"] = round(time.perf_counter() - t_all, 1)
        C.save_json(args.out, name, out)

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["DIFFSTUDIO_CACHE"] = str(tmp / "cache")
        kept = ""
        if "quickstart" in parts or "export" in parts:
            out["quickstart"] = {}
            for v in variants if "quickstart" in parts else ("fp32",):
                keep = "qs-fp32" if v == "fp32" else ""
                r = _child("train", [json.dumps(["quickstart", v, args.device, steps, warmup, str(tmp / "runs"),
                                                 "", keep])], 900)
                out["quickstart"][v] = r
                kept = r.get("run_dir") or kept
                print(f"quickstart {v}: {_line(r)}", flush=True)
                save()
        if "folder128" in parts:
            from streaming import make_folder

            folder = tmp / "folder128"
            make_folder(folder, images)
            out["folder128"] = {"images": images}
            for v in variants:
                r = _child("train", [json.dumps(["shapes-128", v, args.device, steps128, min(warmup, 5),
                                                 str(tmp / "runs"), str(folder), ""])], 900)
                out["folder128"][v] = r
                print(f"128 px folder {v}: {_line(r)}", flush=True)
                save()
        if "export" in parts:
            r = _child("export", [json.dumps([kept, args.device, str(tmp / "export")])], 600) if kept else {
                "error": "no quickstart run to export"}
            out["export"] = r
            print(f"export and sample: {r}", flush=True)
            save()
        if "gpu" in parts:
            extra = ["--device", args.device] + (["--quick"] if args.quick else ["--rounds", "2", "--steps", "30"])
            out["gpu"] = _script("gpu.py", extra, 900)
            print("gpu.py:", *out["gpu"]["stdout_tail"], sep="\n  ", flush=True)
            save()
        if "streaming" in parts:
            extra = ["--only", "throughput", "--device", args.device] + (["--quick"] if args.quick else ["--rounds", "2", "--small-steps", "40"])
            out["streaming"] = _script("streaming.py", extra, 900)
            print("streaming.py:", *out["streaming"]["stdout_tail"], sep="\n  ", flush=True)
            save()
    save()
    print(f"total {out['total_s']} s; wrote {Path(args.out) / (name + '.json')}")
    return 0


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def _card(device: str) -> str:
    from gpu import card

    return card(device)


def _line(r: dict) -> str:
    if "error" in r:
        return "FAILED " + r["error"].replace("\n", " | ")
    return (f"{r['steps_per_s']} steps/s ({r['effective_precision']}), launch to step 1 "
            f"{r['launch_to_step1_s']} s, step 2 {r['step1_to_step2_s']} s, "
            f"peak {r['peak_device_mib']} MiB, loss {r['final_loss']}")


if __name__ == "__main__":
    raise SystemExit(main())
