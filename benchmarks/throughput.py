"""Training throughput of the engine against hand-written loops on the same model, plus start-up
time and memory.

1. Engine (``Trainer``, eager) vs a bare eager PyTorch loop doing the same work per step (index
   gather from a preloaded tensor, t and noise, v target on ZTSNR, MSE, backward, clip 1.0, AdamW,
   EMA 0.995, lr schedule), and vs a loop in the style of diffusers' training examples (``DataLoader``
   over PNG-encoded images decoded + transformed per image in PIL/numpy, diffusers'
   ``DDPMScheduler.add_noise``/``get_velocity``, same optimizer and EMA). Same model and batch, one
   process, alternating rounds; images/s over the timed steps of each round (warm-up excluded);
   both hand-written loops use ``torch.optim.AdamW`` with PyTorch's default kernel, as such a loop
   would; the engine uses the fused kernel (``fused=True``), which is part of what it offers;
   ratios per round and of the medians. Two sizes: the tiny UNet at 32x32 grey, batch 64 (the
   lighting presets' model) and the quickstart UNet at 8x8, batch 64 (class-conditional digits).
2. ``config.run.compile = True`` (torch.compile of the model) against eager engine rounds taken
   just before and after it (compile time reported separately).
3. Time from ``python -m diffstudio train --preset quickstart --steps 1`` to the first training
   step (the ``on_start`` line) and to its end, against ``python -c "import torch"``.
4. Peak RSS of a quickstart-length run and RSS over a longer run (``--rss-steps``), from the CLI in
   a child process (VmRSS/VmHWM polled from /proc; ru_maxrss of the child).

    python benchmarks/throughput.py              # full
    python benchmarks/throughput.py --quick      # smoke run (< 1 min; no compile; figures not meaningful)
    python benchmarks/throughput.py --only loops,compile,startup,memory

Writes benchmarks/results/throughput.json.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import _common as C  # noqa: E402
from diffstudio.data.registry import load_dataset  # noqa: E402
from diffstudio.engine.presets import preset  # noqa: E402
from diffstudio.engine.trainer import TrainerHooks, lr_at  # noqa: E402
from diffstudio.models.build import build_model, count_parameters  # noqa: E402
from diffstudio.models.info import DataInfo  # noqa: E402

NEVER = 10**9


def workload(name: str):
    """(config, dataset) of a measured workload; previews/checkpoints pushed out of the timed steps."""
    if name == "unet32":
        cfg = preset("lighting-ztsnr-v")
        data = load_dataset("lighting", resolution=32, channels=1, labels=False)
    else:
        cfg = preset("quickstart")
        data = load_dataset("digits")
    cfg = cfg.updated(run={"preview_every": NEVER, "checkpoint_every": NEVER, "log_every": 10, "val_every": 0},
                      sampling={"num_samples": 1, "steps": 1})
    return cfg, data


# ------------------------------------------------------------------------------------------ engine


class StepClock(TrainerHooks):
    """``should_stop`` is polled once per step at the top of the loop: its timestamps bracket steps."""

    def __init__(self):
        self.ts: list[float] = []
        self.cpu: list[float] = []

    def should_stop(self):
        self.ts.append(time.perf_counter())
        self.cpu.append(time.process_time())
        return False


def engine_round(cfg, data, warmup: int, steps: int, compile_: bool = False) -> dict:
    clock = StepClock()
    cfg = cfg.updated(run={"steps": warmup + steps + 1, "compile": compile_})
    trainer, result, seconds = C.train(cfg, hooks=clock, dataset=data, name="tp-engine")
    ts = clock.ts
    timed = ts[warmup + steps] - ts[warmup]
    cpu = clock.cpu[warmup + steps] - clock.cpu[warmup]
    out = {"images_per_s": steps * cfg.optim.batch_size / timed, "timed_s": round(timed, 3),
           "images_per_cpu_s": steps * cfg.optim.batch_size / cpu,
           "first_step_s": round(ts[1] - ts[0], 3), "total_s": round(seconds, 2)}
    return out


# ------------------------------------------------------------------------------------------ bare loop


def _fresh(cfg, info):
    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg, info)
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema_decay))
    o = cfg.optim
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay, betas=(o.beta1, o.beta2))
    return model, ema, opt


def _weights(cfg, abar: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    """The objective's per-sample weight on the v-MSE (uniform, or min-SNR-gamma / (SNR + 1))."""
    if cfg.objective.weighting == "uniform":
        return torch.ones(len(i))
    snr = abar[i] / (1 - abar[i])
    return torch.minimum(snr, torch.full_like(snr, cfg.objective.gamma)) / (snr + 1)


