import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PIL import Image

from diffstudio.engine.config import Config
from diffstudio.gui.panels.dataset import DatasetPanel
from diffstudio.gui.state import AppState

LOAD_TIMEOUT_MS = 30000


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSTUDIO_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def panel(qtbot):
    state = AppState(Config())
    panel = DatasetPanel(state)
    qtbot.addWidget(panel)
    yield panel
    panel.shutdown()
    assert not panel.loading


def _wait_loaded(qtbot, panel):
    if panel.loading:
        with qtbot.waitSignal(panel.loadFinished, timeout=LOAD_TIMEOUT_MS) as blocker:
            pass
        return blocker.args[0]
    return panel.state.dataset is not None


def _mixed_folder(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"good{i}.png")
    (folder / "broken.png").write_bytes(b"this is not a png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    return folder


def test_builtin_loads_on_start_and_shows_thumbnails(qtbot, panel):
    assert _wait_loaded(qtbot, panel)
    ds = panel.state.dataset
    assert ds is not None and ds.name == "digits" and len(ds) > 0
    assert panel.isValid()
    assert "usable images" in panel.status_label.text()
    assert panel.image_view.image is not None and panel.image_view.image.dtype == np.uint8
    assert panel.skipped_rows() == []


def test_folder_with_good_and_bad_images(qtbot, panel, tmp_path):
    _wait_loaded(qtbot, panel)
    folder = _mixed_folder(tmp_path)
    panel.resolution_spin.setValue(16)
    with qtbot.waitSignal(panel.loadFinished, timeout=LOAD_TIMEOUT_MS) as blocker:
        panel.set_folder(str(folder))
    assert blocker.args == [True]
    ds = panel.state.dataset
    assert len(ds) == 3 and (ds.channels, ds.resolution) == (3, 16)
    assert "3 usable images" in panel.status_label.text()
    assert "2 files skipped" in panel.status_label.text()
    rows = dict((os.path.basename(f), reason) for f, reason in panel.skipped_rows())
    assert set(rows) == {"broken.png", "empty.jpg"}
    assert all(reason for reason in rows.values())
    # the choice is written into the shared config
    assert panel.state.config.data.source == str(folder)
    assert panel.state.config.data.resolution == 16


def test_empty_folder_shows_error_and_disables_training(qtbot, panel, tmp_path):
    from diffstudio.gui.panels.training import TrainingPanel

    _wait_loaded(qtbot, panel)
    training = TrainingPanel(panel.state)
    qtbot.addWidget(training)
    try:
        assert training.start_button.isEnabled()
        empty = tmp_path / "empty"
        empty.mkdir()
        with qtbot.waitSignal(panel.loadFinished, timeout=LOAD_TIMEOUT_MS) as blocker:
            panel.set_folder(str(empty))
        assert blocker.args == [False]
        assert panel.state.dataset is None and not panel.isValid()
        assert "No image files" in panel.error_text()
        assert "No image files" in panel.status_label.text()
        assert "d62728" in panel.folder_edit.styleSheet()  # the field is marked
        assert not training.start_button.isEnabled()
        assert "dataset" in training.reason_label.text().lower()
    finally:
        training.shutdown(ask=False)


def test_folder_of_only_bad_files_lists_them(qtbot, panel, tmp_path):
    _wait_loaded(qtbot, panel)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"nope")
    with qtbot.waitSignal(panel.loadFinished, timeout=LOAD_TIMEOUT_MS):
        panel.set_folder(str(bad))
    assert panel.state.dataset is None
    assert [os.path.basename(f) for f, _ in panel.skipped_rows()] == ["a.png"]


def test_toy_dataset_shows_scatter(qtbot, panel):
    _wait_loaded(qtbot, panel)
    with qtbot.waitSignal(panel.loadFinished, timeout=LOAD_TIMEOUT_MS):
        panel.set_builtin("moons")
    assert panel.state.dataset.kind == "points"
    assert panel.points_view.points is not None and panel.points_view.points.shape[1] == 2
    assert panel.preview_stack.currentWidget() is panel.points_view
    assert not panel.resolution_spin.isEnabled()


def test_config_change_elsewhere_reloads(qtbot, panel):
    _wait_loaded(qtbot, panel)
    with qtbot.waitSignal(panel.loadFinished, timeout=LOAD_TIMEOUT_MS):
        panel.state.update("data", source="gaussians8")
    assert panel.state.dataset.name == "gaussians8"
    assert panel.builtin_combo.currentData() == "gaussians8"


def test_cancel_leaves_no_dataset(qtbot, panel, monkeypatch):
    import time

    import diffstudio.gui.panels.dataset as dataset_module
    from diffstudio.data.errors import LoadCancelled

    _wait_loaded(qtbot, panel)

    def slow_load(source, progress=None, should_cancel=None, **kwargs):
        for done in range(1000):  # a "large folder": 10 s unless cancelled
            if should_cancel():
                raise LoadCancelled(f"Loading cancelled after {done} of 1000 images")
            progress(done, 1000)
            time.sleep(0.01)
        raise AssertionError("not cancelled")

    monkeypatch.setattr(dataset_module, "load_dataset", slow_load)
    panel.set_builtin("swissroll")
    assert panel.loading and panel.cancel_button.isVisibleTo(panel)
    qtbot.waitUntil(lambda: panel.progress.maximum() == 1000, timeout=5000)
    with qtbot.waitSignal(panel.loadFinished, timeout=5000) as blocker:
        panel.cancel_button.click()
    assert blocker.args == [False]
    assert panel.state.dataset is None and "cancelled" in panel.status_label.text()
    assert not panel.loading and not panel.cancel_button.isVisibleTo(panel)


def test_every_skipped_file_is_readable_in_a_short_dock(qtbot, tmp_path):
    """Docked in a short, wide dock (the panel scrolls), the table shows all of its rows."""
    from diffstudio.gui.main_window import _scrollable

    folder = _mixed_folder(tmp_path)
    (folder / "broken2.png").write_bytes(b"not a png either")
    (folder / "empty2.jpg").write_bytes(b"")
    panel = DatasetPanel(AppState(Config()))
    dock = _scrollable(panel)
    qtbot.addWidget(dock)
    dock.resize(1100, 260)  # the default layout's bottom dock on a small screen
    dock.show()
    try:
        _wait_loaded(qtbot, panel)
        panel.resolution_spin.setValue(16)
        with qtbot.waitSignal(panel.loadFinished, timeout=LOAD_TIMEOUT_MS):
            panel.set_folder(str(folder))
        qtbot.wait(50)
        table = panel.skipped_table
        assert table.rowCount() == 4
        last = table.rowCount() - 1
        assert table.rowViewportPosition(0) >= 0
        assert table.rowViewportPosition(last) + table.rowHeight(last) <= table.viewport().height()
        assert panel.height() > dock.viewport().height()  # the dock scrolls to it instead
    finally:
        panel.shutdown()


def test_browse_starts_in_the_last_chosen_folder_after_a_restart(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    folder = _mixed_folder(tmp_path)
    starts = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda _p, _t, start: starts.append(start) or str(folder))
    for _ in range(2):  # a second panel stands for the next start of the app
        panel = DatasetPanel(AppState(Config()))
        qtbot.addWidget(panel)
        _wait_loaded(qtbot, panel)
        panel.folder_radio.click()
        panel.browse_button.click()
        _wait_loaded(qtbot, panel)
        assert panel.state.config.data.source == str(folder)
        panel.shutdown()
    assert starts[0] != str(tmp_path) and starts[1] == str(tmp_path)
