import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

from diffstudio.engine.config import Config
from diffstudio.engine.presets import preset
from diffstudio.engine.run_dir import RunDir
from diffstudio.gui.runs import CompareRunsWindow, RunViewer, SampleStatsView, open_run
from diffstudio.gui.runs_data import diff_configs
from diffstudio.gui.state import AppState


def _rows(start, stop):
    return [{"step": s, "loss": 1.0 / s, "lr": 1e-3, "grad_norm": 1.0, "steps_per_s": 10.0,
             "images_per_s": 640.0, "eta_s": 1.0} for s in range(start, stop)]


def _grid(value):
    return np.full((10, 10, 3), value, dtype=np.uint8)


@pytest.fixture
def run_a(tmp_path):
    run = RunDir.create(tmp_path / "runs", "a")
    run.save_config(preset("quickstart"))
    run.append_metrics(_rows(1, 11))
    run.save_preview(5, _grid(10), {"step": 5, "mean_brightness": [0.0, 0.1]})
    return run


@pytest.fixture
def run_b(tmp_path):
    run = RunDir.create(tmp_path / "runs", "b")
    run.save_config(preset("quickstart").updated(objective={"parameterization": "eps"},
                                                 sampling={"spacing": "leading"}, run={"steps": 999}))
    run.append_metrics(_rows(1, 21))
    return run


def test_run_viewer_shows_and_follows_a_growing_run(qtbot, run_a):
    viewer = RunViewer(run_a.path, interval_ms=60_000)  # poll by hand in the test
    qtbot.addWidget(viewer)
    assert viewer.curve.point_count() == 10
    assert 'family = "scaled_linear"' in viewer.config_view.toPlainText()
    assert viewer.previews.shown_step == 5 and viewer.previews.view.image.shape == (10, 10, 3)

    # the run goes on being written after the viewer opened
    run_a.append_metrics(_rows(11, 31))
    run_a.save_preview(30, _grid(200), {"step": 30})
    viewer.poll()
    assert viewer.curve.point_count() == 30
    assert viewer.curve.history().last_step == 30
    assert viewer.previews.shown_step == 30  # follows the newest preview
    assert viewer.previews.view.image[0, 0, 0] == 200
    assert "live" in viewer.live_label.text()
    viewer.close()


def test_run_viewer_timer_follows_without_help(qtbot, run_a):
    viewer = RunViewer(run_a.path, interval_ms=50)
    qtbot.addWidget(viewer)
    run_a.append_metrics(_rows(11, 16))
    qtbot.waitUntil(lambda: viewer.curve.point_count() == 15, timeout=5000)
    viewer.close()


def test_run_viewer_of_a_folder_still_empty(qtbot, tmp_path):
    folder = tmp_path / "runs" / "starting"
    folder.mkdir(parents=True)
    viewer = RunViewer(folder, interval_ms=60_000)
    qtbot.addWidget(viewer)
    assert viewer.curve.point_count() == 0
    viewer.poll()  # nothing raises into Qt
    viewer.close()


def test_open_run_returns_a_shown_window(qtbot, run_a):
    viewer = open_run(run_a.path)
    qtbot.addWidget(viewer)
    assert viewer.isVisible() and isinstance(viewer, RunViewer)
    viewer.close()


def test_compare_runs_shows_config_differences_and_both_curves(qtbot, run_a, run_b):
    window = CompareRunsWindow(run_a.path, run_b.path, interval_ms=60_000)
    qtbot.addWidget(window)
    fields = {window.diff_table.item(r, 0).text(): (window.diff_table.item(r, 1).text(),
                                                    window.diff_table.item(r, 2).text())
              for r in range(window.diff_table.rowCount())}
    assert fields == {"objective.parameterization": ("v", "eps"), "sampling.spacing": ("trailing", "leading"),
                      "run.steps": ("1500", "999")}
    assert "3 settings differ" in window.diff_label.text()
    assert window.curve.point_count("A") == 10 and window.curve.point_count("B") == 20
    assert window.preview_views["A"].shown_step == 5 and window.preview_views["B"].shown_step is None
    window.close()


def test_compare_runs_starts_empty_and_accepts_runs(qtbot, run_a):
    window = CompareRunsWindow(interval_ms=60_000)
    qtbot.addWidget(window)
    assert window.diff_table.rowCount() == 0
    window.set_run("A", run_a.path)
    window.set_run("B", run_a.path)
    assert window.diff_table.rowCount() == 0 and "identical" in window.diff_label.text()
    window.close()


def test_diff_configs_lists_only_differences():
    a = Config()
    b = a.updated(schedule={"ztsnr": False}, data={"resolution": 16})
    assert diff_configs(a, b) == [("data.resolution", None, 16), ("schedule.ztsnr", True, False)]
    assert diff_configs(a, a) == []


def test_sample_stats_view_shows_squeezed_brightness(qtbot):
    from diffstudio.data.registry import load_dataset
    from diffstudio.engine.sampling import Preview

    state = AppState(preset("lighting-sd-eps"))
    state.set_dataset(load_dataset("lighting", resolution=8, channels=1, n=512))
    view = SampleStatsView(state)
    qtbot.addWidget(view)
    x, density = view.data_item.getData()
    assert density.sum() > 0  # the dataset histogram is there
    samples = np.zeros((16, 1, 8, 8), dtype=np.float32) + np.linspace(-0.1, 0.1, 16, dtype=np.float32)[:, None, None, None]
    preview = Preview(step=100, kind="image", samples=samples,
                      mean_brightness=samples.reshape(16, -1).mean(1))
    view.update_preview(preview, state.config)  # the config of the run that made the samples
    _, sample_density = view.sample_item.getData()
    assert sample_density.sum() > 0
    assert "step 100" in view.summary.text() and "mid-grey" in view.summary.text()
    assert "Try zero terminal SNR" in view.summary.text()  # lighting-sd-eps leaves 6.8 % at t = 1


def test_a_ztsnr_v_trailing_run_is_never_advised_to_use_ztsnr(qtbot):
    from diffstudio.data.registry import load_dataset
    from diffstudio.engine.sampling import Preview

    config = Config().updated(schedule={"family": "scaled_linear", "ztsnr": True},
                              objective={"parameterization": "v"}, sampling={"spacing": "trailing"})
    state = AppState(config)
    state.set_dataset(load_dataset("lighting", resolution=8, channels=1, n=512))
    view = SampleStatsView(state)
    qtbot.addWidget(view)
    samples = np.zeros((16, 1, 8, 8), np.float32) + np.linspace(-0.1, 0.1, 16, dtype=np.float32)[:, None, None, None]
    view.update_preview(Preview(step=100, kind="image", samples=samples,
                                mean_brightness=samples.reshape(16, -1).mean(1)), config)
    text = view.summary.text()
    assert "mid-grey" in text  # the finding is reported ...
    assert "Try" not in text and "trailing' spacing" not in text  # ... but no fix it already has
    assert "already uses zero terminal SNR, v-prediction" in text
    # the same samples from a leaky run are told what that run lacks, and only that
    leaky = config.updated(schedule={"ztsnr": False})
    view.update_preview(Preview(step=100, kind="image", samples=samples,
                                mean_brightness=samples.reshape(16, -1).mean(1)), leaky)
    assert "Try zero terminal SNR (this run leaves 6.83 %" in view.summary.text()
    assert "v or flow" not in view.summary.text() and "spacing" not in view.summary.text()
    # points previews are ignored, a new dataset replaces the reference histogram
    view.update_preview(Preview(step=1, kind="points", samples=np.zeros((4, 2), np.float32)))
    state.set_dataset(None)
    assert view.data_means is None
