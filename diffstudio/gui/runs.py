"""Run folders in the GUI: view (and follow) one run, compare two, and the brightness statistics.

- :class:`RunViewer` (``RunViewer(path)``): config, loss history and preview grids of a run folder
  trained here, from the CLI or under torchrun elsewhere; it follows the folder live while it is
  still being written (a QTimer polls ``RunDir.read_metrics(since_line)`` and the previews).
- :class:`CompareRunsWindow`: two runs side by side: loss curves overlaid, latest preview grids,
  and a table of the config fields that differ.
- :class:`SampleStatsView`: histogram of the previews' per-image mean brightness over the
  dataset's; it shows Lin et al.'s "uniform lighting" problem while a run trains.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from diffstudio.gui.runs_curve import LossCurve, loss_rows
from diffstudio.gui.runs_data import diff_configs, list_previews, load_image
from diffstudio.gui.runs_image import GridImageView
from diffstudio.gui.widgets.plots import plot_widget
from diffstudio.gui.widgets.val_curve import ValidationView

POLL_MS = 1000
LIVE_WINDOW_S = 30.0  # a run whose metrics grew this recently is shown as "live"


class RunFollower(QObject):
    """Polls one run folder and reports what is new. Nothing is read on other threads: reads are
    incremental (``read_metrics(since_line)``) and small."""

    # every signal carries the follower's ``key`` first (which run of a comparison it is)
    metricsAdded = Signal(str, list, list)  # key, steps, losses (new points only)
    previewsChanged = Signal(str, list)  # key, [(step, image path)]: all of them, when the list changed
    evaluationsAdded = Signal(str, list)  # key, new validation / quality rows of metrics.jsonl
    configLoaded = Signal(str, object)  # key, the run's Config (once)
    error = Signal(str, str)  # key, message

    def __init__(self, path, interval_ms: int = POLL_MS, parent=None, key: str = ""):
        super().__init__(parent)
        self.key = key
        self.path = str(path)
        self.next_line = 0
        self.previews: list[tuple[int, str]] = []
        self.config = None
        self.last_growth: float | None = None
        self._error = ""
        self._run = None
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.poll)

    def start(self) -> None:
        """Read what is there now, then poll every ``interval_ms`` milliseconds."""
        self.poll()
        self.timer.start()

    def stop(self) -> None:
        """Stop polling."""
        self.timer.stop()

    @property
    def live(self) -> bool:
        """The run's metrics grew within the last ``LIVE_WINDOW_S`` seconds."""
        return self.last_growth is not None and time.monotonic() - self.last_growth < LIVE_WINDOW_S

    def poll(self) -> None:
        """Read what was added since the last poll and emit it."""
        from diffstudio.engine.run_dir import RunDir

        try:
            # one RunDir for the follower's life: it remembers the byte offset read up to
            run = self._run = self._run or RunDir(self.path)
            if self.config is None:
                self._load_config(run)
            first_read = _age_as_monotonic(run.path / "metrics.jsonl") if self.next_line == 0 else None
            rows, self.next_line = run.read_metrics(self.next_line)
        except Exception as exc:  # noqa: BLE001 - shown, polling goes on
            self._report(f"Cannot read {self.path}: {exc}")
            return
        self._report("")
        if rows:
            steps, losses = loss_rows(rows)
            self.last_growth = time.monotonic() if first_read is None else first_read
            if steps:
                self.metricsAdded.emit(self.key, steps, losses)
            evaluations = [r for r in rows if "validation" in r or "quality" in r]
            if evaluations:
                self.evaluationsAdded.emit(self.key, evaluations)
        previews = list_previews(run)
        if previews != self.previews:
            self.previews = previews
            self.previewsChanged.emit(self.key, previews)

    def _load_config(self, run) -> None:
        try:
            self.config = run.config()
        except Exception:  # noqa: BLE001 - not written yet: try again on the next poll
            return
        self.configLoaded.emit(self.key, self.config)

    def _report(self, message: str) -> None:
        if message != self._error:
            self._error = message
            if message:
                self.error.emit(self.key, message)


