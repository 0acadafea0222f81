"""Time from launching the app (``python -m diffstudio``, i.e. ``diffstudio.gui.app.run_app``) to a
visible main window (target <= 3 s), under ``QT_QPA_PLATFORM=offscreen``.

"Visible" is the app's own marker (``DIFFSTUDIO_STARTUP_TIMING=1``): the first turn of the event
loop after ``MainWindow.show()``; the parent measures from ``Popen`` to reading that line, so the
interpreter start and every import are included. The splash marker is reported too. Each launch
gets a fresh, empty settings folder (no saved layout). Baseline, alternating with the launches:
``python -c "import torch"`` (the app imports PyTorch before the window; that is the floor) and
``python -c "import PySide6.QtWidgets"``. On a shared machine wall time includes waiting for a core,
so each child's CPU time (user + sys, from ``wait4``) is reported beside it.

    python benchmarks/startup.py
    python benchmarks/startup.py --quick

Writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402

TARGET_S = 3.0


def _wait_rusage(proc) -> tuple[int, float]:
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, ru.ru_utime + ru.ru_stime


WINDOW_LINE = r"window on screen \(from run_app\): ([\d.]+) s"


def launch_app(env: dict, timeout: float) -> dict:
    """Seconds from Popen to the splash and to the window-on-screen line; then end the child."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "diffstudio"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, cwd=C.ROOT)
    seen, text = C.watch_marks(proc.stderr, {"splash": r"splash shown", "window": WINDOW_LINE}, t0,
                               until="window", deadline=t0 + timeout)
    reported = {}
    m = re.search(WINDOW_LINE, text)
    if m:
        reported["run_app_to_window_s"] = float(m.group(1))
        m2 = re.search(r"window on screen \(from importing diffstudio.gui.app\): ([\d.]+) s", text)
        if m2:
            reported["import_app_to_window_s"] = float(m2.group(1))
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # our own child
    try:
        rc, cpu = _wait_rusage(proc)
    except ChildProcessError:
        rc, cpu = proc.returncode, float("nan")
    out = {**seen, **reported, "cpu_s_until_killed": round(cpu, 3)}
    if "window" not in seen:
        out["error"] = f"no window marker (rc {rc}): " + text[-600:]
    return out


def run_baseline(code: str, env: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=C.ROOT)
    _, cpu = _wait_rusage(proc)
    return {"wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(cpu, 3)}


def main(argv=None) -> int:
    p = C.base_parser(__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--timeout", type=float, default=120)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = 1
    out = {"benchmark": "startup", "mode": "quick" if args.quick else "full", "machine": C.machine_info(),
           "revision": C.git_revision(), "command": "python benchmarks/startup.py " + " ".join(argv or sys.argv[1:]),
           "target_s": TARGET_S, "runs": []}
    t_start = time.perf_counter()
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="dsbench-home-") as home:
            env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DIFFSTUDIO_STARTUP_TIMING="1",
                       PYTHONUNBUFFERED="1", XDG_CONFIG_HOME=home)
            if args.threads:
                env["OMP_NUM_THREADS"] = str(args.threads)
            row = {"torch": run_baseline("import torch", env),
                   "app": launch_app(env, args.timeout),
                   "qt": run_baseline("import PySide6.QtWidgets", env)}
        out["runs"].append(row)
        print(f"  launch {r}: window after {row['app'].get('window')} s (import torch {row['torch']['wall_s']} s)",
              flush=True)
    ok = [r for r in out["runs"] if "window" in r["app"]]
    med = lambda f: round(float(np.median([f(r) for r in ok])), 3) if ok else None  # noqa: E731
    out["median_window_s"] = med(lambda r: r["app"]["window"])
    out["median_splash_s"] = med(lambda r: r["app"].get("splash", float("nan")))
    out["median_run_app_to_window_s"] = med(lambda r: r["app"].get("run_app_to_window_s", float("nan")))
    out["median_app_cpu_s"] = med(lambda r: r["app"]["cpu_s_until_killed"])
    out["median_import_torch_s"] = med(lambda r: r["torch"]["wall_s"])
    out["median_import_torch_cpu_s"] = med(lambda r: r["torch"]["cpu_s"])
    out["median_import_qt_s"] = med(lambda r: r["qt"]["wall_s"])
    out["window_over_import_torch"] = (round(out["median_window_s"] / out["median_import_torch_s"], 2) if ok else None)
    out["total_seconds"] = round(time.perf_counter() - t_start, 1)
    print(C.table([["app: launch -> window on screen", out["median_window_s"], out["median_app_cpu_s"]],
                   ["app: launch -> splash", out["median_splash_s"], ""],
                   ["python -c 'import torch'", out["median_import_torch_s"], out["median_import_torch_cpu_s"]],
                   ["python -c 'import PySide6.QtWidgets'", out["median_import_qt_s"], ""]],
                  ["what", "median wall s", "median CPU s"]))
    print(f"window / import-torch: {out['window_over_import_torch']}; target {TARGET_S:g} s; "
          f"{len(ok)}/{len(out['runs'])} launches showed the window")
    path = C.save_json(args.out, "startup", out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
