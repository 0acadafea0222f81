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


def _folder_in_a_dock(qtbot, folder, width, height):
    """A Dataset panel in a scrolling dock of ``width`` x ``height`` px, with ``folder`` loaded at
    16 px; returns (panel, dock). The caller shuts the panel down."""
    from diffstudio.gui.main_window import _scrollable

    panel = DatasetPanel(AppState(Config()))
    dock = _scrollable(panel)
    qtbot.addWidget(dock)
    dock.resize(width, height)
    dock.show()
    try:
        _wait_loaded(qtbot, panel)
        panel.resolution_spin.setValue(16)
        with qtbot.waitSignal(panel.loadFinished, timeout=LOAD_TIMEOUT_MS):
            panel.set_folder(str(folder))
        qtbot.wait(50)
    except BaseException:
        panel.shutdown()
        raise
    return panel, dock


def test_every_skipped_file_is_readable_in_a_short_dock(qtbot, tmp_path):
    """Docked in a short, wide dock (the panel scrolls), the table shows all of its rows."""
    folder = _mixed_folder(tmp_path)
    (folder / "broken2.png").write_bytes(b"not a png either")
    (folder / "empty2.jpg").write_bytes(b"")
    panel, dock = _folder_in_a_dock(qtbot, folder, 1100, 260)  # the default layout's bottom dock, small screen
    try:
        table = panel.skipped_table
        assert table.rowCount() == 4
        last = table.rowCount() - 1
        assert table.rowViewportPosition(0) >= 0
        assert table.rowViewportPosition(last) + table.rowHeight(last) <= table.viewport().height()
        assert panel.height() > dock.viewport().height()  # the dock scrolls to it instead
    finally:
        panel.shutdown()


def test_the_source_description_keeps_all_its_lines_in_a_narrow_short_dock(qtbot, tmp_path):
    """Tried by a user at 1366x768: after a folder with bad files loaded, the folder's description
    ('Every image under the folder is used; … with the reason.') was squeezed to two of its three
    lines, its first and last lines cut off, overlapping the folder row."""
    panel, _ = _folder_in_a_dock(qtbot, _mixed_folder(tmp_path), 560, 200)  # the default Dataset dock at 1366x768
    try:
        label = panel.description
        assert "Every image under the folder" in label.text() and panel.skipped_table.rowCount() > 0
        lines = label.heightForWidth(label.width()) // label.fontMetrics().lineSpacing()
        assert lines >= 3  # the text wraps to three lines at this width
        assert label.height() >= label.heightForWidth(label.width())
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