def _age_as_monotonic(path: Path) -> float | None:
    """When ``path`` was last written, on the monotonic clock (a run found already written is
    live only if it was written recently, not merely because it was just read)."""
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return None
    return time.monotonic() - max(0.0, age)


def config_text(config) -> str:
    """The config as TOML (what ``diffstudio train --config`` reads)."""
    import tomli_w

    from diffstudio.engine.config import _drop_none

    return tomli_w.dumps(_drop_none(config.to_dict()))


class PreviewBrowser(QWidget):
    """The preview grids of a run, newest shown unless the user picked an older one."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view = GridImageView()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(self._show)
        self.previews: list[tuple[int, str]] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.slider)
        self.view.caption.setText("no preview grids yet")

    def set_previews(self, previews: list[tuple[int, str]]) -> None:
        """Browse ``[(step, image path)]``; the slider stays at the newest when it was there, else where
        it was."""
        at_end = self.slider.value() >= self.slider.maximum()
        self.previews = list(previews)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, len(previews) - 1))
        if at_end:
            self.slider.setValue(self.slider.maximum())
        self.slider.blockSignals(False)
        self._show(self.slider.value())

    @property
    def shown_step(self) -> int | None:
        """The training step of the preview shown, or None without previews."""
        return self.previews[self.slider.value()][0] if self.previews else None

    def _show(self, index: int) -> None:
        if not self.previews:
            self.view.set_image(None, "no preview grids saved (2-D runs keep none)")
            return
        step, path = self.previews[index]
        image = load_image(path)
        self.view.set_image(image, f"step {step:,}   ({index + 1} of {len(self.previews)})")


class RunViewer(QWidget):
    """One run folder: config, loss history and preview grids, followed live."""

    def __init__(self, path, parent=None, interval_ms: int = POLL_MS):
        super().__init__(parent)
        self.path = str(path)
        self.setWindowTitle(f"Run — {Path(self.path).name}")
        self.title = QLabel(f"<b>{Path(self.path).name}</b>   {self.path}")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.live_label = QLabel("")
        self.curve = LossCurve()
        self.validation_view = ValidationView()
        self.previews = PreviewBrowser()
        self.config_view = QPlainTextEdit()
        self.config_view.setReadOnly(True)
        self.config_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.config_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.config_view.setPlaceholderText("config.toml not written yet")

        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.curve)
        left.addWidget(self.validation_view)
        left.addWidget(self.previews)
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(self.config_view)
        main.setSizes([760, 340])
        left.setSizes([380, 320])
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.live_label)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(main, 1)
        self.resize(1100, 700)

        # bound methods, not lambdas: a lambda holding self keeps a cycle that PySide 6.12 breaks badly
        self.follower = RunFollower(self.path, interval_ms, self)
        self.follower.metricsAdded.connect(self._on_metrics)
        self.follower.evaluationsAdded.connect(self._on_evaluations)
        self.follower.previewsChanged.connect(self._on_previews)
        self.follower.configLoaded.connect(self._on_config)
        self.follower.error.connect(self._on_error)
        self.follower.timer.timeout.connect(self._update_live)
        self.follower.start()
        self.curve.redraw()
        self._update_live()

    def _on_metrics(self, _key: str, steps: list, losses: list) -> None:
        self.curve.add(steps, losses)

    def _on_previews(self, _key: str, previews: list) -> None:
        self.previews.set_previews(previews)

    def _on_evaluations(self, _key: str, rows: list) -> None:
        self.validation_view.add_rows(rows)

    def _on_config(self, _key: str, config) -> None:
        self.config_view.setPlainText(config_text(config))

    def _on_error(self, _key: str, message: str) -> None:
        self.live_label.setText(message)

    def poll(self) -> None:
        """Read new metrics and previews now (the timer does this every second)."""
        self.follower.poll()
        self.curve.redraw()
        self._update_live()

    def _update_live(self) -> None:
        if self.follower._error:
            return
        history = self.curve.history()
        last = f"last step {int(history.last_step):,}" if history.last_step is not None else "no metrics yet"
        self.live_label.setText(("● live — " if self.follower.live else "") + last)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.follower.stop()
        super().closeEvent(event)


class CompareRunsWindow(QWidget):
    """Two runs side by side: overlaid loss curves, latest previews, and the config differences."""

    def __init__(self, path_a=None, path_b=None, parent=None, interval_ms: int = POLL_MS):
        super().__init__(parent)
        self.setWindowTitle("Compare runs")
        self._interval = interval_ms
        self.paths: dict[str, str | None] = {"A": None, "B": None}
        self.followers: dict[str, RunFollower | None] = {"A": None, "B": None}
        self.configs: dict[str, object] = {"A": None, "B": None}
        self.curve = LossCurve(series=("A", "B"))
        self.validation_view = ValidationView(runs=("A", "B"))  # the two runs' latest by-t curves overlaid
        self.path_labels = {k: QLabel("(no run)") for k in "AB"}
        self.preview_views = {k: PreviewBrowser() for k in "AB"}
        self.diff_table = QTableWidget(0, 3)
        self.diff_table.setHorizontalHeaderLabels(["Setting", "Run A", "Run B"])
        self.diff_table.verticalHeader().setVisible(False)
        self.diff_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.diff_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.diff_label = QLabel("Open two runs to compare their settings.")

        pickers = QGridLayout()
        for row, key in enumerate("AB"):
            button = QPushButton(f"Open run {key}…")
            button.clicked.connect(self._browse_a if key == "A" else self._browse_b)
            self.path_labels[key].setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            pickers.addWidget(QLabel(f"<b>{key}</b>"), row, 0)
            pickers.addWidget(self.path_labels[key], row, 1)
            pickers.addWidget(button, row, 2)
        pickers.setColumnStretch(1, 1)
        grids = QSplitter(Qt.Orientation.Horizontal)
        for key in "AB":
            grids.addWidget(self.preview_views[key])
        diff = QWidget()
        diff_layout = QVBoxLayout(diff)
        diff_layout.setContentsMargins(0, 0, 0, 0)
        diff_layout.addWidget(self.diff_label)
        diff_layout.addWidget(self.diff_table, 1)
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.curve)
        top.addWidget(diff)
        top.setSizes([760, 440])
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(top)
        body.addWidget(self.validation_view)
        body.addWidget(grids)
        body.setSizes([320, 300, 260])
        layout = QVBoxLayout(self)
        layout.addLayout(pickers)
        layout.addWidget(body, 1)
        self.resize(1200, 800)
        for key, path in (("A", path_a), ("B", path_b)):
            if path:
                self.set_run(key, path)

    def set_run(self, key: str, path) -> None:
        """Show run folder ``path`` as run ``key`` ("A" or "B")."""
        old = self.followers[key]
        if old is not None:
            old.stop()
            old.deleteLater()
        self.paths[key] = str(path)
        self.configs[key] = None
        self.path_labels[key].setText(str(path))
        self.curve.clear(key)
        self.validation_view.clear(key)
        self.preview_views[key].set_previews([])
        follower = RunFollower(path, self._interval, self, key=key)
        follower.metricsAdded.connect(self._on_metrics)
        follower.evaluationsAdded.connect(self._on_evaluations)
        follower.previewsChanged.connect(self._on_previews)
        follower.configLoaded.connect(self._set_config)
        follower.error.connect(self._on_error)
        self.followers[key] = follower
        self._update_diff()
        follower.start()
        self.curve.redraw()

    def poll(self) -> None:
        """Read what both runs added since the last poll and redraw the loss curves."""
        for follower in self.followers.values():
            if follower is not None:
                follower.poll()
        self.curve.redraw()

    def differences(self) -> list[tuple[str, object, object]]:
        """``[(dotted field, value in A, value in B)]`` of the two runs' configs; empty until both are read."""
        a, b = self.configs["A"], self.configs["B"]
        return [] if a is None or b is None else diff_configs(a, b)

    def _on_metrics(self, key: str, steps: list, losses: list) -> None:
        self.curve.add(steps, losses, name=key)

    def _on_previews(self, key: str, previews: list) -> None:
        self.preview_views[key].set_previews(previews)

    def _on_evaluations(self, key: str, rows: list) -> None:
        self.validation_view.add_rows(rows, run=key)

    def _on_error(self, key: str, message: str) -> None:
        self.path_labels[key].setText(f"{self.paths[key]} — {message}")

    def _set_config(self, key: str, config) -> None:
        self.configs[key] = config
        self._update_diff()

    def _update_diff(self) -> None:
        rows = self.differences()
        self.diff_table.setRowCount(len(rows))
        for r, (name, a, b) in enumerate(rows):
            for c, value in enumerate((name, a, b)):
                self.diff_table.setItem(r, c, QTableWidgetItem("—" if value is None and c else str(value)))
        if self.configs["A"] is None or self.configs["B"] is None:
            self.diff_label.setText("Open two runs to compare their settings.")
        else:
            self.diff_label.setText(f"{len(rows)} setting{'s' if len(rows) != 1 else ''} differ"
                                    if rows else "The two runs have identical settings.")

    def _browse_a(self) -> None:
        self._browse("A")

    def _browse_b(self) -> None:
        self._browse("B")

    def _browse(self, key: str) -> None:
        start = self.paths[key] or self.paths["B" if key == "A" else "A"] or ""
        path = QFileDialog.getExistingDirectory(self, f"Open run {key}", start)
        if path:
            self.set_run(key, path)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        for follower in self.followers.values():
            if follower is not None:
                follower.stop()
        super().closeEvent(event)


