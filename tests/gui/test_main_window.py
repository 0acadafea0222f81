"""The main window: every panel docked, menus, config files, saved layout, wiring between panels."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDockWidget, QMessageBox

from diffstudio.engine.config import Config
from diffstudio.engine.sampling import Preview
from diffstudio.gui.main_window import PANELS, MainWindow
from diffstudio.gui.panels.objective import ObjectivePanel
from diffstudio.gui.panels.sampling import SamplingPanel
from diffstudio.gui.panels.schedule import SchedulePanel
from diffstudio.gui.state import AppState


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "diffstudio.ini"), QSettings.Format.IniFormat)


def make_window(qtbot, settings, config: Config | None = None) -> MainWindow:
    window = MainWindow(AppState(config or Config()), settings=settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


@pytest.fixture
def window(qtbot, settings):
    window = make_window(qtbot, settings)
    yield window
    window.close_without_asking()


def test_window_builds_with_every_panel(window):
    from diffstudio.gui.panels.dataset import DatasetPanel
    from diffstudio.gui.panels.training import TrainingPanel

    assert set(window.docks) == set(PANELS)
    assert all(isinstance(d, QDockWidget) for d in window.docks.values())
    assert isinstance(window.panels["schedule"], SchedulePanel)
    assert isinstance(window.panels["objective"], ObjectivePanel)
    assert isinstance(window.panels["sampling"], SamplingPanel)
    assert isinstance(window.panels["dataset"], DatasetPanel)
    assert isinstance(window.panels["training"], TrainingPanel)
    assert window.centralWidget().widget().child is window.schedule_panel.view  # in a scroll area
    assert (window.width(), window.height()) == (1600, 1000)
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus == ["&File", "&Edit", "&View", "&Help"]


def test_app_opens_on_the_quickstart_preset(qtbot, settings, monkeypatch):
    from diffstudio.engine.presets import preset

    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    try:
        expected = preset("quickstart").updated(run={"name": ""})  # runs named after the dataset
        assert window.state.config == expected and window.state.config.sampling.guidance_scale == 1.5
        window.state.update("sampling", guidance_scale=3.0)
        asked = []  # File > New asks before discarding the edit
        monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.Discard)
        window.action_new.trigger()
        assert len(asked) == 1
        assert window.state.config == expected
    finally:
        window.close_without_asking()


def test_initial_size_and_the_wide_layout_show_every_panel(window):
    from diffstudio.gui.main_window import DEFAULT_SIZE, WIDE_SIZE, initial_size

    assert initial_size(None) == DEFAULT_SIZE == initial_size((1600, 1000))
    assert initial_size((1920, 1160)) == WIDE_SIZE
    assert any(window.tabifiedDockWidgets(d) for d in window.docks.values())  # 1600x1000: tabs
    window.resize(*WIDE_SIZE)
    window.default_layout()
    assert not any(window.tabifiedDockWidgets(d) for d in window.docks.values())
    assert all(not d.visibleRegion().isEmpty() for d in window.docks.values())


def test_training_shortcuts_work_while_the_training_panel_is_tabbed_away(window, monkeypatch, qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    calls = []
    monkeypatch.setattr(window.training_panel, "start", lambda: calls.append("start") or True)
    monkeypatch.setattr(window.training_panel, "toggle_pause", lambda: calls.append("pause"))
    monkeypatch.setattr(window.training_panel, "stop", lambda: calls.append("stop"))
    window.docks["dataset"].raise_()  # 1600x1000: Training is the hidden tab behind Dataset
    qtbot.wait(20)
    assert window.training_panel.start_button.visibleRegion().isEmpty()
    window.activateWindow()
    QTest.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(window, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    QTest.keyClick(window, Qt.Key.Key_Period, Qt.KeyboardModifier.ControlModifier)
    assert calls == ["start", "pause", "stop"]


def test_view_menu_toggles_panels_and_time_axis(window):
    action = window.docks["objective"].toggleViewAction()
    action.trigger()
    assert not window.docks["objective"].isVisible()
    action.trigger()
    assert window.docks["objective"].isVisible()
    window.action_flip.trigger()
    assert window.state.flip_time is True
    assert "seed" in window.schedule_panel.log_snr_plot.getPlotItem().getAxis("bottom").labelText
    window.action_flip.trigger()
    assert window.state.flip_time is False


def test_save_and_open_config_round_trip(window, tmp_path):
    state = window.state
    state.update("schedule", family="flow", shift=3.0)
    state.update("sampling", spacing="shifted", steps=12)
    for suffix in (".toml", ".json"):
        path = tmp_path / f"cfg{suffix}"
        assert window.save_config(str(path))
        window.new_config()
        assert state.config.schedule.family == Config().schedule.family
        assert window.open_config(str(path))
        assert state.config.schedule.family == "flow" and state.config.sampling.steps == 12
        assert window.schedule_panel.family_combo.currentData() == "flow"


def test_bad_config_files_show_a_message_not_a_traceback(window, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("schedule = [not toml")
    assert not window.open_config(str(bad))
    box = window._last_error_box
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert "not valid" in box.text() and "Traceback" not in box.text()
    box.close()
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"schedule": {"colour": 1}}')
    assert not window.open_config(str(unknown))
    assert "unknown setting" in window._last_error_box.text()
    window._last_error_box.close()
    assert not window.save_config(str(tmp_path / "missing-dir" / "x" / "\0.toml"))
    window._last_error_box.close()


def test_examples_menu_loads_presets(window):
    from diffstudio.engine.presets import PRESETS, preset

    assert set(window.example_actions) == set(PRESETS)
    window.example_actions["lighting-sd-eps"].trigger()
    assert window.state.config == preset("lighting-sd-eps")
    assert window.objective_panel.param_combo.currentData() == "eps"
    assert "6.83 %" in window.schedule_panel.terminal_text()


def test_layout_is_saved_and_restored(qtbot, settings):
    first = make_window(qtbot, settings)
    first.docks["objective"].hide()
    first.state.set_flip_time(True)
    first.close_without_asking()
    second = make_window(qtbot, settings)
    try:
        assert not second.docks["objective"].isVisible()
        assert second.docks["sampling"].isVisible()
        assert second.state.flip_time is True and second.action_flip.isChecked()
    finally:
        second.close_without_asking()


def test_training_previews_reach_the_sampling_panel(window):
    preview = Preview(step=42, kind="points", samples=np.zeros((8, 2), np.float32))
    window.training_panel.previewReady.emit(preview)
    assert window.sampling_panel.last_preview is preview
    assert "step 42" in window.sampling_panel.model_view.title.text()
    window.training_panel.statusChanged.emit({"state": "running", "step": 1200, "total": 1500,
                                              "steps_per_s": 12.5, "device": "cpu"})
    assert window.step_label.text() == "step 1,200 / 1,500"
    assert window.rate_label.text() == "12.5 steps/s"
    assert window.device_label.text() == "device: cpu"  # no run yet: no precision to show


def test_the_status_bar_shows_the_runs_precision_and_why(window):
    """run.precision defaults to auto; a user could not see what auto chose without scrolling to the
    bottom of the Training panel (and the reason only in that label's tooltip)."""
    reason = "auto: this CPU has native bf16 (AVX512-BF16/AMX)"
    window.training_panel.statusChanged.emit({"state": "training", "step": 0, "total": 10, "steps_per_s": 0.0,
                                              "device": "cpu", "precision": "bf16", "precision_reason": reason})
    assert window.device_label.text() == "device: cpu · bf16"
    assert reason in window.device_label.toolTip()


def test_objective_conflicts_bring_the_objective_tab_forward(window):
    dock = window.docks["objective"]
    window.docks["schedule"].raise_()
    window.state.update("schedule", family="scaled_linear", ztsnr=True)
    window.state.update("objective", parameterization="eps")
    assert dock.windowTitle() == "Objective ⚠"
    assert window.objective_panel.warning_label.isVisible()  # raised, so the warning is on screen
    window.state.update("objective", parameterization="v")
    assert dock.windowTitle() == "Objective"


def test_a_layout_saved_on_a_larger_screen_fills_a_smaller_one(qtbot, settings):
    """Tried by a user: the app maximized on a 1920x1080 screen, then opened on 1366x768, came back
    1600x1000, wider and taller than the screen (the Sampling dock and the status bar cut off)."""
    first = make_window(qtbot, settings)
    first.close_without_asking()  # a layout is saved: the next window restores it
    second = MainWindow(AppState(Config()), settings=settings)
    qtbot.addWidget(second)
    try:
        assert second._layout_restored
        second._available = (1366, 768)  # this screen
        second.resize(1600, 1000)  # what the restored geometry gave on it
        laid_out = []
        second.default_layout = lambda: laid_out.append(second.size().toTuple())  # the dock sizes saved there
        second.show_for_screen()  # squashed the plots to ~30 px: the default layout replaces them
        assert second.isMaximized()
        assert second.width() <= 1366 and second.height() <= 768
        assert laid_out == [(1366, 768)]  # laid out for this screen's size
        assert "larger screen" in second.statusBar().currentMessage()
    finally:
        second.close_without_asking()


def test_a_restored_layout_that_fits_is_shown_as_saved(qtbot, settings):
    first = make_window(qtbot, settings)
    first.close_without_asking()
    second = MainWindow(AppState(Config()), settings=settings)
    qtbot.addWidget(second)
    try:
        second._available = (1920, 1080)
        second.resize(1200, 700)
        second.show_for_screen()
        assert not second.isMaximized() and second.width() == 1200
    finally:
        second.close_without_asking()


def test_status_bar_device(window):
    assert window.detect_device() in ("cpu",) or window.detect_device().startswith("cuda")
    assert window.device_label.text().startswith("device: ")


def test_close_asks_the_training_panel(window, monkeypatch):
    calls = []

    def refuse(ask=True):
        calls.append(ask)
        return False

    monkeypatch.setattr(window.training_panel, "shutdown", refuse)
    assert not window.close()
    assert calls == [True] and window.isVisible()
    monkeypatch.undo()


def test_singleton_refcounts_are_protected(qapp):
    """shiboken 6.12 drops a reference to None/True on each void/bool Qt call (CPython < 3.12)."""
    import sys

    from PySide6.QtWidgets import QLabel

    from diffstudio.gui.app import protect_singletons

    padded = protect_singletons()
    assert padded or sys.version_info >= (3, 12)
    before = sys.getrefcount(None)
    label = QLabel()
    for _ in range(70_000):  # more than None's whole natural count: aborted the process unpadded
        label.setText("x")
    assert sys.getrefcount(None) > 0 and (not padded or before > 2**39)


def test_closing_mid_run_keeps_the_window_up_until_the_worker_stops(qtbot, settings, tmp_path, monkeypatch):
    from diffstudio.engine.presets import preset
    from diffstudio.engine.run_dir import RunDir

    config = preset("moons-flow").updated(
        run={"steps": 1_000_000, "out_dir": str(tmp_path / "runs"), "log_every": 1, "preview_every": 10_000,
             "checkpoint_every": 100_000, "device": "cpu"})
    window = make_window(qtbot, settings, config)
    tp = window.training_panel
    qtbot.waitUntil(lambda: window.state.dataset is not None, timeout=60000)
    assert tp.start()
    thread = tp.thread
    qtbot.waitUntil(lambda: tp.status["step"] > 3, timeout=60000)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    window.statusBar().showMessage("a passing message", 8000)  # must not hide the note
    assert window.close() is False  # not closed yet: the worker is asked to stop ...
    assert window.isVisible() and window.stopping_note.isVisible()  # ... and the window says so
    assert "stopping" in window.stopping_note.text().lower() and "without saving" in window.stopping_note.text()
    assert window.close() is False  # a second close while stopping does not ask again
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60000)  # it closes once the worker stopped
    assert thread.isFinished()
    run = RunDir(tp.run_dir)  # "No" still leaves a valid run folder: its config and metrics
    assert run.config().data.source == "moons"
    rows, _ = run.read_metrics()
    assert rows and rows[-1]["step"] >= 3 and run.checkpoints() == []  # no final checkpoint