def bare_round(cfg, data, warmup: int, steps: int) -> dict:
    """What one writes by hand: a table of alpha_bar, an index gather, one generator."""
    info = DataInfo("image", data.channels, data.resolution, data.num_classes if cfg.data.labels else 0)
    model, ema, opt = _fresh(cfg, info)
    sched = cfg.schedule.build()
    abar = sched.alphas_cumprod.float()
    g = torch.Generator().manual_seed(cfg.run.seed)
    x_all, y_all = data.x, data.labels if info.num_classes else None
    B, o = cfg.optim.batch_size, cfg.optim
    ts, cpu = [], []
    model.train()
    for step in range(warmup + steps + 1):
        ts.append(time.perf_counter())
        cpu.append(time.process_time())
        if step == warmup + steps:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        idx = torch.randint(len(x_all), (B,), generator=g)
        x0 = x_all[idx]
        i = torch.randint(1000, (B,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        a, s = abar[i].sqrt()[:, None, None, None], (1 - abar[i]).sqrt()[:, None, None, None]
        x_t = a * x0 + s * eps
        target = a * eps - s * x0
        y = None
        if y_all is not None:
            y = y_all[idx]
            y = torch.where(torch.rand(B, generator=g) < cfg.model.cond_drop_prob, torch.full_like(y, info.num_classes), y)
        pred = model(x_t, i.float(), y)
        loss = ((pred - target).pow(2).flatten(1).mean(1) * _weights(cfg, abar, i)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        opt.step()
        ema.update_parameters(model)
        float(loss.detach())
    timed = ts[warmup + steps] - ts[warmup]
    return {"images_per_s": steps * B / timed, "timed_s": round(timed, 3),
            "images_per_cpu_s": steps * B / (cpu[warmup + steps] - cpu[warmup])}


# ------------------------------------------------------------------------------------------ diffusers-style loop


class PNGImages(torch.utils.data.Dataset):
    """Images as PNG bytes (as an image-folder dataset holds them), decoded and transformed per item
    like the diffusers example: Resize, CenterCrop, ToTensor, Normalize([0.5], [0.5])."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor | None, resolution: int):
        from PIL import Image

        self.resolution, self.labels, self.png = resolution, labels, []
        u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        for img in u8:
            buf = io.BytesIO()
            Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)).save(buf, format="PNG")
            self.png.append(buf.getvalue())

    def __len__(self):
        return len(self.png)

    def __getitem__(self, i):
        from PIL import Image

        r = self.resolution
        img = Image.open(io.BytesIO(self.png[i])).convert("L")
        img = img.resize((r, r), Image.Resampling.BILINEAR)  # Resize
        w, h = img.size
        img = img.crop(((w - r) // 2, (h - r) // 2, (w - r) // 2 + r, (h - r) // 2 + r))  # CenterCrop
        arr = (np.asarray(img, dtype=np.float32) / 255.0 - 0.5) / 0.5  # ToTensor + Normalize
        label = int(self.labels[i]) if self.labels is not None else 0
        return torch.from_numpy(arr)[None], label


def diffusers_round(cfg, data, warmup: int, steps: int, pngs: PNGImages) -> dict:
    from diffusers import DDPMScheduler

    info = DataInfo("image", data.channels, data.resolution, data.num_classes if cfg.data.labels else 0)
    model, ema, opt = _fresh(cfg, info)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, cfg) / cfg.optim.lr)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                    beta_schedule="scaled_linear", prediction_type="v_prediction",
                                    rescale_betas_zero_snr=cfg.schedule.ztsnr)
    abar = noise_scheduler.alphas_cumprod
    loader = torch.utils.data.DataLoader(pngs, batch_size=cfg.optim.batch_size, shuffle=True, num_workers=0,
                                         drop_last=True)
    ts, data_s, step = [], 0.0, 0
    model.train()
    while step < warmup + steps:
        t_data = time.perf_counter()
        for clean, labels in loader:
            if step == warmup:
                data_s = 0.0
            data_s += time.perf_counter() - t_data
            ts.append(time.perf_counter() if step != warmup else t_data)
            if step == warmup:
                cpu0 = time.process_time()
            noise = torch.randn_like(clean)
            timesteps = torch.randint(0, 1000, (clean.shape[0],)).long()
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            target = noise_scheduler.get_velocity(clean, noise, timesteps)
            y = None
            if info.num_classes:
                drop = torch.rand(labels.shape) < cfg.model.cond_drop_prob
                y = torch.where(drop, torch.full_like(labels, info.num_classes), labels)
            pred = model(noisy, timesteps, y)
            loss = torch.nn.functional.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=[1, 2, 3])
            loss = (loss * _weights(cfg, abar, timesteps)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            opt.step()
            lr_sched.step()
            ema.update_parameters(model)
            float(loss.detach())
            step += 1
            if step >= warmup + steps:
                break
            t_data = time.perf_counter()
    end, cpu1 = time.perf_counter(), time.process_time()
    timed = end - ts[warmup]
    return {"images_per_s": steps * cfg.optim.batch_size / timed, "timed_s": round(timed, 3),
            "images_per_cpu_s": steps * cfg.optim.batch_size / (cpu1 - cpu0),
            "data_loading_share": round(data_s / timed, 4)}


def loops(args, out: dict) -> None:
    out["loops"] = {}
    for name in args.workloads:
        cfg, data = workload(name)
        info = DataInfo("image", data.channels, data.resolution, data.num_classes if cfg.data.labels else 0)
        n_params = count_parameters(build_model(cfg, info))
        pngs = PNGImages(data.x, data.labels, data.resolution)
        rounds = []
        runners = {"engine": lambda: engine_round(cfg, data, args.warmup, args.steps),
                   "bare": lambda: bare_round(cfg, data, args.warmup, args.steps),
                   "diffusers_style": lambda: diffusers_round(cfg, data, args.warmup, args.steps, pngs)}
        names = list(runners)
        for r in range(args.rounds):
            order = names[r % 3:] + names[: r % 3]  # rotate, so no loop always runs first or last
            measured = {k: runners[k]() for k in order}
            row = {k: measured[k] for k in names}
            row["order"] = order
            rounds.append(row)
            print(f"  {name} round {r}: " + ", ".join(f"{k} {row[k]['images_per_s']:.1f} img/s" for k in names), flush=True)
        med = {k: float(np.median([r[k]["images_per_s"] for r in rounds])) for k in names}
        med_cpu = {k: float(np.median([r[k]["images_per_cpu_s"] for r in rounds])) for k in names}
        out["loops"][name] = {
            "model": f"{cfg.model.preset} UNet {data.resolution}x{data.resolution}x{data.channels}"
                     + (", class-conditional" if info.num_classes else ""),
            "parameters": n_params, "batch": cfg.optim.batch_size, "objective": f"{cfg.objective.parameterization}, "
            f"{cfg.objective.weighting}", "warmup_steps": args.warmup, "timed_steps": args.steps, "rounds": rounds,
            "median_images_per_s": {k: round(v, 2) for k, v in med.items()},
            "median_images_per_cpu_s": {k: round(v, 2) for k, v in med_cpu.items()},
            "engine_over_bare_cpu": round(med_cpu["engine"] / med_cpu["bare"], 3),
            "engine_over_diffusers_style_cpu": round(med_cpu["engine"] / med_cpu["diffusers_style"], 3),
            "engine_over_bare": round(med["engine"] / med["bare"], 3),
            "engine_over_bare_per_round": [round(r["engine"]["images_per_s"] / r["bare"]["images_per_s"], 3) for r in rounds],
            "engine_over_bare_cpu_per_round": [round(r["engine"]["images_per_cpu_s"] / r["bare"]["images_per_cpu_s"], 3)
                                               for r in rounds],
            "engine_over_diffusers_style": round(med["engine"] / med["diffusers_style"], 3),
            "engine_over_diffusers_style_per_round": [round(r["engine"]["images_per_s"] / r["diffusers_style"]["images_per_s"], 3)
                                                      for r in rounds],
            "diffusers_style_data_loading_share": float(np.median([r["diffusers_style"]["data_loading_share"] for r in rounds])),
        }


def compile_path(args, out: dict) -> None:
    cfg, data = workload(args.workloads[0])
    before = engine_round(cfg, data, args.warmup, args.steps)
    try:
        t0 = time.perf_counter()
        comp = engine_round(cfg, data, args.warmup, args.steps, compile_=True)
        comp["wall_incl_compile_s"] = round(time.perf_counter() - t0, 1)
        error = None
    except Exception as e:  # report why it does not work here
        comp, error = None, f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    after = engine_round(cfg, data, args.warmup, args.steps)
    eager = 0.5 * (before["images_per_s"] + after["images_per_s"])
    out["compile"] = {"workload": args.workloads[0], "eager_before": before, "compiled": comp, "eager_after": after,
                      "error": error,
                      "compiled_over_eager": round(comp["images_per_s"] / eager, 3) if comp else None,
                      "first_compiled_step_s": comp["first_step_s"] if comp else None}


# ------------------------------------------------------------------------------------------ start-up


def _timed_child(cmd: list[str], marks: dict[str, str], env=None, timeout: float = 600) -> dict:
    """Run ``cmd``; seconds from launch until each regex in ``marks`` first appears on stdout/stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=C.ROOT)
    seen, text = C.watch_marks(proc.stdout, marks, t0)
    rc = proc.wait(timeout=timeout)
    seen["exit"] = round(time.perf_counter() - t0, 3)
    seen["rc"] = rc
    if rc != 0:
        seen["output_tail"] = text[-800:]
    return seen


def child_env(args) -> dict:
    """The children get the same thread count as this process when --threads is given."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return env


def startup(args, out: dict) -> None:
    env = child_env(args)
    py = sys.executable
    rows = []
    for r in range(args.startup_repeats):
        with tempfile.TemporaryDirectory(prefix="dsbench-") as tmp:
            train = _timed_child([py, "-m", "diffstudio", "train", "--preset", "quickstart", "--steps", "1",
                                  "--out", os.path.join(tmp, "run")],
                                 {"first_step_starts": r"training on ", "first_step_done": r"\] 1/1 "}, env)
        torch_only = _timed_child([py, "-c", "import torch"], {}, env)
        rows.append({"train": train, "import_torch_s": torch_only["exit"]})
    med = lambda key: float(np.median([r["train"].get(key, math.nan) for r in rows]))  # noqa: E731
    out["startup"] = {"command": "python -m diffstudio train --preset quickstart --steps 1",
                      "omp_num_threads": env.get("OMP_NUM_THREADS"), "runs": rows,
                      "median_to_first_step_start_s": med("first_step_starts"),
                      "median_to_first_step_done_s": med("first_step_done"),
                      "median_command_total_s": med("exit"),
                      "median_import_torch_s": float(np.median([r["import_torch_s"] for r in rows]))}


# ------------------------------------------------------------------------------------------ memory


def memory(args, out: dict) -> None:
    """The CLI trains quickstart for ``--rss-steps`` steps in a child; poll its VmRSS and VmHWM."""
    env = child_env(args)
    with tempfile.TemporaryDirectory(prefix="dsbench-") as tmp:
        cmd = [sys.executable, "-m", "diffstudio", "train", "--preset", "quickstart", "--steps", str(args.rss_steps),
               "--out", os.path.join(tmp, "run")]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=C.ROOT)
        state = {"step": 0}

        def read_progress():
            buf = b""
            while True:
                chunk = os.read(proc.stderr.fileno(), 4096)
                if not chunk:
                    return
                buf = (buf + chunk)[-400:]
                m = re.findall(rb"\] (\d+)/\d+ ", buf)
                if m:
                    state["step"] = int(m[-1])

        reader = threading.Thread(target=read_progress, daemon=True)
        reader.start()
        samples, usage, status = [], None, None
        while usage is None:
            rss, hwm = _status(proc.pid, "VmRSS"), _status(proc.pid, "VmHWM")
            if rss == rss:
                samples.append({"t": round(time.perf_counter() - t0, 2), "step": state["step"], "rss_mb": rss,
                                "hwm_mb": hwm})
            pid, wstatus, ru = os.wait4(proc.pid, os.WNOHANG)  # reap it ourselves to get its rusage
            if pid:
                usage, status = ru, os.waitstatus_to_exitcode(wstatus)
                proc.returncode = status
            else:
                time.sleep(args.rss_poll)
        reader.join(timeout=5)
    quick_len = preset("quickstart").run.steps
    at = lambda frac: next((s for s in samples if s["step"] >= frac * args.rss_steps), samples[-1] if samples else {})  # noqa: E731
    hwm_quick = max((s["hwm_mb"] for s in samples if s["step"] <= quick_len), default=math.nan)
    late = [s for s in samples if s["step"] >= 0.5 * args.rss_steps]
    slope = math.nan
    if len(late) >= 3 and late[-1]["step"] > late[0]["step"]:
        slope = float(np.polyfit([s["step"] for s in late], [s["rss_mb"] for s in late], 1)[0] * 1000)
    out["memory"] = {"command": " ".join(cmd[1:]), "rc": status, "steps": args.rss_steps,
                     "ru_maxrss_mb_child": round(usage.ru_maxrss / 1024.0, 1),
                     "peak_rss_mb_first_quickstart_steps": round(hwm_quick, 1),
                     "peak_rss_mb_whole_run": round(max((s["hwm_mb"] for s in samples), default=math.nan), 1),
                     "rss_mb_at_10pct": round(at(0.1).get("rss_mb", math.nan), 1),
                     "rss_mb_at_50pct": round(at(0.5).get("rss_mb", math.nan), 1),
                     "rss_mb_at_end": round(samples[-1]["rss_mb"], 1) if samples else None,
                     "rss_slope_mb_per_1000_steps_second_half": round(slope, 2), "samples": samples[:: max(1, len(samples) // 200)]}


def _status(pid: int, key: str) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return math.nan


def main(argv=None) -> int:
    p = C.base_parser(__doc__)
    p.add_argument("--only", default="loops,compile,startup,memory")
    p.add_argument("--workloads", default="unet32,digits8")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=30, help="timed steps per round and loop")
    p.add_argument("--startup-repeats", type=int, default=3)
    p.add_argument("--rss-steps", type=int, default=3000)
    p.add_argument("--rss-poll", type=float, default=0.5)
    args = p.parse_args(argv)
    parts = set(args.only.split(","))
    if args.quick:
        args.rounds, args.warmup, args.steps, args.startup_repeats, args.rss_steps = 1, 1, 3, 1, 20
        args.workloads = "digits8"
        parts.discard("compile")
    args.workloads = args.workloads.split(",")
    C.set_threads(args.threads)
    t0 = time.perf_counter()
    out = {"benchmark": "throughput", "mode": "quick" if args.quick else "full", "machine": C.machine_info(),
           "revision": C.git_revision(), "command": "python benchmarks/throughput.py " + " ".join(argv or sys.argv[1:])}
    timings = {}
    for part, fn in (("loops", loops), ("compile", compile_path), ("startup", startup), ("memory", memory)):
        if part in parts:
            with C.stopwatch(timings, part):
                fn(args, out)
            print(f"{part} done in {timings[part]:.0f} s", flush=True)
    out["section_seconds"] = timings
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    existing = os.path.join(args.out, "throughput.json")
    if parts != {"loops", "compile", "startup", "memory"} and os.path.exists(existing):
        previous = json.load(open(existing))  # a partial run updates the sections it measured
        if previous.get("mode") == out["mode"]:
            for key in ("loops", "compile", "startup", "memory"):
                if key not in out and key in previous:
                    out[key] = previous[key]
            out["machine_earlier_sections"] = previous.get("machine")
            out["command"] = previous.get("command", "") + " ; " + out["command"]
    report(out)
    path = C.save_json(args.out, "throughput", out)
    print(f"wrote {path}")
    return 0


def report(out: dict) -> None:
    for name, L in out.get("loops", {}).items():
        m = L["median_images_per_s"]
        print(f"\n{name}: {L['model']}, {L['parameters']:,} parameters, batch {L['batch']} "
              f"({L['rounds'].__len__()} alternating rounds x {L['timed_steps']} timed steps)")
        mc = L["median_images_per_cpu_s"]
        print(C.table([["engine (Trainer)", m["engine"], 1.0, mc["engine"], 1.0],
                       ["bare eager loop", m["bare"], L["engine_over_bare"], mc["bare"], L["engine_over_bare_cpu"]],
                       ["diffusers-style loop (DataLoader + PIL)", m["diffusers_style"], L["engine_over_diffusers_style"],
                        mc["diffusers_style"], L["engine_over_diffusers_style_cpu"]]],
                      ["loop", "median images/s", "engine / this", "images per CPU-s", "engine / this (CPU)"]))
        print(f"  engine/bare per round {L['engine_over_bare_per_round']} (CPU {L.get('engine_over_bare_cpu_per_round')}); "
              f"engine/diffusers-style per round "
              f"{L['engine_over_diffusers_style_per_round']}; data loading share of the diffusers-style loop "
              f"{L['diffusers_style_data_loading_share']:.3f}")
    if "compile" in out:
        c = out["compile"]
        if c["compiled"]:
            print(f"\ntorch.compile ({c['workload']}): {c['compiled']['images_per_s']:.1f} images/s vs eager "
                  f"{c['eager_before']['images_per_s']:.1f}/{c['eager_after']['images_per_s']:.1f} -> "
                  f"{c['compiled_over_eager']}x; first (compiling) step {c['first_compiled_step_s']} s")
        else:
            print(f"\ntorch.compile failed: {c['error']}")
    if "startup" in out:
        s = out["startup"]
        print(f"\n{s['command']}: first step starts after {s['median_to_first_step_start_s']:.2f} s, done after "
              f"{s['median_to_first_step_done_s']:.2f} s, command exits after {s['median_command_total_s']:.2f} s "
              f"(python -c 'import torch': {s['median_import_torch_s']:.2f} s)")
    if "memory" in out:
        mm = out["memory"]
        print(f"\nmemory ({mm['command']}): peak RSS over the first quickstart-length steps "
              f"{mm['peak_rss_mb_first_quickstart_steps']} MB, whole run {mm['peak_rss_mb_whole_run']} MB "
              f"(ru_maxrss {mm['ru_maxrss_mb_child']} MB); RSS at "
              f"10%/50%/end {mm['rss_mb_at_10pct']}/{mm['rss_mb_at_50pct']}/{mm['rss_mb_at_end']} MB; slope over the "
              f"second half {mm['rss_slope_mb_per_1000_steps_second_half']} MB per 1000 steps")


if __name__ == "__main__":
    raise SystemExit(main())