BRIGHTNESS_BINS = np.linspace(-1.0, 1.0, 41)


def per_image_means(x) -> np.ndarray:
    """(N,) mean brightness of (N, C, H, W) images (torch or numpy), in [-1, 1] data units."""
    import torch

    t = torch.as_tensor(x)
    return t.reshape(len(t), -1).double().mean(1).numpy()


class SampleStatsView(QWidget):
    """Histogram of the samples' per-image mean brightness over the dataset's.

    A flawed schedule (non-zero terminal SNR, eps-prediction, leading spacing) squeezes the
    samples toward mid-grey although the data covers black to white (Lin et al. 2024, Fig. 1)."""

    def __init__(self, state=None, parent=None):
        super().__init__(parent)
        self.state = state
        self.data_means: np.ndarray | None = None
        self.sample_means: np.ndarray | None = None
        self.stale_reason: str | None = None
        self._config = None
        self._step: int | None = None
        self.plot_widget = plot_widget(left="density",
                                       bottom="per-image mean brightness (-1 black … 1 white)")
        plot = self.plot_widget.getPlotItem()
        plot.getAxis("left").enableAutoSIPrefix(False)
        self.data_item = plot.plot([], [], stepMode="center", fillLevel=0, name="dataset",
                                   pen=pg.mkPen("#777", width=1), brush=pg.mkBrush(150, 150, 150, 90))
        self.sample_item = plot.plot([], [], stepMode="center", name="samples",
                                     pen=pg.mkPen("#d62728", width=2))
        self.key = QLabel("<span style='color:#777'>■</span> dataset &nbsp; "
                          "<span style='color:#d62728'>━</span> samples (latest preview)")
        self.summary = QLabel("Brightness statistics appear with the first preview of an image run.")
        self.summary.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(self.key)
        layout.addWidget(self.summary)
        if state is not None:
            state.datasetChanged.connect(self.set_dataset)
            self.set_dataset(state.dataset)

    def set_dataset(self, dataset) -> None:
        """Compare the samples with ``dataset``'s per-image mean brightness (read in chunks, or the
        state's cached statistics); None or points clear the data histogram."""
        if dataset is None or getattr(dataset, "kind", "image") != "image":
            self.data_means = None
            self.data_item.setData(BRIGHTNESS_BINS, np.zeros(len(BRIGHTNESS_BINS) - 1))
        else:  # in chunks (a folder is a memory map of its uint8 cache), usually already computed
            from diffstudio.data.stats import image_stats

            state = self.state
            stats = state.image_stats() if state is not None and dataset is state.dataset else image_stats(dataset)
            self.data_means = stats.means
            self.data_item.setData(BRIGHTNESS_BINS, _density(self.data_means))
        self._update_summary()

    def update_preview(self, preview, config=None) -> None:
        """Show a new Preview's brightness (ignored for 2-D point previews). ``config``: the config
        of the run or checkpoint that made it, which the advice judges (None: numbers only)."""
        means = getattr(preview, "mean_brightness", None)
        self.stale_reason = None
        if means is None:
            self.sample_means = None
            self.sample_item.setData(BRIGHTNESS_BINS, np.zeros(len(BRIGHTNESS_BINS) - 1))
            if getattr(preview, "kind", "") == "points":
                self.summary.setText("Brightness statistics are for image datasets.")
            return
        self.sample_means = np.asarray(means, dtype=np.float64)
        self.sample_item.setData(BRIGHTNESS_BINS, _density(self.sample_means))
        self.sample_item.setVisible(True)
        self._step = getattr(preview, "step", None)
        self._config = config
        self._update_summary()

    def clear_samples(self, text: str = "", stale_reason: str | None = None) -> None:
        """Forget the samples (a new run started, or they no longer match the data shown):
        the histogram keeps the dataset only, and ``text`` says why."""
        self.sample_means = None
        self._config = None
        self.stale_reason = stale_reason
        self.sample_item.setData(BRIGHTNESS_BINS, np.zeros(len(BRIGHTNESS_BINS) - 1))
        self.sample_item.setVisible(False)
        self.summary.setText(text or "Brightness statistics appear with the first preview of an image run.")

    def advice(self) -> list[str]:
        """What the shown samples' spread says about the run that made them (engine advice)."""
        s, d, config = self.sample_means, self.data_means, getattr(self, "_config", None)
        if s is None or config is None:
            return []
        from diffstudio.engine.advice import BrightnessStats, run_advice

        return run_advice(config, BrightnessStats.of(s, d, getattr(self, "_step", None)))

    def _update_summary(self) -> None:
        s, d = self.sample_means, self.data_means
        if s is None:
            return
        text = f"step {self._step:,}: " if getattr(self, "_step", None) is not None else ""
        text += f"samples' brightness spread (std) {s.std():.3f}"
        if d is not None and len(d) > 1 and d.std() > 0:
            ratio = s.std() / d.std()
            text += (f" vs the dataset's {d.std():.3f} (ratio {ratio:.2f}); "
                     f"dark (< -0.7) {np.mean(s < -0.7):.0%} vs {np.mean(d < -0.7):.0%}, "
                     f"bright (> 0.7) {np.mean(s > 0.7):.0%} vs {np.mean(d > 0.7):.0%}")
        advice = self.advice()
        if advice:
            text += ". " + " ".join(advice)
        self.summary.setText(text)


def _density(values: np.ndarray) -> np.ndarray:
    hist, _ = np.histogram(np.clip(values, -1.0, 1.0), bins=BRIGHTNESS_BINS, density=True)
    return hist


_OPEN_WINDOWS: set[QWidget] = set()


def _keep_open(window: QWidget) -> QWidget:
    """Hold a top-level window until it is closed (then Qt deletes it)."""
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
    _OPEN_WINDOWS.add(window)
    window.destroyed.connect(lambda *_: _OPEN_WINDOWS.discard(window))
    window.show()
    return window


def open_run(path, parent=None) -> RunViewer:
    """File ▸ Open run…: a window showing (and following) the run folder ``path``."""
    viewer = RunViewer(path, parent)
    if parent is not None:
        viewer.setWindowFlag(Qt.WindowType.Window, True)
    return _keep_open(viewer)


def open_compare(path_a=None, path_b=None, parent=None) -> CompareRunsWindow:
    """File ▸ Compare runs…: a window with two runs side by side."""
    window = CompareRunsWindow(path_a, path_b, parent)
    if parent is not None:
        window.setWindowFlag(Qt.WindowType.Window, True)
    return _keep_open(window)
