"""The Training panel's Estimate: the engine's dry run on a background thread, shown beside Start
(parameters, data footprint, peak memory against the device, time per step and in total), a
warning in the alert style when it does not fit, results of superseded settings ignored, and the
thread joined when the panel shuts down."""

from __future__ import annotations

import pytest

from diffstudio.data.registry import load_dataset
from diffstudio.engine.presets import preset
from diffstudio.gui.panels.training import ALERT_STYLE, TrainingPanel
from diffstudio.gui.state import AppState

TIMEOUT_MS = 120000


def digits_config(tmp_path):
    return preset("quickstart").updated(run={"device": "cpu", "out_dir": str(tmp_path / "runs"), "steps": 1234},
                                        optim={"batch_size": 16})


@pytest.fixture
def make_panel(qtbot):
    panels = []

    def make(config):
        state = AppState(config)
        state.set_dataset(load_dataset(config.data.source, labels=config.data.labels, seed=config.run.seed))
        panel = TrainingPanel(state)
        qtbot.addWidget(panel)
        panel.show()
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        thread = panel.estimate_thread
        assert panel.shutdown(ask=False)
        assert panel.estimate_thread is None and (thread is None or thread.isFinished())


def wait_estimated(qtbot, panel):
    qtbot.waitUntil(lambda: panel.estimate_thread is None, timeout=TIMEOUT_MS)


def engine_params(config, dataset) -> int:
    """The parameter count of the model the engine builds for ``config`` on ``dataset``."""
    from diffstudio.gui.start_from import data_info
    from diffstudio.models.build import build_model

    return sum(p.numel() for p in build_model(config, data_info(config, dataset)).parameters())


def test_estimate_shows_the_engines_figures_beside_start(qtbot, make_panel, tmp_path):
    panel = make_panel(digits_config(tmp_path))
    assert panel.estimate_button.isEnabled() and not panel.estimate_label.isVisible()
    panel.estimate_button.click()
    assert panel.estimate_thread is not None and panel.estimate_button.text() == "Cancel estimate"
    assert "Estimating" in panel.estimate_label.text() and panel.estimate_label.isVisible()
    wait_estimated(qtbot, panel)

    n = engine_params(panel.state.config, panel.state.dataset)
    text = panel.estimate_label.text()
    assert f"{n:,} parameters" in text, text
    from diffstudio.data.split import split_dataset

    d = panel.state.config.data
    train = split_dataset(panel.state.dataset, d.val_fraction, d.val_seed, panel.state.config.run.val_items)[1]
    total = len(panel.state.dataset)  # the whole dataset and its split, as the run counts them
    assert f"{total:,} images ({len(train):,} for training, {total - len(train):,} held out" in text and "in memory on cpu" in text
    assert "available on cpu" in text and "peak memory ~" in text
    assert "ms per step" in text and "for 1,234 steps" in text
    config, e, _data = panel.last_estimate
    assert config == panel.state.config and e.num_params == n and e.seconds_per_step > 0
    assert e.peak_bytes < e.available_bytes and not e.warnings
    assert not panel.estimate_warning.isVisible()
    assert "time per step" in panel.estimate_label.toolTip()  # the CLI's full text
    assert panel.estimate_button.text() == "Estimate" and panel.estimate_button.isEnabled()

    panel.steps_spin.setValue(2000)  # a shown estimate is marked as being for earlier settings
    assert panel.estimate_label.text().startswith("(for earlier settings")


def test_a_budget_smaller_than_the_estimate_shows_the_warning(qtbot, make_panel, tmp_path):
    panel = make_panel(digits_config(tmp_path))
    panel.estimate_available_bytes = 1024 * 1024  # 1 MiB: far below the model's own state
    assert panel.estimate()
    wait_estimated(qtbot, panel)
    _config, e, _data = panel.last_estimate
    assert e.available_bytes == 1024 * 1024 and e.peak_bytes > e.available_bytes
    warning = panel.estimate_warning
    assert warning.isVisible() and warning.styleSheet() == ALERT_STYLE
    assert "⚠" in warning.text() and "exceeds" in warning.text() and "1.0 MiB available" in panel.estimate_label.text()
    assert "ms per step" not in panel.estimate_label.text()  # the probe is skipped when it would not fit


