"""Time from a schedule parameter change to redrawn plots in the Schedule panel (target <= 16 ms).

Under ``QT_QPA_PLATFORM=offscreen`` (software raster painting), T = 1000, every curve on: log-SNR,
alpha, sigma, a dashed reference schedule, the sampling-step markers (50 steps) and the noisy
thumbnails. Each edit goes through the real widget (spin box, check box, combo box), so the time
covers the config update, validation, the panel's ``redraw()`` (``setData`` on items created once)
and, for ``to_painted``, the ``processEvents()`` calls that deliver the paint of what changed. On a shared machine wall time includes waiting for a core, so the CPU time of the
same interval (``time.process_time``; the UI thread is single-threaded) is reported beside it. Edits cycle through
beta_end, ZTSNR on/off, number of steps, spacing and family.

Measured twice: the panel alone, and inside the whole ``MainWindow`` (where other panels react
to the same config change). The baseline, alternating with the edits, is a synchronous
``repaint()`` of the same view with no edit.

    QT_QPA_PLATFORM=offscreen python benchmarks/schedule_redraw.py
    python benchmarks/schedule_redraw.py --quick

Writes benchmarks/results/schedule_redraw.json.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402

TARGET_MS = 16.0


def _combo_index(combo, data) -> int:
    return next(i for i in range(combo.count()) if combo.itemData(i) == data)


def edits(panel):
    """(name, edit(i)) pairs that flip a parameter back and forth through the panel's widgets."""

    def spacing(i):
        panel.spacing_combo.setCurrentIndex(_combo_index(panel.spacing_combo, "leading" if i % 2 == 0 else "trailing"))

    def family(i):
        panel.family_combo.setCurrentIndex(_combo_index(panel.family_combo, "linear" if i % 2 == 0 else "scaled_linear"))

    return [
        ("beta_end", lambda i: panel.beta_end.setValue(0.0125 if i % 2 == 0 else 0.012)),
        ("ztsnr", lambda i: panel.ztsnr_check.setChecked(i % 2 == 1)),
        ("steps", lambda i: panel.steps_spin.setValue(25 if i % 2 == 0 else 50)),
        ("spacing", spacing),
        ("family", family),
    ]


def measure(app, panel, view, rounds: int) -> dict:
    """Alternate: baseline repaint, then each edit (handler time; handler + processEvents)."""
    for _ in range(3):  # warm-up: first paints build caches
        view.repaint()
        app.processEvents()
    results = {name: {"handler_ms": [], "to_painted_ms": [], "to_painted_cpu_ms": [], "redraw_ms": []}
               for name, _ in edits(panel)}
    baseline = []
    for i in range(rounds):
        for name, edit in edits(panel):
            t0 = time.perf_counter()
            view.repaint()
            baseline.append(1000 * (time.perf_counter() - t0))
            app.processEvents()
            c0, t0 = time.process_time(), time.perf_counter()
            edit(i)
            t1 = time.perf_counter()
            app.processEvents()  # delivers the update requests: the dirty regions are painted here
            app.processEvents()  # and anything posted while painting (deferred range updates)
            t2, c2 = time.perf_counter(), time.process_time()
            r = results[name]
            r["to_painted_cpu_ms"].append(1000 * (c2 - c0))
            r["handler_ms"].append(1000 * (t1 - t0))
            r["to_painted_ms"].append(1000 * (t2 - t0))
            r["redraw_ms"].append(panel.last_redraw_ms)
    summary = {}
    for name, r in results.items():
        summary[name] = {k: {"median": round(float(np.median(v)), 2), "p90": round(float(np.percentile(v, 90)), 2),
                             "max": round(float(np.max(v)), 2)} for k, v in r.items()}
    all_painted = np.concatenate([r["to_painted_ms"] for r in results.values()])
    all_cpu = np.concatenate([r["to_painted_cpu_ms"] for r in results.values()])
    return {"per_edit": summary, "baseline_repaint_ms": {"median": round(float(np.median(baseline)), 2),
                                                         "p90": round(float(np.percentile(baseline, 90)), 2)},
            "to_painted_all_edits_ms": {"median": round(float(np.median(all_painted)), 2),
                                        "p90": round(float(np.percentile(all_painted, 90)), 2),
                                        "max": round(float(np.max(all_painted)), 2)},
            "to_painted_cpu_all_edits_ms": {"median": round(float(np.median(all_cpu)), 2),
                                            "p90": round(float(np.percentile(all_cpu, 90)), 2)},
            "share_of_edits_within_target": round(float((all_painted <= TARGET_MS).mean()), 3),
            "share_of_edits_within_target_cpu": round(float((all_cpu <= TARGET_MS).mean()), 3),
            "edits": int(len(all_painted))}


