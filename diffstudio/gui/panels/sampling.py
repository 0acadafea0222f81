"""The sampling panel: sampler, steps and spacing, guidance, seed — and what comes out.

Two previews side by side in tabs: **Model** shows the latest preview of the run being trained
(``show_preview``, fed by ``TrainingPanel.previewReady``) or of a loaded checkpoint ("Sample now",
computed on a background thread with :func:`diffstudio.engine.sampling.generate`); **Oracle** shows
what a *perfect* model would produce under the current settings, for data whose exact denoiser is
known (:mod:`diffstudio.engine.oracle`), recomputed in the background after every edit.
Each preview has a sample grid (or, for 2-D toys, a scatter over the data) and a trajectory strip
of x_t and the predicted x0 across the steps for one sample."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from diffstudio.core.samplers import SAMPLERS
from diffstudio.engine.oracle import ORACLE_SOURCES, has_oracle, oracle_preview
from diffstudio.gui import help as H
from diffstudio.gui.widgets.background import LatestRunner
from diffstudio.gui.widgets.field import FieldMarker, NumberBox, set_tooltip
from diffstudio.gui.widgets.image_view import ImageView, ImageWindow, save_png, unit_to_uint8
from diffstudio.gui.widgets.settings_form import describe_editor
from diffstudio.gui.widgets.plots import EDITED, MARKER, POINT, pen, plot_widget
from diffstudio.gui.widgets.spacing import fill_spacing_combo

STATS_SHARE = (2, 1)
"""How the room under the Sampler settings is shared at first: the preview (title, sample grid,
trajectory strip) and the brightness histogram below it (which keeps its minimum height)."""
GRID_STRIP_SHARE = (3, 1)  # the room of the sample grid and of the trajectory strip that explains it
ORACLE_DELAY_MS = 120  # debounce: recompute the oracle this long after the last edit
TRAJECTORY_FRAMES = 8
DATA_POINTS_SHOWN = 2000
WARNING_STYLE = "QLabel { color: #8a3b00; background: #fff4e5; border: 1px solid #f0b070; border-radius: 4px; padding: 4px; }"


def oracle_counts(num_samples: int, kind: str) -> tuple[int, int]:
    """(samples computed, samples shown in the grid): enough samples for a stable spread."""
    shown = max(1, min(int(num_samples), 64))
    if kind == "points":
        return min(max(int(num_samples), 512), 4096), shown
    return max(shown, 64), shown


def trajectory_strip(trajectory, frames: int = TRAJECTORY_FRAMES, gap: int = 2) -> tuple[np.ndarray, list[float]] | None:
    """Two rows of images — x_t on top, predicted x0 below — at ``frames`` steps spread over an
    image trajectory ``[(t, x_t, x0_hat), ...]`` (C, H, W each). Returns (uint8 image, times)."""
    if not trajectory or np.asarray(trajectory[0][1]).ndim != 3:
        return None
    picks = sorted(set(np.linspace(0, len(trajectory) - 1, min(frames, len(trajectory))).round().astype(int)))
    tiles_top = [unit_to_uint8(trajectory[i][1]) for i in picks]
    tiles_bottom = [unit_to_uint8(trajectory[i][2]) for i in picks]
    h, w, _ = tiles_top[0].shape
    out = np.full((2 * h + 3 * gap, len(picks) * (w + gap) + gap, 3), 255, dtype=np.uint8)
    for k, (top, bottom) in enumerate(zip(tiles_top, tiles_bottom)):
        x = gap + k * (w + gap)
        out[gap:gap + h, x:x + w] = top
        out[2 * gap + h:2 * gap + 2 * h, x:x + w] = bottom
    return out, [float(trajectory[i][0]) for i in picks]


DATA_FIELDS = ("source", "resolution", "channels", "num_points")
"""The data settings that decide what a model learns (labels and flips do not change the data)."""


def data_key(config) -> tuple:
    """What identifies the data a config trains on (previews of other data are stale)."""
    return tuple(getattr(config.data, name, None) for name in DATA_FIELDS)


def describe_data(config) -> str:
    """'digits' or 'lighting (32 px, 1 channel)': the data of a config, in words."""
    d = config.data
    extra = [f"{d.resolution} px"] if d.resolution else []
    if d.channels:
        extra.append(f"{d.channels} channel{'s' if d.channels != 1 else ''}")
    if getattr(d, "num_points", None):
        extra.append(f"first {d.num_points:,}")
    return f"'{d.source}'" + (f" ({', '.join(extra)})" if extra else "")


class PreviewView(QWidget):
    """One preview: a title, the sample grid or a scatter over the data, a trajectory strip.

    Zoomed (:meth:`set_zoomed`, the Zoom button), the grid or scatter takes the room of the strip,
    its caption and the statistics line. Enlarge… (or a double-click) opens the grid in a window
    of its own that follows each new preview until told to keep one."""

    zoomToggled = Signal(bool)  # the Zoom button was pressed (the panel zooms every preview)

    def __init__(self, placeholder: str, parent=None):
        super().__init__(parent)
        self.preview = None
        self.zoomed = False
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setStyleSheet("font-weight: bold;")
        self.stale_label = QLabel()
        self.stale_label.setWordWrap(True)
        self.stale_label.setStyleSheet(WARNING_STYLE)
        self.stale_label.setVisible(False)
        self.grid_view = ImageView(placeholder)
        self.grid_view.setToolTip("Double-click to open it in a window of its own")
        self.grid_view.installEventFilter(self)  # a double-click enlarges
        self.zoom_button = QToolButton()
        self.zoom_button.setText("Zoom")
        self.zoom_button.setCheckable(True)
        self.zoom_button.setToolTip("Give the samples the room of the trajectory strip and the brightness "
                                    "histogram (again, or Escape, to go back; View menu: Ctrl+Shift+E)")
        self.zoom_button.toggled.connect(self.zoomToggled)
        self.enlarge_button = QToolButton()
        self.enlarge_button.setText("Enlarge…")
        self.enlarge_button.setToolTip("Show the sample grid in its own, larger window; it follows the new "
                                       "previews as training goes on")
        self.enlarge_button.clicked.connect(self.enlarge)
        self.save_button = QToolButton()
        self.save_button.setText("Save…")
        self.save_button.setToolTip("Save the sample grid as a PNG file")
        self.save_button.clicked.connect(self.save_dialog)
        self.windows: list[QWidget] = []
        self.points_plot = plot_widget("", "", "")
        self.points_plot.setAspectLocked(True)
        self.data_scatter = pg.ScatterPlotItem(size=3, pen=None, brush=pg.mkBrush(150, 150, 150, 90))
        self.sample_scatter = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(EDITED))
        self.path_xt = self.points_plot.plot([], [], pen=pen(MARKER, 1.5), symbol="o", symbolSize=4,
                                             symbolBrush=MARKER, symbolPen=None)
        self.path_x0 = self.points_plot.plot([], [], pen=pen(POINT, 1.5, dashed=True))
        for item in (self.data_scatter, self.sample_scatter):
            self.points_plot.addItem(item)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.grid_view)
        self.stack.addWidget(self.points_plot)
        self.strip = ImageView("", min_size=40)
        self.strip.setMinimumHeight(48)
        self.strip.setMaximumHeight(130)
        self.strip_caption = QLabel()
        self.strip_caption.setWordWrap(True)
        self.strip_caption.setStyleSheet("color: #555; font-size: 9pt;")
        self.stats = QLabel()
        self.stats.setWordWrap(True)
        self.stats.setTextFormat(Qt.TextFormat.RichText)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        title_row = QHBoxLayout()
        title_row.addWidget(self.title, 1)
        title_row.addWidget(self.zoom_button)
        title_row.addWidget(self.enlarge_button)
        title_row.addWidget(self.save_button)
        layout.addLayout(title_row)
        layout.addWidget(self.stale_label)
        layout.addWidget(self.stack, GRID_STRIP_SHARE[0])
        layout.addWidget(self.strip, GRID_STRIP_SHARE[1])
        layout.addWidget(self.strip_caption)
        layout.addWidget(self.stats)
        self._update_buttons()

    def set_data_points(self, points: np.ndarray | None) -> None:
        """Draw the data's points (N, 2) (the first ``DATA_POINTS_SHOWN``) behind a 2-D preview; None clears them."""
        if points is None:
            self.data_scatter.clear()
        else:
            self.data_scatter.setData(points[:DATA_POINTS_SHOWN, 0], points[:DATA_POINTS_SHOWN, 1])

    def show_preview(self, preview, title: str, stats: str = "") -> None:
        """Show a Preview (image grid and trajectory strip, or a scatter for points) with its title and statistics line."""
        self.preview = preview
        self.title.setText(title)
        self.stats.setText(stats)
        self.set_stale(None)
        if getattr(preview, "kind", "image") == "points":
            self._show_points(preview)
        else:
            self._show_images(preview)
        self._update_buttons()

    def set_zoomed(self, on: bool) -> None:
        """Zoomed: only the title, the stale note and the grid (or scatter) are shown."""
        self.zoomed = bool(on)
        self.zoom_button.blockSignals(True)
        self.zoom_button.setChecked(self.zoomed)
        self.zoom_button.blockSignals(False)
        self._sync_extras()

    def _sync_extras(self) -> None:
        """The strip, its caption and the statistics line show unless zoomed (the strip only
        beside a grid of images)."""
        images = self.stack.currentWidget() is self.grid_view
        self.strip.setVisible(not self.zoomed and images)
        self.strip_caption.setVisible(not self.zoomed)
        self.stats.setVisible(not self.zoomed)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if obj is self.grid_view and event.type() == QEvent.Type.MouseButtonDblClick:
            self.enlarge()
            return True
        return super().eventFilter(obj, event)

    def set_stale(self, reason: str | None) -> None:
        """Mark what is shown as no longer matching the settings (``reason`` says why), or not."""
        self.stale_label.setText(f"Stale: {reason}" if reason else "")
        self.stale_label.setToolTip("Train on this data, or load and sample a checkpoint of it, for samples "
                                    "that belong to it." if reason else "")
        self.stale_label.setVisible(bool(reason))

    @property
    def stale(self) -> bool:
        """The shown preview no longer matches the settings (a note says why)."""
        return bool(self.stale_label.text())

    def enlarge(self):
        """The sample grid in its own resizable window that follows the new previews (None when
        there is no grid). An open window that still follows is brought forward instead of a second."""
        image = self.grid_view.image
        if image is None or self.stack.currentWidget() is not self.grid_view:
            return None
        live = next((w for w in self.windows if w.following()), None)
        if live is not None:
            live.raise_()
            live.activateWindow()
            return live
        window = ImageWindow(image, self.title.text() or "Samples", parent=self, follow=True)
        window.destroyed.connect(lambda _o=None, w=window: self._forget_window(w))
        self.windows.append(window)
        window.show()
        return window

    def _forget_window(self, window) -> None:
        self.windows = [w for w in self.windows if w is not window]

    def save_dialog(self) -> str | None:
        """Ask for a file and save the sample grid as PNG; its path, or None when cancelled or empty."""
        image = self.grid_view.image
        if image is None:
            return None
        path, _ = QFileDialog.getSaveFileName(self, "Save the sample grid", "samples.png", "PNG image (*.png)")
        return save_png(image, path) if path else None

    def _update_buttons(self) -> None:
        has_grid = self.grid_view.image is not None and self.stack.currentWidget() is self.grid_view
        self.enlarge_button.setVisible(has_grid)
        self.save_button.setVisible(has_grid)

    def clear(self, placeholder: str) -> None:
        """Show nothing but ``placeholder``."""
        self.preview = None
        self.title.setText("")
        self.stats.setText("")
        self.set_stale(None)
        self.stack.setCurrentWidget(self.grid_view)
        self.grid_view.clear(placeholder)
        self.strip.clear("")
        self.strip_caption.setText("")
        self._sync_extras()
        self._update_buttons()

    def _show_images(self, preview) -> None:
        self.stack.setCurrentWidget(self.grid_view)
        self.grid_view.set_image(preview.grid)
        for window in self.windows:
            window.show_image(self.grid_view.image, self.title.text() or "Samples")
        self._sync_extras()
        strip = trajectory_strip(preview.trajectory)
        if strip is None:
            self.strip.clear("")
            self.strip_caption.setText("")
            return
        image, times = strip
        self.strip.set_image(image)
        self.strip_caption.setText("Sample 1 across the steps — top: x_t, bottom: the predicted clean image x̂0; "
                                   "t = " + ", ".join(f"{t:.2f}" for t in times))

    def _show_points(self, preview) -> None:
        self.stack.setCurrentWidget(self.points_plot)
        pts = np.asarray(preview.samples if getattr(preview, "points", None) is None else preview.points)
        self.sample_scatter.setData(pts[:, 0], pts[:, 1])
        traj = getattr(preview, "trajectory", None) or []
        if traj:
            xt = np.array([np.asarray(f[1]).reshape(-1)[:2] for f in traj] + [pts[0]])
            x0 = np.array([np.asarray(f[2]).reshape(-1)[:2] for f in traj])
            self.path_xt.setData(xt[:, 0], xt[:, 1])
            self.path_x0.setData(x0[:, 0], x0[:, 1])
        else:
            self.path_xt.setData([], [])
            self.path_x0.setData([], [])
        self.strip.clear("")
        self._sync_extras()
        self.strip_caption.setText("Grey: the data. Blue: samples. Red: the path x_t of sample 1; "
                                   "dashed green: its predicted x̂0 at each step.")


