"""Closing the app mid-run: seconds from the worker's stop to the process's exit (target <= 2 s).

A child runs the app's own window (offscreen, a fresh settings folder), starts the moons-flow
preset, closes the window after ``--train`` seconds and answers the "Save a checkpoint?" question
with Yes or No. The child prints a marker when the worker thread has finished; the parent times
from reading that marker to the child's exit (interpreter teardown and every join included), and
from the close to the marker (how long the window says "stopping…"). Baseline in the same run:
the exit of a child that builds the same window and closes it without training. The child ends as
``run_app`` does (``exit_now``); ``--teardown`` lets the interpreter tear down instead, to compare.

    python benchmarks/close_mid_run.py [--rounds 3] [--train 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import sys, time
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from diffstudio.gui.app import create_app
app = create_app([])
from diffstudio.engine.presets import preset
from diffstudio.gui.main_window import MainWindow
from diffstudio.gui.state import AppState
answer, train_s, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
cfg = preset("moons-flow").updated(run={"steps": 10**7, "out_dir": out, "log_every": 10, "device": "cpu"})
window = MainWindow(AppState(cfg), settings=QSettings(out + "/s.ini", QSettings.Format.IniFormat))
window.show()
QMessageBox.question = lambda *a, **k: getattr(QMessageBox.StandardButton, answer)
def mark(text):
    print(f"{text} {time.perf_counter():.4f}", flush=True)
def start():
    if window.state.dataset is None:
        QTimer.singleShot(50, start); return
    if answer == "Baseline":
        mark("stopped"); window.close(); return
    window.training_panel.start()
    window.training_panel.thread.finished.connect(lambda: mark("stopped"))
    QTimer.singleShot(int(train_s * 1000), lambda: (mark("close"), window.close()))
QTimer.singleShot(0, start)
from diffstudio.gui.app import exit_now
exit_now(app.exec())  # what run_app does
"""


def one(answer: str, train_s: float, teardown: bool = False) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        child = CHILD.replace("exit_now(app.exec())", "sys.exit(app.exec())") if teardown else CHILD
        proc = subprocess.Popen([sys.executable, "-c", child, answer, str(train_s), out], stdout=subprocess.PIPE,
                                text=True, env=env)
        marks = {}
        for line in proc.stdout:
            name, _, _ = line.partition(" ")
            marks[name] = time.perf_counter()
            if name == "stopped":
                break
        proc.wait()
        end = time.perf_counter()
        if proc.returncode != 0 or "stopped" not in marks:
            raise SystemExit(f"child failed ({proc.returncode}) for {answer}")
    stopping = marks["stopped"] - marks["close"] if "close" in marks else 0.0
    return stopping, end - marks["stopped"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--train", type=float, default=3.0)
    ap.add_argument("--teardown", action="store_true", help="sys.exit instead of exit_now")
    args = ap.parse_args()
    for r in range(args.rounds):
        for answer in ("Baseline", "No", "Yes"):
            stopping, exit_s = one(answer, args.train, args.teardown)
            print(f"round {r + 1} {answer:>8}: window up 'stopping…' {stopping:5.2f} s, "
                  f"worker stopped -> process exit {exit_s:5.2f} s")


if __name__ == "__main__":
    main()