def test_settings_changed_while_estimating_give_a_fresh_estimate(qtbot, make_panel, tmp_path):
    panel = make_panel(digits_config(tmp_path))
    first = None
    assert panel.estimate()
    first = panel.estimate_thread
    panel.state.update("optim", batch_size=4)  # the running estimate is now for other settings
    assert first.cancelled and "estimating again" in panel.estimate_label.text()
    qtbot.waitUntil(lambda: panel.estimate_thread is not None and panel.estimate_thread is not first,
                    timeout=TIMEOUT_MS)
    wait_estimated(qtbot, panel)
    config, e, data = panel.last_estimate
    assert config.optim.batch_size == 4 and config == panel.state.config and data is panel.state.dataset

    # a new dataset while estimating: estimated again on it
    before = panel.estimate_thread
    assert panel.estimate() and before is None
    running = panel.estimate_thread
    new_data = load_dataset("digits", labels=True, seed=1)
    panel.state.set_dataset(new_data)
    assert running.cancelled
    qtbot.waitUntil(lambda: panel.estimate_thread is not None and panel.estimate_thread is not running,
                    timeout=TIMEOUT_MS)
    wait_estimated(qtbot, panel)
    assert panel.last_estimate[2] is new_data


def test_cancel_ignores_the_result_and_errors_are_one_line(qtbot, make_panel, tmp_path):
    panel = make_panel(digits_config(tmp_path))
    panel.estimate_button.click()
    panel.estimate_button.click()  # Cancel estimate
    assert panel.estimate_label.text() == "Estimate cancelled."
    assert not panel.estimate_button.isEnabled()  # until the cancelled thread has ended
    wait_estimated(qtbot, panel)
    assert panel.last_estimate is None and panel.estimate_label.text() == "Estimate cancelled."
    assert panel.estimate_button.isEnabled()

    # a model that cannot take the data: the engine's message, not a traceback
    from diffstudio.gui.start_from import with_model

    (tmp_path / "empty").mkdir()
    panel.state.set_config(with_model(panel.state.config, str(tmp_path / "empty"), False))
    assert panel.estimate()
    wait_estimated(qtbot, panel)
    text = panel.estimate_label.text()
    assert text.startswith("Estimate failed:") and "model.init_from" in text and "Traceback" not in text


def test_estimate_waits_for_valid_settings_and_a_dataset(qtbot, make_panel, tmp_path):
    panel = make_panel(digits_config(tmp_path))
    panel.state.set_dataset(None)
    assert not panel.estimate_button.isEnabled() and not panel.estimate()
    assert "No dataset" in panel.estimate_button.toolTip()
    panel.state.update("optim", batch_size=0)
    assert not panel.estimate() and "Fix the settings" in panel.estimate_button.toolTip()


def test_shutdown_joins_a_running_estimate(qtbot, make_panel, tmp_path):
    panel = make_panel(digits_config(tmp_path))
    assert panel.estimate()
    thread = panel.estimate_thread
    assert panel.shutdown(ask=False)
    assert thread.isFinished() and thread.cancelled and panel.estimate_thread is None


def test_a_failed_estimate_is_marked_as_for_earlier_settings_once_they_change(qtbot, make_panel, tmp_path):
    """Tried by a user: Start from a model that does not fit the data, Estimate (it fails), then
    Train from scratch: the red 'Estimate failed: model.init_from …' stayed, as if it still applied."""
    from diffstudio.gui.panels.training import ERROR_STYLE
    from diffstudio.gui.start_from import with_model

    panel = make_panel(digits_config(tmp_path))
    (tmp_path / "empty").mkdir()
    panel.state.set_config(with_model(panel.state.config, str(tmp_path / "empty"), False))
    assert panel.estimate()
    wait_estimated(qtbot, panel)
    failed = panel.estimate_label.text()
    assert failed.startswith("Estimate failed:") and panel.estimate_label.styleSheet() == ERROR_STYLE

    panel.state.update("model", init_from="")  # Train from scratch: the failure no longer applies
    text = panel.estimate_label.text()
    assert text.startswith("(for earlier settings") and text.endswith(failed)
    assert panel.estimate_label.styleSheet() != ERROR_STYLE  # no longer shown as a current error

    panel.state.update("optim", batch_size=8)  # marked once, not once per change
    assert panel.estimate_label.text().count("(for earlier settings") == 1