class SamplingPanel(QWidget):
    """Edits ``sampling.*`` and shows the Model preview (the run's, or a loaded checkpoint's "Sample
    now") beside the Oracle preview; see the module doc. ``oracleUpdated``, ``previewShown`` and
    ``checkpointLoaded`` report what was shown or loaded."""
    oracleUpdated = Signal(object)  # the OraclePreview shown
    previewShown = Signal(object)  # a model Preview shown
    checkpointLoaded = Signal(str)
    previewZoomChanged = Signal(bool)  # the previews were zoomed (True) or put back (False)

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.loaded = None  # engine.sampling.Loaded
        self.last_oracle = None
        self.last_preview = None
        self._preview_config = None  # the config of the run or checkpoint that made last_preview
        self._preview_source = ""
        self.marker = FieldMarker()
        self._data_brightness_std: float | None = None
        self._oracle_stats_source: str | None = None
        self.oracle_runner = LatestRunner(self)
        self.sample_runner = LatestRunner(self)
        self.load_runner = LatestRunner(self)
        self._oracle_timer = QTimer(self, singleShot=True, interval=ORACLE_DELAY_MS)
        self._oracle_timer.timeout.connect(self.refresh_oracle)
        self._build()
        self.oracle_runner.finished.connect(self._on_oracle)
        self.oracle_runner.failed.connect(self._on_oracle_failed)
        self.sample_runner.finished.connect(self._on_sampled)
        self.sample_runner.failed.connect(lambda m: self._set_model_status(f"Sampling failed: {m}", error=True))
        self.sample_runner.busyChanged.connect(lambda _b: self._update_buttons())
        self.load_runner.finished.connect(self._on_loaded)
        self.load_runner.failed.connect(lambda m: self._set_model_status(f"Could not load the checkpoint: {m}", error=True))
        state.configChanged.connect(self._on_config_changed)
        state.validityChanged.connect(self.marker.apply)
        state.datasetChanged.connect(self._on_dataset)
        self._sync()
        self.marker.apply(state.errors)
        self._on_dataset(state.dataset)
        self._schedule_oracle()

    # ================================================================ widgets
    def _build(self) -> None:
        self.sampler_combo = QComboBox()
        model = QStandardItemModel(self.sampler_combo)
        self.sampler_combo.setModel(model)
        for kind, header in (("ODE", "ODE — deterministic"), ("SDE", "SDE — adds noise each step")):
            self.sampler_combo.addItem(header, None)
            model.item(self.sampler_combo.count() - 1).setEnabled(False)
            for name, info in SAMPLERS.items():
                if info.kind == kind:
                    self.sampler_combo.addItem(f"    {info.label}", name)
                    self.sampler_combo.setItemData(self.sampler_combo.count() - 1, H.SAMPLER_TIPS.get(name, ""),
                                                   Qt.ItemDataRole.ToolTipRole)
        set_tooltip(self.sampler_combo, "How to walk from noise to data. ODE samplers are deterministic; SDE "
                                        "samplers add fresh noise. Any of them works with any prediction.")
        self.eta = NumberBox(0.0, 1.0, digits=4)
        set_tooltip(self.eta, "η: how much fresh noise DDIM adds (0 = deterministic DDIM, 1 = DDPM).")
        self.eta_label = QLabel("η")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 100_000)
        set_tooltip(self.steps_spin, H.FIELD_TIPS["steps"])
        self.spacing_combo = QComboBox()
        set_tooltip(self.spacing_combo, H.FIELD_TIPS["spacing"] + " Shared with the Schedule panel.")
        self.guidance = NumberBox(0.0, 100.0, digits=4)
        set_tooltip(self.guidance, H.CFG_TIP)
        self.rescale = NumberBox(0.0, 1.0, digits=4)
        set_tooltip(self.rescale, H.RESCALE_TIP)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        set_tooltip(self.seed_spin, "The same seed gives the same start noise, so previews are comparable "
                                    "from step to step and between settings.")
        self.count_spin = QSpinBox()
        self.count_spin.setRange(0, 4096)
        set_tooltip(self.count_spin, "How many samples to draw.")
        self.cfg_note = QLabel()
        self.cfg_note.setWordWrap(True)
        self.cfg_note.setStyleSheet("color: #555; font-size: 9pt;")

        form = QFormLayout()
        form.addRow("Sampler", self.sampler_combo)
        form.addRow(self.eta_label, self.eta)
        steps_row = QHBoxLayout()
        steps_row.addWidget(self.steps_spin, 1)
        steps_row.addWidget(QLabel("spacing"))
        steps_row.addWidget(self.spacing_combo, 2)
        form.addRow("Steps", steps_row)
        cfg_row = QHBoxLayout()
        cfg_row.addWidget(self.guidance, 1)
        cfg_row.addWidget(QLabel("rescale φ"))
        cfg_row.addWidget(self.rescale, 1)
        form.addRow("CFG scale", cfg_row)
        form.addRow(self.cfg_note)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(QLabel("samples"))
        seed_row.addWidget(self.count_spin, 1)
        form.addRow("Seed", seed_row)
        box = QGroupBox("Sampler")
        box.setLayout(form)

        # ---- model tab
        self.model_view = PreviewView("No samples yet. Start training (previews appear here as it runs), "
                                      "or load a checkpoint and press Sample now.")
        self.checkpoint_label = QLabel("")
        self.checkpoint_label.setWordWrap(True)
        self.checkpoint_label.setStyleSheet("color: #555;")
        self.checkpoint_label.setVisible(False)  # only says something once a checkpoint is involved
        self.load_button = QPushButton("Load checkpoint…")
        self.load_button.setToolTip("A run folder or one of its checkpoint folders")
        self.sample_button = QPushButton("Sample now")
        self.sample_button.setToolTip("Sample from the loaded checkpoint with the settings above (in the background)")
        self.load_button.clicked.connect(self._browse_checkpoint)
        self.sample_button.clicked.connect(self.sample_now)
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.sample_button)
        buttons.addStretch(1)
        model_tab = QWidget()
        mv = QVBoxLayout(model_tab)
        mv.setContentsMargins(2, 2, 2, 2)
        mv.addLayout(buttons)
        mv.addWidget(self.checkpoint_label)
        self.model_stats = _stats_view(self.state)
        self.model_split = _with_stats(self.model_view, self.model_stats)
        mv.addWidget(self.model_split, 1)

        # ---- oracle tab
        self.oracle_view = PreviewView("Computing…")
        self.oracle_live = QCheckBox("Live")
        self.oracle_live.setChecked(True)
        self.oracle_live.setToolTip("Recompute after every edit. " + H.ORACLE_TIP)
        self.oracle_live.toggled.connect(lambda on: on and self._schedule_oracle())
        self.oracle_info = QLabel()
        self.oracle_info.setWordWrap(True)
        self.oracle_info.setStyleSheet("color: #444;")
        self.oracle_info.setToolTip(H.ORACLE_TIP)
        self.oracle_warning = QLabel()
        self.oracle_warning.setWordWrap(True)
        self.oracle_warning.setStyleSheet(WARNING_STYLE)
        self.oracle_warning.setVisible(False)
        self.use_buttons = {}
        use_row = QHBoxLayout()
        for source in ORACLE_SOURCES:
            b = QPushButton(f"Use {source}")
            b.setToolTip(f"Switch the dataset to '{source}', whose exact denoiser is known")
            b.clicked.connect(lambda _c=False, s=source: self.state.update("data", source=s))
            self.use_buttons[source] = b
            use_row.addWidget(b)
        use_row.addStretch(1)
        use_row.insertWidget(0, self.oracle_live)
        oracle_tab = QWidget()
        ov = QVBoxLayout(oracle_tab)
        ov.setContentsMargins(2, 2, 2, 2)
        ov.addWidget(self.oracle_info)
        ov.addLayout(use_row)
        ov.addWidget(self.oracle_warning)
        self.oracle_stats = _stats_view(None)
        self.oracle_split = _with_stats(self.oracle_view, self.oracle_stats)
        ov.addWidget(self.oracle_split, 1)

        self.tabs = QTabWidget()
        self.tabs.addTab(model_tab, "Model")
        self.tabs.addTab(oracle_tab, "Oracle (perfect model)")
        self.tabs.setTabToolTip(1, H.ORACLE_TIP)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(box)
        layout.addWidget(self.tabs, 1)

        self.preview_zoomed = False
        self._unzoomed_sizes: dict[int, list[int]] = {}
        for view in (self.model_view, self.oracle_view):
            view.zoomToggled.connect(self.set_preview_zoom)
        self.unzoom_shortcut = QShortcut(QKeySequence(Qt.Key.Key_Escape), self, lambda: self.set_preview_zoom(False),
                                         context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.unzoom_shortcut.setEnabled(False)  # Escape means nothing here unless zoomed

        for name, widget in (("sampling.sampler", self.sampler_combo), ("sampling.eta", self.eta),
                             ("sampling.guidance_scale", self.guidance),
                             ("sampling.guidance_rescale", self.rescale), ("sampling.seed", self.seed_spin),
                             ("sampling.num_samples", self.count_spin)):
            describe_editor(widget, name)  # steps and spacing are named on the Schedule panel
        self.marker.add("sampling.seed", self.seed_spin)
        self.marker.add("sampling.sampler", self.sampler_combo)
        self.marker.add("sampling.steps", self.steps_spin)
        self.marker.add("sampling.spacing", self.spacing_combo)
        self.marker.add("sampling.eta", self.eta)
        self.marker.add("sampling.guidance_scale", self.guidance)
        self.marker.add("sampling.guidance_rescale", self.rescale)
        self.marker.add("sampling.num_samples", self.count_spin)

        self.sampler_combo.currentIndexChanged.connect(self._sampler_chosen)
        self.eta.valueChanged.connect(lambda v: self._set(eta=float(v)))
        self.steps_spin.valueChanged.connect(lambda v: self._set(steps=int(v)))
        self.spacing_combo.currentIndexChanged.connect(
            lambda _i: self.spacing_combo.currentData() and self._set(spacing=self.spacing_combo.currentData()))
        self.guidance.valueChanged.connect(lambda v: self._set(guidance_scale=float(v)))
        self.rescale.valueChanged.connect(lambda v: self._set(guidance_rescale=float(v)))
        self.seed_spin.valueChanged.connect(lambda v: self._set(seed=int(v)))
        self.count_spin.valueChanged.connect(lambda v: self._set(num_samples=int(v)))

    def _set(self, **values) -> None:
        self.state.update("sampling", **values)

    def set_preview_zoom(self, on: bool) -> None:
        """Zoom both previews (model and oracle): the sample grid or scatter takes the room of the
        trajectory strip, the captions and the brightness histogram, which come back, at the
        sizes they had, when ``on`` is False. Emits ``previewZoomChanged`` on a change."""
        on = bool(on)
        for view in (self.model_view, self.oracle_view):
            view.set_zoomed(on)
        if on == self.preview_zoomed:
            return
        self.preview_zoomed = on
        for split in (self.model_split, self.oracle_split):
            if not isinstance(split, QSplitter):
                continue
            if on:
                self._unzoomed_sizes[id(split)] = split.sizes()
                split.setSizes([sum(split.sizes()) or 1, 0])
            else:
                sizes = self._unzoomed_sizes.pop(id(split), None)
                if not sizes or min(sizes) <= 0:  # the histogram was hidden (2-D points) or closed
                    sizes = [1000 * share for share in STATS_SHARE]
                split.setSizes(sizes)
        self.unzoom_shortcut.setEnabled(on)
        self.previewZoomChanged.emit(on)

    def _sampler_chosen(self, _index: int) -> None:
        name = self.sampler_combo.currentData()
        if name:
            self._set(sampler=name)

    # ================================================================== sync
    def _on_config_changed(self, section: str) -> None:
        if section in ("data", "all"):
            self._refresh_staleness()
        if section in ("sampling", "schedule", "all"):
            self._sync()
        elif section in ("data", "model"):
            self._update_guidance()
        if section in ("sampling", "schedule", "objective", "data", "all"):
            self._schedule_oracle()
        self._update_buttons()

    def _sync(self) -> None:
        cfg = self.state.config
        s = cfg.sampling
        widgets = (self.sampler_combo, self.eta, self.steps_spin, self.spacing_combo, self.guidance,
                   self.rescale, self.seed_spin, self.count_spin)
        for w in widgets:
            w.blockSignals(True)
        try:
            index = self.sampler_combo.findData(s.sampler)
            if index < 0:
                self.sampler_combo.addItem(f"{s.sampler} (unknown)", s.sampler)
                index = self.sampler_combo.count() - 1
            self.sampler_combo.setCurrentIndex(index)
            self.sampler_combo.setToolTip(H.SAMPLER_TIPS.get(s.sampler, ""))
            has_eta = (s.sampler in SAMPLERS and SAMPLERS[s.sampler].has_eta) or bool(self.state.errors_for("sampling.eta"))
            self.eta.setVisible(has_eta)
            self.eta_label.setVisible(has_eta)
            for box, value in ((self.eta, s.eta), (self.guidance, s.guidance_scale), (self.rescale, s.guidance_rescale)):
                if isinstance(value, (int, float)) and abs(box.value() - value) > 1e-12:
                    box.setValue(value)
            for spin, value in ((self.steps_spin, s.steps), (self.seed_spin, s.seed), (self.count_spin, s.num_samples)):
                if isinstance(value, int) and spin.value() != value:
                    spin.setValue(value)
            fill_spacing_combo(self.spacing_combo, cfg.schedule.family, s.spacing)
        finally:
            for w in widgets:
                w.blockSignals(False)
        self._update_guidance()

    def has_classes(self) -> bool:
        """Guidance and class choice apply: the data have classes and the run is class-conditional."""
        ds = self.state.dataset
        cfg = self.state.config
        return (ds is not None and getattr(ds, "num_classes", 0) > 0 and bool(cfg.data.labels)
                and bool(cfg.model.class_conditional))

    def _update_guidance(self) -> None:
        on = self.has_classes()
        self.guidance.setEnabled(on)
        self.rescale.setEnabled(on)
        self.cfg_note.setText("" if on else "Guidance needs a dataset with classes and a class-conditional "
                                            "model (Dataset panel: 'use class labels').")
        self.cfg_note.setVisible(not on)

    def _on_dataset(self, dataset) -> None:
        self._update_guidance()
        points = None
        self._data_brightness_std = None
        if dataset is not None and getattr(dataset, "kind", "") == "points":
            points = dataset.x[:DATA_POINTS_SHOWN].numpy()
        elif dataset is not None and getattr(dataset, "kind", "") == "image" and len(dataset) > 1:
            stats = self.state.image_stats() if dataset is self.state.dataset else None
            if stats is not None:  # computed in chunks on the loading thread (data/stats.py)
                self._data_brightness_std = float(np.std(stats.means, ddof=1))
        self.model_view.set_data_points(points)
        if self.model_stats is not None:
            self.model_stats.setVisible(dataset is None or getattr(dataset, "kind", "image") == "image")
        self._refresh_staleness()
        self._update_buttons()

    # ================================================================ oracle
    def _oracle_source(self) -> str | None:
        source = self.state.config.data.source
        return source if has_oracle(source) else None

    def _schedule_oracle(self) -> None:
        source = self._oracle_source()
        for name, button in self.use_buttons.items():
            button.setVisible(name != source)
        if source is None:
            self._oracle_timer.stop()
            self.last_oracle = None
            self.oracle_info.setText(
                "The exact denoiser is known for 'gaussians8' (a Gaussian mixture) and 'lighting-flat' "
                "(flat images of every brightness). With one of them, this tab shows — instantly, before "
                "any training — what a perfect model would produce under the current schedule, spacing, "
                "prediction and steps.")
            self.oracle_view.clear("Choose gaussians8 or lighting-flat to see the oracle.")
            self.oracle_warning.setVisible(False)
            return
        self.oracle_info.setText(f"What a perfect model of '{source}' samples with these settings "
                                 "(exact denoiser, no training).")
        if self.last_preview is None:
            self.tabs.setCurrentIndex(1)  # nothing from a model yet: show the oracle
        if self.oracle_live.isChecked():
            self._oracle_timer.start()

    def refresh_oracle(self) -> None:
        """Recompute the oracle preview in the background (the newest request wins)."""
        self._oracle_timer.stop()
        source = self._oracle_source()
        if source is None:
            return
        config = self.state.config
        if any(f.startswith(("schedule.", "sampling.", "objective.")) for f, _ in self.state.errors):
            self.oracle_view.title.setText("Fix the marked settings to see the oracle preview.")
            return
        kind = "points" if source == "gaussians8" else "image"
        n, shown = oracle_counts(config.sampling.num_samples, kind)
        seed = int(config.sampling.seed)
        self._oracle_config = config  # the newest request's result is the only one shown
        self.oracle_runner.submit(lambda: oracle_preview(config, n=n, seed=seed, grid_count=shown))

    def _on_oracle(self, preview) -> None:
        self.last_oracle = preview
        if self._oracle_source() is None:
            return
        what = "brightness" if preview.kind == "image" else "per-axis position"
        stats = (f"Spread of the samples' {what}: <b>{preview.spread:.2f}</b> × the data's "
                 f"(1.00 = the full range; {len(preview.samples)} samples).")
        config = self._oracle_config or self.state.config  # the advice is in the histogram's summary
        self.oracle_view.show_preview(preview, preview.title, stats)
        if self.oracle_stats is not None:
            self.oracle_stats.setVisible(preview.kind == "image")
            self._oracle_stats_data(config_source=self._oracle_source())
            self.oracle_stats.update_preview(preview, config)
        if preview.kind == "points":
            self.oracle_view.set_data_points(_gaussians8_reference())
        self.oracle_warning.setText("\n".join("⚠ " + w for w in preview.warnings))
        self.oracle_warning.setVisible(bool(preview.warnings))
        self.oracleUpdated.emit(preview)

    def _oracle_stats_data(self, config_source: str | None) -> None:
        """The oracle's histogram compares with the exact data distribution (not the loaded set)."""
        if config_source != "lighting-flat" or self._oracle_stats_source == config_source:
            return
        from diffstudio.data.registry import load_dataset

        self.oracle_stats.set_dataset(load_dataset("lighting-flat", resolution=4, n=4096))
        self._oracle_stats_source = config_source

    def _on_oracle_failed(self, message: str) -> None:
        self.oracle_view.title.setText(f"No oracle preview: {message}")

    # ================================================================= model
    def show_preview(self, preview, source: str = "training", config=None) -> None:
        """Show an engine Preview from training (``source="training"``) or sampled from a
        checkpoint (``"checkpoint"``). ``config``: the config of the run or checkpoint that made
        it (default: the loaded checkpoint's, or the current settings); its data decides when the
        preview goes stale, and the brightness advice judges it."""
        if self.last_preview is None:
            self.tabs.setCurrentIndex(0)  # the first model result comes forward (later ones: the user's tab)
        if config is None:
            config = self.loaded.config if source == "checkpoint" and self.loaded is not None else self.state.config
        self.last_preview = preview
        self._preview_config = config
        self._preview_source = source
        step = getattr(preview, "step", 0)
        title = {"training": f"Training preview at step {step:,}",
                 "checkpoint": f"Sampled from the checkpoint (step {step:,})"}.get(source, source)
        stats = ""
        means = getattr(preview, "mean_brightness", None)
        if means is not None and len(means) > 1:
            stats = f"Brightness spread (std) of the samples: <b>{np.std(means):.3f}</b>"
            if self._data_brightness_std:
                stats += f" vs the data's {self._data_brightness_std:.3f}"
        warns = getattr(preview, "warnings", None) or []
        if warns:
            stats += "<br><span style='color:#8a3b00'>⚠ " + "<br>⚠ ".join(warns) + "</span>"
        self.model_view.show_preview(preview, title, stats)
        if self.model_stats is not None:
            self.model_stats.setVisible(getattr(preview, "kind", "image") == "image")
            self.model_stats.update_preview(preview, config)
        self._refresh_staleness()
        self.previewShown.emit(preview)

    def start_new_run(self, config=None) -> None:
        """A new run started: the previous run's samples, statistics and advice are its own, not
        this run's, so they are cleared until this run's first preview arrives."""
        if self.last_preview is None or self._preview_source != "training":
            return
        every = getattr(getattr(config, "run", None), "preview_every", None)
        when = f" (every {every:,} steps)" if isinstance(every, int) else ""
        self.last_preview = None
        self._preview_config = None
        self.model_view.clear(f"A new run started: its first preview appears here{when}.")
        if self.model_stats is not None:
            self.model_stats.clear_samples("A new run started: its brightness statistics appear with its first "
                                           "preview.")

    def stale_reason(self) -> str | None:
        """Why the model preview no longer matches the data (None when it does, or there is none)."""
        made = getattr(self, "_preview_config", None)
        if self.last_preview is None or made is None:
            return None
        if data_key(made) == data_key(self.state.config):
            return None
        return f"made by a model of {describe_data(made)}; the dataset is now {describe_data(self.state.config)}."

    def _refresh_staleness(self) -> None:
        reason = self.stale_reason()
        self.model_view.set_stale(reason)
        stats = self.model_stats
        if stats is None:
            return
        if reason is not None and stats.stale_reason != reason:
            stats.clear_samples("No sample statistics: " + reason, stale_reason=reason)
        elif reason is None and stats.stale_reason is not None and self.last_preview is not None:
            stats.update_preview(self.last_preview, self._preview_config)  # the data matches again

    def load_checkpoint(self, path: str) -> None:
        """Load a run or checkpoint folder for Sample now (in the background)."""
        self._set_model_status(f"Loading {path}…")

        def load():
            from diffstudio.engine.sampling import load_for_sampling

            return load_for_sampling(path, device="cpu")

        self.load_runner.submit(load)

    def _on_loaded(self, loaded) -> None:
        self.loaded = loaded
        self._set_model_status(self._loaded_text())
        self._update_buttons()
        self.checkpointLoaded.emit(str(loaded.path))

    def _browse_checkpoint(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Load a run or checkpoint folder",
                                                self.state.config.run.out_dir)
        if path:
            self.load_checkpoint(path)

    def sample_now(self) -> None:
        """Sample the loaded checkpoint with the current sampling settings off the UI thread (nothing when none is loaded)."""
        if self.loaded is None:
            return
        loaded, sampling = self.loaded, self.state.config.sampling

        def run():
            from diffstudio.engine.latents import decoded_if_latent
            from diffstudio.engine.sampling import generate

            preview = generate(loaded.model, loaded.config, loaded.data_info, n=sampling.num_samples,
                               seed=sampling.seed, sampling=sampling, step=loaded.step)
            return decoded_if_latent(preview, loaded.config)  # a latent run shows images, not latents

        self._set_model_status("Sampling…")
        self.sample_runner.submit(run)
        self._update_buttons()

    def _loaded_text(self) -> str:
        loaded = self.loaded
        if loaded is None:
            return ""
        return (f"Checkpoint: {loaded.path} (step {loaded.step:,}); Sample now uses its schedule and "
                "prediction with the sampler settings above.")

    def _on_sampled(self, preview) -> None:
        self._set_model_status(self._loaded_text())  # "Sampling…" ends with the sampling
        self.show_preview(preview, source="checkpoint")

    def _set_model_status(self, text: str, error: bool = False) -> None:
        self.checkpoint_label.setText(text)
        self.checkpoint_label.setVisible(bool(text))
        self.checkpoint_label.setStyleSheet("color: #b00020;" if error else "color: #555;")

    def _update_buttons(self) -> None:
        self.sample_button.setEnabled(self.loaded is not None and not self.sample_runner.busy)

    def shutdown(self) -> None:
        """Wait for background work (closing the window)."""
        self._oracle_timer.stop()
        for runner in (self.oracle_runner, self.sample_runner, self.load_runner):
            runner.shutdown()


_G8_CACHE: list = []


def _gaussians8_reference() -> np.ndarray:
    """Points of the gaussians8 data for the oracle's scatter (when no dataset is loaded)."""
    if not _G8_CACHE:
        from diffstudio.data.toys import make_toy

        _G8_CACHE.append(make_toy("gaussians8", DATA_POINTS_SHOWN, seed=1).x.numpy())
    return _G8_CACHE[0]


def _stats_view(state):
    """The runs module's brightness histogram (samples over data), if it can be imported."""
    try:
        from diffstudio.gui.runs import SampleStatsView
    except Exception:  # noqa: BLE001 - optional
        return None
    view = SampleStatsView(state)
    view.setMinimumHeight(90)
    return view


def _with_stats(preview: QWidget, stats: QWidget | None) -> QWidget:
    if stats is None:
        return preview
    splitter = QSplitter(Qt.Orientation.Vertical)
    splitter.addWidget(preview)
    splitter.addWidget(stats)
    splitter.setStretchFactor(0, STATS_SHARE[0])
    splitter.setStretchFactor(1, STATS_SHARE[1])
    splitter.setChildrenCollapsible(True)
    splitter.setSizes([1000 * share for share in STATS_SHARE])
    return splitter
