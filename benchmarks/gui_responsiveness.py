"""How responsive the app stays while it trains, and what the GUI costs the training.

Each round trains the same preset twice for ``--seconds`` of steady training, in alternating
order: once **headless** (the Trainer on the main thread, as ``diffstudio train`` runs it) and once
**in the app** (the real MainWindow, offscreen, with Train pressed on its Training panel, so the
loss curve, progress bar, status bar and preview panes all update as a user sees them). During the
app run a 10 ms QTimer on the UI thread records how late it fires: the event-loop latency a user
feels when zooming a plot or editing the schedule. Both runs use the app's torch thread count
(``gui.worker.training_threads()``: one core is left to the UI). Also measured: the time from
pressing Train to the first finished step (the first press pays the model imports).

Prints a table and writes ``results/gui_responsiveness.json``; never asserts.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_responsiveness.py [--presets quickstart moons-flow]
        [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, git_revision, machine_info, save_json  # noqa: E402

TICK_MS = 10


def bench_config(name: str, out_dir: str):
    """The preset as a user would train it, with an open-ended step count."""
    from diffstudio.engine.presets import preset

    return preset(name).updated(run={"steps": 10_000_000, "out_dir": out_dir, "checkpoint_every": 10_000_000,
                                     "device": "cpu"})


def headless(cfg, seconds: float, threads: int) -> dict:
    """Trainer on this thread; steps/s over ``seconds`` after the first step."""
    import torch

    from diffstudio.engine.trainer import Trainer, TrainerHooks

    torch.set_num_threads(threads)
    marks: dict = {}

    class Hooks(TrainerHooks):
        def on_metrics(self, step, metrics):
            now = time.perf_counter()
            marks.setdefault("first", (step, now))
            marks["last"] = (step, now)

        def should_stop(self):
            return "first" in marks and time.perf_counter() - marks["first"][1] >= seconds

    Trainer(cfg.updated(run={"log_every": 1}), hooks=Hooks()).run()
    (s0, t0), (s1, t1) = marks["first"], marks["last"]
    return {"steps_per_s": (s1 - s0) / max(t1 - t0, 1e-9), "steps": s1 - s0}


def in_app(app, window, cfg, seconds: float) -> dict:
    """Press Train on the real window; measure UI lateness and steps/s, then stop without saving."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

    panel = window.training_panel
    window.state.set_config(cfg)
    lateness: list[float] = []
    marks: dict = {}
    clock = QElapsedTimer()

    def tick():
        if "first" in marks and clock.isValid():
            lateness.append(max(0.0, clock.nsecsElapsed() / 1e6 - TICK_MS))
        clock.restart()

    def on_progress(progress):
        step = progress.step
        now = time.perf_counter()
        if step >= 1 and "first" not in marks:
            marks["first"] = (step, now)
            QTimer.singleShot(int(seconds * 1000), loop.quit)
        marks["last"] = (step, now)

    timer = QTimer(interval=TICK_MS)
    timer.timeout.connect(tick)
    loop = QEventLoop()
    pressed = time.perf_counter()
    if not panel.start():
        raise SystemExit(f"Train refused: {panel.start_reason()}")
    thread = panel.thread
    thread.progress.connect(on_progress)
    thread.failed.connect(lambda message: (print("failed:", message), loop.quit()))
    timer.start()
    loop.exec()  # the app's event loop: idle in poll() between events, as a user's session is
    timer.stop()
    thread.progress.disconnect(on_progress)
    (s0, t0), (s1, t1) = marks["first"], marks["last"]
    thread.abort()
    thread.wait()
    app.processEvents()
    late = np.asarray(lateness or [0.0])
    return {"steps_per_s": (s1 - s0) / max(t1 - t0, 1e-9), "steps": s1 - s0, "train_to_first_step_s": t0 - pressed,
            "latency_p50_ms": float(np.percentile(late, 50)), "latency_p99_ms": float(np.percentile(late, 99)),
            "latency_max_ms": float(late.max()), "ticks": len(late)}


def open_window(app, cfg):
    """The main window as ``diffstudio`` opens it, with the preset's dataset loaded."""
    from PySide6.QtCore import QCoreApplication

    from diffstudio.data.registry import load_dataset
    from diffstudio.gui.main_window import MainWindow
    from diffstudio.gui.state import AppState

    window = MainWindow(AppState(cfg))
    window.resize(1600, 1000)
    window.show()
    deadline = time.monotonic() + 120
    while window.state.dataset is None and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    if window.state.dataset is None:
        d = cfg.data
        window.state.set_dataset(load_dataset(d.source, d.resolution, d.channels, d.labels, d.num_points))
    return window


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--presets", nargs="+", default=["quickstart", "moons-flow"])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 2.0, 1
    import torch

    from diffstudio.gui.app import create_app
    from diffstudio.gui.worker import training_threads

    app = create_app([])  # the app's own set-up (it works around a shiboken 6.12 refcount bug)
    torch.set_num_threads(1)  # as run_app does for the UI thread's own small computations
    threads = args.threads or training_threads()
    results: dict = {"benchmark": "gui_responsiveness", "revision": git_revision(),
                     "command": "QT_QPA_PLATFORM=offscreen python benchmarks/gui_responsiveness.py " + " ".join(sys.argv[1:]),
                     "machine": machine_info(), "seconds": args.seconds, "rounds": args.rounds,
                     "training_threads": threads, "tick_ms": TICK_MS, "presets": {}}
    print(f"{os.cpu_count()} cores, training on {threads} torch thread(s); load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as out:
        for name in args.presets:
            cfg = bench_config(name, out)
            window = open_window(app, cfg)
            rounds = []
            for r in range(args.rounds):
                order = ("app", "headless") if r % 2 == 0 else ("headless", "app")
                row = {"order": order, "load": os.getloadavg()[0]}
                for kind in order:
                    row[kind] = in_app(app, window, cfg, args.seconds) if kind == "app" else \
                        headless(cfg, args.seconds, threads)
                    torch.set_num_threads(1)
                row["ratio"] = row["app"]["steps_per_s"] / row["headless"]["steps_per_s"]
                rounds.append(row)
                a, h = row["app"], row["headless"]
                print(f"{name:>11} round {r + 1}: app {a['steps_per_s']:7.1f} steps/s, headless "
                      f"{h['steps_per_s']:7.1f} -> {row['ratio']:.3f}; UI lateness p50 {a['latency_p50_ms']:.2f} "
                      f"p99 {a['latency_p99_ms']:.1f} max {a['latency_max_ms']:.0f} ms; Train -> first step "
                      f"{a['train_to_first_step_s']:.2f} s")
            window.close_without_asking()
            window.deleteLater()
            app.processEvents()
            results["presets"][name] = summarize(rounds)
    path = save_json(args.out, "gui_responsiveness", results)
    print(f"wrote {path}")


def summarize(rounds: list[dict]) -> dict:
    apps = [r["app"] for r in rounds]
    return {"rounds": rounds,
            "ratio_median": float(np.median([r["ratio"] for r in rounds])),
            "latency_p50_ms_median": float(np.median([a["latency_p50_ms"] for a in apps])),
            "latency_p99_ms_median": float(np.median([a["latency_p99_ms"] for a in apps])),
            "latency_p99_ms_worst": float(max(a["latency_p99_ms"] for a in apps)),
            "train_to_first_step_s_first": apps[0]["train_to_first_step_s"],
            "train_to_first_step_s_later": [a["train_to_first_step_s"] for a in apps[1:]]}


if __name__ == "__main__":
    main()
