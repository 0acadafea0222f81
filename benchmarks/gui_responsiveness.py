"""How responsive the UI thread stays while a run trains on the QThread worker.

For each torch thread count, train a preset for a few seconds on a TrainingThread while a 10 ms
QTimer on the UI thread records how late it fires (the event-loop latency a user feels), and the
worker's steps/s. Prints a table; never asserts.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_responsiveness.py [--preset moons-flow] [--seconds 6]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

from diffstudio.engine.presets import preset
from diffstudio.gui.runs_curve import LossCurve, loss_rows
from diffstudio.gui.worker import TrainingThread


def measure(app, name: str, threads: int, seconds: float, out_dir: str) -> dict:
    cfg = preset(name).updated(run={"steps": 10_000_000, "out_dir": out_dir, "log_every": 5,
                                    "preview_every": 200, "checkpoint_every": 10_000_000, "device": "cpu"},
                               sampling={"num_samples": 64})
    curve = LossCurve()  # the real consumer of the metrics signal, redrawing at 10 Hz
    curve.show()
    thread = TrainingThread(cfg, num_threads=threads)
    thread.metrics.connect(lambda batch: curve.add(*loss_rows(m for _, m in batch)))
    lateness: list[float] = []
    clock = QElapsedTimer()
    started: dict = {}
    thread.started_run.connect(lambda info: started.setdefault("t", time.monotonic()))

    def tick():
        if "t" in started and clock.isValid():
            lateness.append(max(0.0, clock.nsecsElapsed() / 1e6 - 10.0))
        clock.restart()

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    loop = QEventLoop()
    thread.started_run.connect(lambda _info: QTimer.singleShot(int(seconds * 1000), loop.quit))
    thread.failed.connect(lambda message: (print("failed:", message), loop.quit()))
    thread.start()
    loop.exec()  # the real event loop: idle in poll() between events, as the app is
    steps = thread.last_step
    elapsed = time.monotonic() - started.get("t", time.monotonic())
    thread.join()
    timer.stop()
    curve.close()
    late = np.asarray(lateness or [0.0])
    return {"threads": threads, "steps_per_s": steps / max(elapsed, 1e-9), "p50_ms": np.percentile(late, 50),
            "p99_ms": np.percentile(late, 99), "max_ms": late.max(), "ticks": len(late)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="moons-flow")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--threads", type=int, nargs="*", default=None)
    parser.add_argument("--switch-ms", type=float, default=None,
                        help="sys.setswitchinterval in ms (Python's default is 5)")
    args = parser.parse_args()
    if args.switch_ms is not None:
        import sys

        sys.setswitchinterval(args.switch_ms / 1000)
    from diffstudio.gui.app import create_app

    app = create_app([])  # the app's own set-up (it works around a shiboken 6.12 refcount bug)
    cores = os.cpu_count() or 1
    counts = args.threads or sorted({1, max(1, cores - 1), cores})
    print(f"preset {args.preset}, {cores} cores; UI timer every 10 ms, lateness = how late it fired")
    print(f"{'torch threads':>13} {'steps/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'ticks':>6}")
    with tempfile.TemporaryDirectory() as out:
        for n in counts:
            r = measure(app, args.preset, n, args.seconds, out)
            print(f"{r['threads']:>13} {r['steps_per_s']:>9.1f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
                  f"{r['max_ms']:>7.1f} {r['ticks']:>6}")


if __name__ == "__main__":
    main()