def _noisy_folder(root, count, size, seed=3, classes=None):
    """``count`` random RGB PNGs of ``size`` px (with ``classes``: in that many sub-folders)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = root / f"class{i % classes}" if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        level = rng.integers(0, 256)  # per-image brightness spread, so the histogram has a shape
        pixels = np.clip(rng.normal(level, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def _held_bytes(obj) -> int:
    """Bytes of the private arrays and tensors an object holds directly (memory maps excluded)."""
    import torch

    total = 0
    for value in vars(obj).values():
        if isinstance(value, np.ndarray) and not isinstance(value, np.memmap):
            total += value.nbytes
        elif torch.is_tensor(value):
            total += value.numel() * value.element_size()
    return total


def test_a_folder_is_held_as_its_uint8_memory_map_with_chunked_statistics(qtbot, panel, tmp_path, monkeypatch):
    """A folder whose float32 copy exceeds a small limit: the panel holds the memory map of its
    uint8 cache (no float pixels of all images), and the brightness histogram and statistics,
    read in chunks, equal those of the full float32 data."""
    import diffstudio.data.registry as registry
    from diffstudio.data.streaming import StreamingDataset
    from diffstudio.gui.runs import BRIGHTNESS_BINS, SampleStatsView, _density, per_image_means

    count, size, limit = 60, 32, 256 << 10
    folder = _noisy_folder(tmp_path / "photos", count, size)
    assert count * 3 * size * size * 4 > limit  # its float32 copy would not fit the limit
    _wait_loaded(qtbot, panel)

    def no_float_copy(*args, **kwargs):
        raise AssertionError("the panel decoded the folder into a float32 dataset")

    monkeypatch.setattr(registry, "_load_folder", no_float_copy)
    panel.resolution_spin.setValue(size)
    with qtbot.waitSignal(panel.loadFinished, timeout=LOAD_TIMEOUT_MS) as blocker:
        panel.set_folder(str(folder))
    assert blocker.args == [True], panel.error_text()
    monkeypatch.undo()
    ds = panel.state.dataset
    assert isinstance(ds, StreamingDataset) and not hasattr(ds, "x")
    assert isinstance(ds.pixels, np.memmap) and ds.pixels.dtype == np.uint8
    assert ds.pixels.shape == (count, 3, size, size)
    assert _held_bytes(ds) < limit and _held_bytes(panel.state) < limit
    assert f"{count} usable images" in panel.status_label.text()
    assert "180.0 KiB uint8 cache on disk" in panel.status_label.text()  # 60 x 3 x 32 x 32 bytes
    assert panel.image_view.image is not None and panel.image_view.image.dtype == np.uint8

    full = registry.load_dataset(str(folder), resolution=size)  # the float32 copy, for reference only
    assert str(full.x.dtype) == "torch.float32"
    reference = per_image_means(full.x)
    stats = panel.state.dataset_stats
    assert stats is not None  # computed on the loading thread
    np.testing.assert_allclose(stats.means, reference, atol=1e-6)
    assert stats.value_range == (float(full.x.min()), float(full.x.max()))
    view = SampleStatsView(panel.state)
    qtbot.addWidget(view)
    edges, density = view.data_item.getData()
    np.testing.assert_array_equal(density, _density(reference))
    assert len(edges) == len(BRIGHTNESS_BINS) and density.sum() > 0


def test_the_cache_size_of_a_small_folder_is_not_zero(tmp_path):
    """Tried by a user: 300 small images at native 5 px were '0.0 MiB uint8 cache on disk'."""
    from diffstudio.data.training_data import open_folder
    from diffstudio.gui.panels.dataset import describe_dataset

    ds = open_folder(str(_noisy_folder(tmp_path / "tiny", 10, 16)), resolution=8)
    assert ds.nbytes == 10 * 3 * 8 * 8
    assert "1.9 KiB uint8 cache on disk" in describe_dataset(ds)


def test_chunked_statistics_do_not_depend_on_the_chunk_size(tmp_path):
    from diffstudio.data.stats import image_stats
    from diffstudio.data.training_data import open_folder

    folder = _noisy_folder(tmp_path / "photos", 10, 16)
    ds = open_folder(str(folder), resolution=16)
    whole = image_stats(ds)
    one_by_one = image_stats(ds, chunk_bytes=1)  # one image per chunk
    np.testing.assert_array_equal(whole.means, one_by_one.means)
    assert whole.value_range == one_by_one.value_range and len(whole.means) == 10
    assert len(image_stats(ds, limit=4).means) == 4


def test_a_run_started_from_the_app_on_a_large_folder_streams_from_the_cache(qtbot, panel, tmp_path, monkeypatch):
    """The app passes no float copy to the Trainer: a folder over data.memory_budget_mb trains
    through the streaming path from the cache the panel built."""
    import diffstudio.engine.trainer as trainer_module
    from diffstudio.data.streaming import StreamingDataset
    from diffstudio.engine.presets import preset
    from diffstudio.gui.panels.training import TrainingPanel

    folder = _noisy_folder(tmp_path / "pets", 24, 10, classes=2)
    uint8_bytes = 24 * 3 * 8 * 8
    config = preset("quickstart").updated(
        data={"source": str(folder), "resolution": 8, "channels": 3, "labels": True,
              "memory_budget_mb": (uint8_bytes // 2) / 2**20},
        run={"steps": 3, "out_dir": str(tmp_path / "runs"), "preview_every": 10_000, "checkpoint_every": 10_000,
             "log_every": 1, "device": "cpu"},
        optim={"batch_size": 4, "warmup_steps": 1}, sampling={"num_samples": 2, "steps": 2})
    _wait_loaded(qtbot, panel)
    with qtbot.waitSignal(panel.loadFinished, timeout=LOAD_TIMEOUT_MS):
        panel.state.set_config(config)
    assert isinstance(panel.state.dataset, StreamingDataset)

    trainers = []

    class Recording(trainer_module.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)

    monkeypatch.setattr(trainer_module, "Trainer", Recording)
    training = TrainingPanel(panel.state)
    qtbot.addWidget(training)
    try:
        with qtbot.waitSignal(training.runFinished, timeout=60000) as finished:
            assert training.start()
        assert finished.args[0] is not None and finished.args[0].steps == 3
    finally:
        training.shutdown(ask=False)
    (trainer,) = trainers
    assert trainer._dataset is None  # the Trainer loaded the data itself ...
    assert isinstance(trainer.data, StreamingDataset)  # ... and streamed it: over the budget
    assert trainer.data.cache.path == panel.state.dataset.cache.path  # from the cache the panel built


def test_building_a_folders_cache_shows_progress_cancels_and_resumes(qtbot, panel, tmp_path, monkeypatch):
    """The pixel cache of a folder is built with the panel's progress bar and Cancel; a cancelled
    build resumes from its last recorded chunk on the next Load."""
    import time

    import diffstudio.data.pixel_cache as pixel_cache

    folder = _noisy_folder(tmp_path / "many", 120, 8)
    decoded = []
    real = pixel_cache._decode_or_skip

    def slow(file, options):
        decoded.append(file.path.name)
        time.sleep(0.02)
        return real(file, options)

    monkeypatch.setattr(pixel_cache, "_decode_or_skip", slow)
    monkeypatch.setattr(pixel_cache, "CHUNK", 8)
    _wait_loaded(qtbot, panel)
    panel.resolution_spin.setValue(8)
    panel.folder_edit.setText(str(folder))
    panel.folder_radio.setChecked(True)
    panel.load()
    qtbot.waitUntil(lambda: panel.progress.maximum() == 120 and panel.progress.value() >= 24, timeout=20000)
    assert panel.cancel_button.isVisibleTo(panel) and "/ 120 files" in panel.progress.format()
    with qtbot.waitSignal(panel.loadFinished, timeout=LOAD_TIMEOUT_MS) as blocker:
        panel.cancel_button.click()
    assert blocker.args == [False] and panel.state.dataset is None
    first = len(decoded)
    assert first < 120
    with qtbot.waitSignal(panel.loadFinished, timeout=LOAD_TIMEOUT_MS) as blocker:
        panel.load()
    assert blocker.args == [True] and len(panel.state.dataset) == 120
    assert len(decoded) - first < 120  # resumed: the recorded chunks were not decoded again
