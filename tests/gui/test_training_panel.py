import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import math
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from diffstudio.data.registry import load_dataset
from diffstudio.engine.presets import preset
from diffstudio.gui.panels.training import TrainingPanel, format_duration
from diffstudio.gui.runs_curve import LossHistory
from diffstudio.gui.state import AppState
from diffstudio.gui.worker import TrainingThread

RUN_TIMEOUT_MS = 60000


def moons_config(tmp_path, steps=100_000, **run):
    return preset("moons-flow").updated(
        run={"steps": steps, "out_dir": str(tmp_path / "runs"), "preview_every": 25, "checkpoint_every": 50,
             "log_every": 1, "name": "moons-test", "device": "cpu", **run},
        sampling={"num_samples": 64, "steps": 4})


@pytest.fixture
def make_panel(qtbot):
    panels = []

    def make(config, dataset="auto"):
        state = AppState(config)
        if dataset == "auto":
            dataset = load_dataset(config.data.source, labels=config.data.labels, seed=config.run.seed)
        state.set_dataset(dataset)
        panel = TrainingPanel(state)
        qtbot.addWidget(panel)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        thread = panel.thread
        assert panel.shutdown(ask=False)
        assert thread is None or thread.isFinished()


def _wait_idle(qtbot, panel):
    qtbot.waitUntil(lambda: panel.thread is None, timeout=RUN_TIMEOUT_MS)