def setup_state(state) -> None:
    state.update("schedule", family="scaled_linear", ztsnr=True, num_train_timesteps=1000)
    state.update("sampling", steps=50, spacing="trailing")


def main(argv=None) -> int:
    p = C.base_parser(__doc__)
    p.add_argument("--rounds", type=int, default=40, help="times each edit kind is made")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = 4
    from diffstudio.gui.app import create_app, protect_singletons

    protect_singletons()
    app = create_app([])
    import torch

    torch.set_num_threads(args.threads or 1)  # what run_app does for the UI thread
    from diffstudio.engine.config import Config
    from diffstudio.gui.panels.schedule import SchedulePanel
    from diffstudio.gui.state import AppState

    out = {"benchmark": "schedule_redraw", "mode": "quick" if args.quick else "full", "machine": C.machine_info(),
           "revision": C.git_revision(), "qpa": os.environ.get("QT_QPA_PLATFORM"),
           "command": "QT_QPA_PLATFORM=offscreen python benchmarks/schedule_redraw.py " + " ".join(argv or sys.argv[1:]),
           "target_ms": TARGET_MS}
    t_start = time.perf_counter()

    state = AppState(Config())
    setup_state(state)
    panel = SchedulePanel(state)
    panel.reference_combo.setCurrentIndex(_combo_index(panel.reference_combo, "sd"))
    panel.resize(1280, 800)
    panel.show()
    app.processEvents()
    out["panel_alone"] = measure(app, panel, panel, args.rounds)
    panel.close()

    try:
        from diffstudio.gui.main_window import MainWindow

        window = MainWindow(AppState(Config()), defer_dataset=True)
        setup_state(window.state)
        sp = window.schedule_panel
        sp.reference_combo.setCurrentIndex(_combo_index(sp.reference_combo, "sd"))
        window.resize(1440, 900)
        window.show()
        app.processEvents()
        out["in_main_window"] = measure(app, sp, window, args.rounds)
        window.close()
    except Exception as e:  # the main window is owned elsewhere; report, do not fail
        out["in_main_window"] = {"error": f"{type(e).__name__}: {e}"}
    out["total_seconds"] = round(time.perf_counter() - t_start, 1)
    out["load_average_at_end"] = C._loadavg()  # the machine is shared: how busy it was

    for where in ("panel_alone", "in_main_window"):
        m = out[where]
        if "error" in m:
            print(f"{where}: {m['error']}")
            continue
        rows = [[name, v["handler_ms"]["median"], v["to_painted_ms"]["median"], v["to_painted_ms"]["p90"],
                 v["to_painted_ms"]["max"], v["to_painted_cpu_ms"]["median"], v["redraw_ms"]["median"]]
                for name, v in m["per_edit"].items()]
        print(f"\n{where}: edit -> painted, ms ({args.rounds} edits of each kind; target {TARGET_MS:g} ms)")
        print(C.table(rows, ["edit", "handler median", "to painted median", "p90", "max", "CPU ms median",
                             "panel redraw()"]))
        a = m["to_painted_all_edits_ms"]
        print(f"all edits: median {a['median']} ms, p90 {a['p90']} ms, max {a['max']} ms; "
              f"{100 * m['share_of_edits_within_target']:.0f} % within target (by CPU time "
              f"{m['to_painted_cpu_all_edits_ms']['median']} ms median, "
              f"{100 * m['share_of_edits_within_target_cpu']:.0f} % within); baseline repaint() "
              f"(no edit) median {m['baseline_repaint_ms']['median']} ms")
    print(f"load average (1, 5, 15 min): at start {out['machine']['load_average_at_start']}, "
          f"at end {out['load_average_at_end']}")
    path = C.save_json(args.out, "schedule_redraw", out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
