"""The "loss by noise level" view: live in the Training panel, read from run folders, overlaid in
Compare runs; undefined values are gaps."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import math

import numpy as np
import pytest

from diffstudio.data.registry import load_dataset
from diffstudio.engine.evaluation import ValidationResult
from diffstudio.engine.presets import preset
from diffstudio.engine.run_dir import RunDir
from diffstudio.gui.panels.training import TrainingPanel
from diffstudio.gui.runs import CompareRunsWindow, RunViewer
from diffstudio.gui.state import AppState
from diffstudio.gui.widgets.val_curve import ValidationView, shown_indices

T = [0.001, 0.1, 0.5, 0.9, 1.0]


def _result(step, scale=1.0, param="v", model="ema"):
    x0 = [scale * v for v in (0.001, 0.05, 0.2, 0.3, 0.33)]
    last_defined = param != "eps"
    return ValidationResult(step, model, param, T, [7.0, 2.0, 0.0, -2.0, None],
                            [scale * v for v in (0.1, 0.2, 0.3, 0.4, 0.5)],
                            x0 if last_defined else x0[:-1] + [None],
                            [0.9, 0.5, 0.2, 0.01, 0.0] if last_defined else [0.9, 0.5, 0.2, 0.01, None],
                            0.2 * scale, 16,
                            [] if last_defined else [{"t": 1.0, "reason": "eps-prediction at t = 1: singular"}])


def _rows(results, quality=()):
    rows = [{"step": r.step, "validation": r.to_json()} for r in results]
    return rows + [{"step": s, "quality": q} for s, q in quality]


def test_shown_indices_keep_first_latest_and_three_between():
    assert shown_indices(3) == [0, 1, 2]
    assert shown_indices(20) == [0, 5, 10, 14, 19]


def test_view_draws_first_between_and_latest_switches_metric_and_axis_and_leaves_gaps(qtbot):
    view = ValidationView()
    qtbot.addWidget(view)
    for k in range(1, 9):
        view.add_result(_result(100 * k, scale=1.0 / k, param="eps"))
    assert [r.step for r in view.shown()] == [100, 300, 500, 600, 800]
    curves = view.curve_data()
    assert len(curves) == 5
    x, y = curves[-1]  # the latest
    assert list(x) == T and y[0] == pytest.approx(0.001 / 8) and math.isnan(y[-1])  # t = 1 undefined: a gap
    assert "undefined at t = 1" in view.note.text()
    view.metric_combo.setCurrentIndex(view.metric_combo.findData("loss"))
    assert view.curve_data()[-1][1][-1] == pytest.approx(0.5 / 8)  # the objective's loss is defined there
    view.axis_combo.setCurrentIndex(view.axis_combo.findData("log_snr"))
    x, _ = view.curve_data()[-1]
    assert list(x[:-1]) == [7.0, 2.0, 0.0, -2.0] and math.isnan(x[-1])  # log-SNR -inf: no place on the axis
    sx, sy = view.summary_curves[""].getData()
    assert list(sx) == [100 * k for k in range(1, 9)] and sy[-1] == pytest.approx(0.2 / 8)
    view.add_quality(100, {"digits_recognition": 0.5})
    view.add_quality(200, {"digits_recognition": 0.9})
    qx, qy = view.quality_curves[""].getData()
    assert list(qx) == [100, 200] and list(qy) == [0.5, 0.9]
    view.add_result(_result(300, param="eps"))  # resumed from an earlier step: later curves go
    assert [r.step for r in view.results[""]] == [100, 200, 300]
    view.clear()
    assert view.curve_data() == [] and view.quality_combo.count() == 0


def test_both_models_draw_the_first_one_only(qtbot):
    view = ValidationView()
    qtbot.addWidget(view)
    view.add_result(_result(100, model="ema"))
    view.add_result(_result(100, scale=9.0, model="raw"))
    assert [r.model for r in view.results[""]] == ["ema"]


def test_run_viewer_and_compare_runs_read_the_by_t_curves_from_metrics(qtbot, tmp_path):
    a = RunDir.create(tmp_path, "a")
    a.save_config(preset("lighting-sd-eps"))
    a.append_metrics(_rows([_result(100, 2.0, "eps"), _result(200, 1.0, "eps")], [(100, {"brightness_spread_ratio": 0.4})]))
    b = RunDir.create(tmp_path, "b")
    b.save_config(preset("lighting-ztsnr-v"))
    b.append_metrics(_rows([_result(100, 0.5, "v")], [(100, {"brightness_spread_ratio": 0.95})]))
    viewer = RunViewer(a.path, interval_ms=60_000)
    qtbot.addWidget(viewer)
    assert [r.step for r in viewer.validation_view.results[""]] == [100, 200]
    window = CompareRunsWindow(a.path, b.path, interval_ms=60_000)
    qtbot.addWidget(window)
    view = window.validation_view
    (xa, ya), = view.curve_data("A")
    (xb, yb), = view.curve_data("B")
    assert math.isnan(ya[-1]) and yb[-1] == pytest.approx(0.5 * 0.33)  # eps: undefined at t = 1; v: defined
    assert ya[1] == pytest.approx(0.05) and yb[1] == pytest.approx(0.025)
    assert view.quality_curves["A"].getData()[1][0] == 0.4 and view.quality_curves["B"].getData()[1][0] == 0.95
    b.append_metrics(_rows([_result(300, 0.25, "v")]))
    window.poll()
    assert view.curve_data("B")[0][1][1] == pytest.approx(0.0125)
    window.close()
    viewer.close()


def test_training_panel_shows_validation_and_quality_live_and_from_the_run_folder(qtbot, tmp_path):
    config = preset("moons-flow").updated(
        run={"steps": 60, "out_dir": str(tmp_path / "runs"), "preview_every": 30, "checkpoint_every": 60,
             "log_every": 10, "val_every": 20, "name": "val-test", "device": "cpu"},
        sampling={"num_samples": 64, "steps": 4, "quality_samples": 128})
    state = AppState(config)
    state.set_dataset(load_dataset("moons", seed=0))
    panel = TrainingPanel(state)
    qtbot.addWidget(panel)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.thread is None, timeout=120_000)
    view = panel.validation_view
    assert [r.step for r in view.results[""]] == [20, 40, 60]
    assert len(view.curve_data()) == 3 and all(np.isfinite(y).all() for _, y in view.curve_data())
    assert [s for s, _ in view.quality[""]] == [30, 60] and view.quality_combo.currentData() == "sliced_wasserstein"
    run = panel.run_dir
    panel.load_run(run)
    assert [r.step for r in view.results[""]] == [20, 40, 60] and len(view.quality[""]) == 2
    assert panel.shutdown(ask=False)