def test_moons_run_progress_preview_pause_resume_stop_export(qtbot, make_panel, tmp_path):
    panel = make_panel(moons_config(tmp_path))
    statuses = []
    panel.statusChanged.connect(statuses.append)
    assert panel.start_button.isEnabled() and panel.start_reason() == ""

    with qtbot.waitSignal(panel.previewReady, timeout=RUN_TIMEOUT_MS) as got_preview:
        panel.start_button.click()
    assert panel.state.training and not panel.start_button.isEnabled()
    assert "next run" in panel.reason_label.text()
    preview = got_preview.args[0]
    assert preview.kind == "points" and preview.samples.shape == (64, 2)

    qtbot.waitUntil(lambda: panel.status["step"] > 0 and panel.curve.point_count() > 0, timeout=RUN_TIMEOUT_MS)
    assert panel.progress_bar.value() > 0 and "steps/s" in panel.rate_label.text()
    assert any(s["step"] > 0 and s["device"] == "cpu" and s["steps_per_s"] > 0 for s in statuses)
    assert statuses[-1]["precision"] == "fp32" and "point" in statuses[-1]["precision_reason"]  # auto on points

    # pause: the loop blocks and the step count stops advancing
    thread = panel.thread
    with qtbot.waitSignal(thread.pausedChanged, timeout=RUN_TIMEOUT_MS, check_params_cb=lambda p: p):
        panel.pause_button.click()
    assert panel.pause_button.text() == "Resume" and panel.status["state"] == "paused"
    paused_at = panel.status["step"]
    points = len(panel.curve.history())
    qtbot.wait(500)
    assert panel.status["step"] == paused_at and thread.last_step == paused_at
    assert len(panel.curve.history()) == points

    # resume: it goes on, history kept
    panel.pause_button.click()
    qtbot.waitUntil(lambda: panel.status["step"] > paused_at + 5, timeout=RUN_TIMEOUT_MS)
    assert panel.pause_button.text() == "Pause"
    assert len(panel.curve.history()) > points

    # stop: a checkpoint is saved and the thread ends
    with qtbot.waitSignal(panel.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        panel.stop_button.click()
    result = finished.args[0]
    assert result is not None and result.stopped and math.isfinite(result.final_loss)
    _wait_idle(qtbot, panel)
    assert thread.isFinished() and not panel.state.training
    assert panel.start_button.isEnabled()

    from diffstudio.engine.run_dir import RunDir

    run = RunDir(panel.run_dir)
    steps = [s for s, _ in run.checkpoints()]
    assert result.steps in steps
    assert panel.checkpoint_list.count() == len(steps)
    assert panel.selected_checkpoint() == str(run.checkpoints()[-1][1])
    assert panel.export_button.isEnabled() and panel.resume_button.isEnabled()

    # export (safetensors: the MLP has no diffusers format) in the background, then load it
    out = tmp_path / "export"
    with qtbot.waitSignal(panel.exportFinished, timeout=RUN_TIMEOUT_MS) as exported:
        panel.export_checkpoint(panel.selected_checkpoint(), "safetensors", str(out))
    path = Path(exported.args[0])
    assert path.exists(), panel.export_label.text()
    from safetensors.torch import load_file

    files = [path] if path.is_file() else sorted(path.rglob("*.safetensors"))
    tensors = load_file(str(files[0]))
    assert tensors and all(np.isfinite(t.numpy()).all() for t in tensors.values())
    assert "Exported" in panel.export_label.text()


def test_tiny_image_run_exports_a_loadable_diffusers_folder(qtbot, make_panel, tmp_path):
    cfg = preset("quickstart").updated(
        run={"steps": 4, "out_dir": str(tmp_path / "runs"), "preview_every": 4, "checkpoint_every": 100,
             "log_every": 1, "device": "cpu"},
        sampling={"num_samples": 4, "steps": 2})
    panel = make_panel(cfg)
    with qtbot.waitSignal(panel.previewReady, timeout=RUN_TIMEOUT_MS) as got_preview:
        panel.start()
    assert got_preview.args[0].grid.dtype == np.uint8
    _wait_idle(qtbot, panel)
    assert panel.format_combo.currentData() == "diffusers"
    out = tmp_path / "digits-diffusers"
    with qtbot.waitSignal(panel.exportFinished, timeout=RUN_TIMEOUT_MS) as exported:
        panel.export_checkpoint(panel.selected_checkpoint(), "diffusers", str(out))
    assert exported.args[0] == str(out), panel.export_label.text()
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(str(out / "unet"))
    assert unet.config.sample_size == 8


def test_export_error_is_shown_inline(qtbot, make_panel, tmp_path):
    panel = make_panel(moons_config(tmp_path, steps=2, checkpoint_every=1000))
    with qtbot.waitSignal(panel.runFinished, timeout=RUN_TIMEOUT_MS):
        panel.start()
    _wait_idle(qtbot, panel)
    # points runs offer safetensors only
    assert panel.format_combo.currentData() == "safetensors"
    with qtbot.waitSignal(panel.exportFinished, timeout=RUN_TIMEOUT_MS) as exported:
        panel.export_checkpoint(panel.selected_checkpoint(), "diffusers", str(tmp_path / "x"))
    assert exported.args == [""]
    text = panel.export_label.text()
    assert text.startswith("Export failed") and "Traceback" not in text


def test_shutdown_mid_training_joins_the_thread(qtbot, make_panel, tmp_path):
    panel = make_panel(moons_config(tmp_path))
    panel.start()
    thread = panel.thread
    qtbot.waitUntil(lambda: panel.status["step"] > 0, timeout=RUN_TIMEOUT_MS)
    assert thread.isRunning()
    assert panel.shutdown(ask=False) is True
    assert not thread.isRunning() and thread.isFinished()


def test_shutdown_asks_and_cancel_keeps_training(qtbot, make_panel, tmp_path, monkeypatch):
    panel = make_panel(moons_config(tmp_path))
    panel.start()
    thread = panel.thread
    qtbot.waitUntil(lambda: panel.status["step"] > 0, timeout=RUN_TIMEOUT_MS)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Cancel)
    assert panel.shutdown(ask=True) is False
    assert thread.isRunning() and not thread.stopping
    # "No": stop without the final checkpoint
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    with qtbot.waitSignal(panel.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        assert panel.shutdown(ask=True) is True
    assert thread.isFinished() and finished.args == [None]


def test_resume_from_checkpoint_keeps_history(qtbot, make_panel, tmp_path, monkeypatch):
    panel = make_panel(moons_config(tmp_path, steps=60, checkpoint_every=30, preview_every=1000))
    with qtbot.waitSignal(panel.runFinished, timeout=RUN_TIMEOUT_MS):
        panel.start()
    _wait_idle(qtbot, panel)
    items = [panel.checkpoint_list.item(i) for i in range(panel.checkpoint_list.count())]
    first = {item.text(): item.data(Qt.ItemDataRole.UserRole) for item in items}
    assert "step 30" in first and "step 60" in first
    panel.steps_spin.setValue(80)
    assert panel.state.config.run.steps == 80
    panel.checkpoint_list.setCurrentItem(next(i for i in items if i.text() == "step 30"))
    asked = []
    answer = QMessageBox.StandardButton.Cancel

    def question(*args, **kwargs):
        asked.append(args[2])
        return answer

    monkeypatch.setattr(QMessageBox, "question", question)
    panel.resume_button.click()  # step 60 comes later: the panel asks first, and Cancel keeps all
    assert len(asked) == 1 and "abandoned" in asked[0] and panel.thread is None
    answer = QMessageBox.StandardButton.Ok
    with qtbot.waitSignal(panel.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        panel.resume_button.click()
    assert len(asked) == 2
    assert finished.args[0].steps == 80
    _wait_idle(qtbot, panel)
    steps, _, _ = panel.curve.history().arrays()
    assert steps[0] == 1 and steps[-1] == 80
    assert np.all(np.diff(steps) > 0)  # history up to the checkpoint, then the resumed run


def test_reopened_run_folder_shows_its_history_and_checkpoints(qtbot, make_panel, tmp_path):
    first = make_panel(moons_config(tmp_path, steps=30, checkpoint_every=10, preview_every=1000))
    with qtbot.waitSignal(first.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        first.start()
    run_dir = finished.args[0].run_dir
    _wait_idle(qtbot, first)

    panel = make_panel(moons_config(tmp_path))
    panel.load_run(run_dir)
    steps, _, _ = panel.curve.history().arrays()
    assert steps.tolist() == list(range(1, 31))
    assert panel.curve.point_count() == 30
    assert [panel.checkpoint_list.item(i).text() for i in range(panel.checkpoint_list.count())] == \
        ["step 10", "step 20", "step 30"]
    assert panel.selected_checkpoint().endswith("step-000030")
    assert panel.resume_button.isEnabled() and panel.export_button.isEnabled()


def test_start_disabled_without_dataset_or_with_invalid_config(qtbot, make_panel, tmp_path):
    panel = make_panel(moons_config(tmp_path), dataset=None)
    assert not panel.start_button.isEnabled()
    assert "dataset" in panel.reason_label.text().lower()
    assert panel.start() is False and panel.thread is None
    panel.state.set_dataset(load_dataset("moons"))
    assert panel.start_button.isEnabled()
    panel.state.update("optim", lr=-1.0)
    assert not panel.start_button.isEnabled() and "optim.lr" in panel.reason_label.text()


def test_engine_error_arrives_as_a_message_and_app_stays_usable(qtbot, make_panel, tmp_path):
    panel = make_panel(moons_config(tmp_path, steps=20, device="cuda:7"))
    with qtbot.waitSignal(panel.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        panel.start()
    assert finished.args == [None]
    _wait_idle(qtbot, panel)
    text = panel.message_label.text()
    assert "CUDA" in text and "Traceback" not in text
    assert panel.start_button.isEnabled() and not panel.state.training


def test_worker_turns_an_engine_exception_into_failed(qtbot, monkeypatch, tmp_path):
    import diffstudio.engine.trainer as trainer_module

    class Exploding:
        def __init__(self, *a, **k):
            pass

        def run(self):
            raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(trainer_module, "Trainer", Exploding)
    thread = TrainingThread(moons_config(tmp_path))
    with qtbot.waitSignal(thread.failed, timeout=10000) as failed:
        thread.start()
    assert thread.wait(10000)
    assert failed.args[0].startswith("Training failed: out of memory") and "\n" not in failed.args[0]


def test_loss_history_is_bounded_and_keeps_shape():
    h = LossHistory(max_points=100)
    steps = np.arange(1, 10_001)
    h.extend(steps, 1.0 / steps)
    s, raw, ema = h.arrays()
    assert len(s) <= 101 and h.count == 10_000
    assert s[0] < 100 and s[-1] > 9_900
    assert np.all(np.diff(s) > 0) and np.all(np.diff(raw) < 0)
    assert np.all(ema > 0)
    h.truncate_after(5000)
    assert h.arrays()[0][-1] <= 5000


def test_loss_history_drops_an_abandoned_branch_when_steps_go_back():
    h = LossHistory()
    h.extend([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])
    h.extend([4, 5], [9, 9])  # resumed from the checkpoint at step 3
    steps, raw, _ = h.arrays()
    assert steps.tolist() == [1, 2, 3, 4, 5] and raw.tolist() == [6, 5, 4, 9, 9]


def test_format_duration():
    assert format_duration(42) == "0:42"
    assert format_duration(3723) == "1:02:03"
    assert format_duration(float("nan")) == "–"


def test_the_engine_advice_reaches_the_panel_at_the_start_of_a_run(qtbot, make_panel, tmp_path):
    """The Trainer's start-of-run warnings (engine/advice.py) arrive through the worker's message
    signal and are shown together."""
    from diffstudio.engine.advice import training_advice

    config = moons_config(tmp_path, steps=2).updated(schedule={"shift": 2.0}, objective={"parameterization": "eps"})
    expected = [a.text for a in training_advice(config)]
    assert len(expected) == 2  # eps is singular at t = 1 on rectified flow; shift 2 is the known limit
    panel = make_panel(config)
    shown = []
    panel.message_label.setText = (lambda real: lambda text: (shown.append(text), real(text))[1])(
        panel.message_label.setText)
    with qtbot.waitSignal(panel.runFinished, timeout=RUN_TIMEOUT_MS):
        assert panel.start()
    _wait_idle(qtbot, panel)
    assert panel.run_warnings == expected
    assert "\n".join(f"⚠ {w}" for w in expected) in shown


def test_export_asks_for_a_file_or_a_new_folder(qtbot, make_panel, tmp_path, monkeypatch):
    """safetensors: a save-file dialog (the name typed is the file written); diffusers: a new
    folder's name is accepted (the export creates it)."""
    from PySide6.QtWidgets import QFileDialog

    cfg = preset("quickstart").updated(
        run={"steps": 2, "out_dir": str(tmp_path / "runs"), "preview_every": 100, "checkpoint_every": 100,
             "log_every": 1, "device": "cpu"}, sampling={"num_samples": 4, "steps": 2})
    panel = make_panel(cfg)
    with qtbot.waitSignal(panel.runFinished, timeout=RUN_TIMEOUT_MS):
        panel.start()
    _wait_idle(qtbot, panel)
    asked = []

    def answer(path):
        def dialog(parent, title, start, filters, *a, **k):
            asked.append((title, start, filters))
            return str(path), filters
        return dialog

    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer(tmp_path / "out" / "mine"))
    (tmp_path / "out").mkdir()
    panel.format_combo.setCurrentIndex(panel.format_combo.findData("safetensors"))
    with qtbot.waitSignal(panel.exportFinished, timeout=RUN_TIMEOUT_MS) as exported:
        panel.export_button.click()
    assert exported.args == [str(tmp_path / "out" / "mine.safetensors")]
    assert (tmp_path / "out" / "mine.safetensors").is_file()
    assert asked[-1][1].endswith("-step-000002.safetensors") and "safetensors" in asked[-1][2]

    new_folder = tmp_path / "out" / "brand-new" / "pipeline"  # neither folder exists yet
    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer(new_folder))
    panel.format_combo.setCurrentIndex(panel.format_combo.findData("diffusers"))
    qtbot.waitUntil(panel.export_button.isEnabled, timeout=RUN_TIMEOUT_MS)  # the first export's thread ended
    with qtbot.waitSignal(panel.exportFinished, timeout=RUN_TIMEOUT_MS) as exported:
        panel.export_button.click()
    assert exported.args == [str(new_folder)], panel.export_label.text()
    assert (new_folder / "model_index.json").is_file()
    assert asked[-1][1].endswith("-step-000002-diffusers")


def test_worker_messages_are_frozen(qtbot, tmp_path):
    import dataclasses

    from diffstudio.engine.messages import Progress, StepMetrics
    from diffstudio.engine.preview import Preview

    thread = TrainingThread(moons_config(tmp_path, steps=30))
    got = {"metrics": [], "progress": [], "preview": []}
    thread.metrics.connect(got["metrics"].extend)
    thread.progress.connect(got["progress"].append)
    thread.preview.connect(got["preview"].append)
    started = []
    thread.started_run.connect(started.append)
    with qtbot.waitSignal(thread.succeeded, timeout=RUN_TIMEOUT_MS) as done:
        thread.start()
    assert thread.wait(10000)
    qtbot.wait(50)
    result = done.args[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.steps = 0
    with pytest.raises(TypeError):
        started[0]["total_steps"] = 0  # the start info is a read-only copy
    metrics, progress, preview = got["metrics"][-1], got["progress"][-1], got["preview"][-1]
    assert isinstance(metrics, StepMetrics) and isinstance(progress, Progress) and isinstance(preview, Preview)
    assert metrics.step == progress.step == 30 and progress.total == 30 and metrics.get("loss") > 0
    for message, name in ((metrics, "step"), (progress, "step"), (preview, "step")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(message, name, 0)
    with pytest.raises(TypeError):
        metrics.values["loss"] = 0.0  # read-only
    assert isinstance(preview.warnings, tuple) and isinstance(preview.trajectory, tuple)


def test_the_panel_shows_the_precision_in_use_and_why(qtbot, make_panel, tmp_path):
    config = moons_config(tmp_path, steps=2)
    panel = make_panel(config)
    with qtbot.waitSignal(panel.runFinished, timeout=RUN_TIMEOUT_MS):
        assert panel.start()
    _wait_idle(qtbot, panel)
    from diffstudio.engine.precision import resolve_precision

    import torch

    expected = resolve_precision(config.run.precision, torch.device("cpu"), points=True)  # moons: 2-D points
    assert f"in {expected.effective}" in panel.run_label.text()
    assert expected.reason in panel.run_label.toolTip()


def test_a_known_error_is_one_line_in_the_log_an_unexpected_one_keeps_its_traceback(qtbot, tmp_path, monkeypatch,
                                                                                     caplog):
    """Tried by a user: data.vae set to a UNet folder, Start. The panel said one line, and the app's
    stderr got a full traceback of that expected ConfigError too (logged at error level)."""
    import logging

    import diffstudio.engine.trainer as trainer_module
    from diffstudio.engine.config import ConfigError

    def run_with(exc):
        class Failing:
            def __init__(self, *a, **k):
                pass

            def run(self):
                raise exc

        monkeypatch.setattr(trainer_module, "Trainer", Failing)
        caplog.clear()
        thread = TrainingThread(moons_config(tmp_path))
        with qtbot.waitSignal(thread.failed, timeout=10000) as failed:
            thread.start()
        assert thread.wait(10000)
        return failed.args[0], [r for r in caplog.records if r.name == "diffstudio.gui.worker"]

    caplog.set_level(logging.INFO, logger="diffstudio.gui.worker")
    message, records = run_with(ConfigError([("data.vae", "/x holds a UNet2DModel, not an AutoencoderKL")]))
    assert message == "Training failed: data.vae: /x holds a UNet2DModel, not an AutoencoderKL"
    assert records and all(r.levelno < logging.WARNING and r.exc_info is None for r in records)
    assert any("data.vae: /x holds a UNet2DModel" in r.getMessage() for r in records)

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # where the error log of a bug goes
    message, records = run_with(ZeroDivisionError("a bug"))
    assert any(r.levelno >= logging.ERROR and r.exc_info for r in records)