def test_the_sample_preview_zooms_from_the_view_menu_and_stays_zoomed_next_time(qtbot, settings):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    first = make_window(qtbot, settings)
    panel = first.sampling_panel
    first.docks["sampling"].hide()
    first.activateWindow()
    qtbot.waitUntil(first.isActiveWindow)
    QTest.keyClick(first, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert first.action_zoom_preview.isChecked() and panel.preview_zoomed
    assert first.docks["sampling"].isVisible()  # zooming shows the panel it zooms
    panel.model_view.zoom_button.click()  # the panel's own button puts it back: the menu follows
    assert not panel.preview_zoomed and not first.action_zoom_preview.isChecked()
    first.action_zoom_preview.trigger()
    assert panel.preview_zoomed
    first.docks["sampling"].hide()
    first.close_without_asking()

    second = MainWindow(AppState(Config()), settings=settings)
    qtbot.addWidget(second)
    try:
        assert second.sampling_panel.preview_zoomed and second.action_zoom_preview.isChecked()
        assert second.docks["sampling"].isHidden()  # restoring the zoom leaves the dock hidden
        second._available = (1366, 768)  # a layout from a larger screen falls back; the zoom stays
        second.resize(1600, 1000)
        second.show_for_screen()
        assert second.isMaximized() and second.sampling_panel.preview_zoomed
        second.action_zoom_preview.trigger()
        assert not second.sampling_panel.preview_zoomed
    finally:
        second.close_without_asking()
    third = MainWindow(AppState(Config()), settings=settings)
    qtbot.addWidget(third)
    try:
        assert not third.sampling_panel.preview_zoomed  # unzoomed is remembered too
    finally:
        third.close_without_asking()
