"""The schedule editor: family and parameters, zero terminal SNR, sampling steps and spacing, with
live plots of log-SNR(t), alpha_t and sigma_t, the sampler's timesteps marked on them, the
terminal signal in large type, a dashed reference schedule and what the model sees at t = 1.

All numbers come from :mod:`diffstudio.core` (``make_schedule`` via the config, ``sampling_grid``,
``add_noise``); the panel only lays them out. Plot items are created once and updated with
``setData`` on every edit. The custom family's log-SNR control points are dragged on the plot.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from diffstudio.core.grids import sampling_grid
from diffstudio.core.parameterization import Coefficients
from diffstudio.core.terminal import LEAK_GAIN, leaked_signal, low_frequencies, terminal_sample
from diffstudio.core.schedules import (
    DEFAULT_BETAS,
    DISCRETE_FAMILIES,
    FAMILIES,
    CustomSchedule,
    Schedule,
    ScheduleError,
    make_schedule,
)
from diffstudio.engine.advice import format_percent
from diffstudio.gui import help as H
from diffstudio.gui.latent_thumbnails import LatentThumbnails
from diffstudio.gui.widgets.draggable import DraggablePoints
from diffstudio.gui.widgets.field import FieldMarker, NumberBox, set_tooltip
from diffstudio.gui.widgets.settings_form import describe_editor, edited_signal, info, make_editor, set_editor_value
from diffstudio.gui.widgets.image_view import ImageView, unit_to_uint8
from diffstudio.gui.widgets.spacing import fill_spacing_combo, spacings_for
from diffstudio.gui.widgets.plots import (
    EDITED,
    MARKER,
    REFERENCE,
    SIGMA,
    SimplifiedCurve,
    cache_axes,
    cache_rendering,
    fix_range,
    pen,
    plot_widget,
)

CURVE_POINTS = 1000  # the fixed t-grid has CURVE_POINTS + 1 points, 0 and 1 included
THUMB_SEED = 0
MIN_GAP_T = 0.01  # custom points: closest two control points may come in t
MIN_GAP_LAMBDA = 0.05  # ... and in log-SNR
LAMBDA_LIMIT = 20.0  # custom points stay within +-20 log-SNR
PAGES = {"beta": 0, "flow": 1, "cosine": 2, "edm": 3, "custom": 4}
RANGE_PADDING = 0.04  # plots: room around the data for the markers
RANGE_SLACK = 1.5  # the log-SNR axis keeps its range while the data span at least 1/RANGE_SLACK of it


def page_of(family: str) -> int:
    """The index of the parameter page that edits ``family`` (all beta families share one)."""
    if family in DISCRETE_FAMILIES:
        return PAGES["beta"]
    return PAGES.get(family, PAGES["cosine"])


def nice_range(lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] widened to multiples of a round step (1, 2 or 5 times a power of ten, the finest
    that makes at most twelve steps): -15.44, 7.07 -> -16, 8."""
    span = max(hi - lo, 1e-9)
    step = 10.0 ** np.floor(np.log10(span))
    for factor in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0):
        if span / (factor * step) <= 12:
            step *= factor
            break
    return float(np.floor(lo / step) * step), float(np.ceil(hi / step) * step)


def keeps_range(current: tuple[float, float] | None, lo: float, hi: float) -> bool:
    """Whether an axis showing ``current`` can stay as it is for data in [lo, hi]: the data fit
    and fill enough of it (small edits then leave the axis, and its tick labels, alone)."""
    if current is None or lo < current[0] or hi > current[1]:
        return False
    return (current[1] - current[0]) <= RANGE_SLACK * max(hi - lo, 1e-9)


def test_image(size: int = 64) -> torch.Tensor:
    """A built-in RGB test picture in [-1, 1], (3, size, size): a black-to-white gradient with a
    red disc on the dark side and a blue one on the bright side (brightness is what leaks)."""
    u = torch.linspace(-1.0, 1.0, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    img = xx.expand(3, size, size).clone()
    for cx, colour in ((-0.45, (0.9, -0.8, -0.8)), (0.45, (-0.8, -0.5, 0.9))):
        disc = (xx - cx) ** 2 + yy**2 < 0.3**2
        for c in range(3):
            img[c][disc] = colour[c]
    return img


class HeightHold(QObject):
    """Keeps a widget from shrinking in height while its texts change: each shrink and regrow of
    the readout would resize, and so fully repaint, the plots below it. A new width releases it."""

    def __init__(self, widget: QWidget):
        super().__init__(widget)
        self.widget = widget
        widget.installEventFilter(self)

    def hold(self) -> None:
        """Keep the widget at least as tall as it is now (while visible)."""
        if self.widget.isVisible():
            self.widget.setMinimumHeight(max(self.widget.minimumHeight(), self.widget.height()))

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.Resize and event.oldSize().width() != event.size().width():
            self.widget.setMinimumHeight(0)
        return False


class SchedulePanel(QWidget):
    """Controls (``self.controls``) and plots (``self.view``); with ``embed_view=False`` the view is
    left for the main window to place (e.g. as its central widget)."""

    redrawn = Signal(float)  # milliseconds the last redraw took
    thumbsDecoded = Signal()  # the latent thumbnails (data.vae) were decoded and shown

    def __init__(self, state, parent=None, *, embed_view: bool = True):
        super().__init__(parent)
        self.state = state
        self.t_grid = torch.linspace(0.0, 1.0, CURVE_POINTS + 1, dtype=torch.float64)
        self.schedule: Schedule | None = None
        self.grid: torch.Tensor | None = None
        self.terminal_signal: float | None = None
        self.terminal_snr: float | None = None
        self.last_redraw_ms = 0.0
        self._reference_cache: dict[str, tuple | None] = {}  # key -> (alpha, sigma, log-SNR, terminal)
        self._thumb_source: torch.Tensor | None = None
        self._thumb_noise: torch.Tensor | None = None
        self._drawn: dict[str, object] = {}  # what each part was last drawn from (skip unchanged)
        self._lambda_range: tuple[float, float] | None = None  # the log-SNR axis, set explicitly
        self._lambda_bounds: dict[str, tuple[float, float] | None] = {}  # repr(schedule config) -> bounds
        self._selected_point: int | None = None
        self._latent_text = ""
        self._thumb_name = ""  # whose image the thumbnails show (the caption's first words)
        self.latents = LatentThumbnails(self)  # with data.vae: the image as the model sees it, latents
        self.latents.changed.connect(self._on_latents_changed)
        self.latents.decoded.connect(self._show_decoded)
        self.marker = FieldMarker()
        self.controls = self._build_controls()
        self.view = self._build_view()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        if embed_view:
            splitter = QSplitter(Qt.Orientation.Horizontal)
            splitter.addWidget(self.controls)
            splitter.addWidget(self.view)
            splitter.setStretchFactor(1, 1)
            layout.addWidget(splitter)
        else:
            layout.addWidget(self.controls)
        state.configChanged.connect(self._on_config_changed)
        state.validityChanged.connect(self._on_validity)
        state.flipTimeChanged.connect(lambda _flip: self.redraw())
        state.datasetChanged.connect(self._on_dataset)
        self._on_dataset(state.dataset, redraw=False)
        self._sync_controls()
        self._on_validity(state.errors)
        self.redraw()

    # ================================================================= controls
    def _build_controls(self) -> QWidget:
        self.family_combo = QComboBox()
        _compact(self.family_combo)
        for family in FAMILIES:
            self.family_combo.addItem(H.FAMILY_LABELS.get(family, family), family)
            self.family_combo.setItemData(self.family_combo.count() - 1, H.FAMILY_TIPS.get(family, ""),
                                          Qt.ItemDataRole.ToolTipRole)
        set_tooltip(self.family_combo, H.FIELD_TIPS["family"])
        self.family_note = QLabel()
        self.family_note.setWordWrap(True)
        self.family_note.setStyleSheet("color: #555;")

        self.beta_start = NumberBox(0.0, 1.0)
        self.beta_end = NumberBox(0.0, 1.0)
        self.num_train_timesteps = QSpinBox()
        self.num_train_timesteps.setRange(1, 100_000)
        self.num_train_timesteps.setSingleStep(100)
        self.shift = NumberBox(0.0, 100.0, digits=4)
        self.sigma_min = NumberBox(0.0, 1e6)
        self.sigma_max = NumberBox(0.0, 1e6)
        self.rho = NumberBox(0.0, 100.0, digits=4)
        for name in ("beta_start", "beta_end", "num_train_timesteps", "shift", "sigma_min", "sigma_max", "rho"):
            set_tooltip(getattr(self, name), H.FIELD_TIPS[name])

        self.params_stack = QStackedWidget()
        self.params_stack.addWidget(self._form(("beta_start", self.beta_start), ("beta_end", self.beta_end),
                                               ("T (train steps)", self.num_train_timesteps)))
        self.params_stack.addWidget(self._form(("shift", self.shift)))
        self.params_stack.addWidget(self._note_page("No parameters: α = cos(πt/2), σ = sin(πt/2)."))
        self.params_stack.addWidget(self._form(("sigma_min", self.sigma_min), ("sigma_max", self.sigma_max),
                                               ("rho", self.rho)))
        self.params_stack.addWidget(self._custom_page())
        self.params_stack.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

        self.ztsnr_check = QCheckBox("Zero terminal SNR (rescale, Lin et al.)")
        set_tooltip(self.ztsnr_check, H.FIELD_TIPS["ztsnr"])

        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 100_000)
        set_tooltip(self.steps_spin, H.FIELD_TIPS["steps"])
        self.spacing_combo = QComboBox()
        set_tooltip(self.spacing_combo, H.FIELD_TIPS["spacing"])
        self.sampling_shift = NumberBox(0.0, 100.0, digits=4)
        set_tooltip(self.sampling_shift, H.FIELD_TIPS["sampling_shift"])
        self.sampling_shift_label = QLabel("spacing shift")

        self.reference_combo = QComboBox()
        _compact(self.reference_combo)
        for key, (label, _kw) in H.REFERENCES.items():
            self.reference_combo.addItem(label, key)
        set_tooltip(self.reference_combo, H.FIELD_TIPS["reference"])

        schedule_box = QGroupBox("Noise schedule")
        form = QFormLayout()
        form.addRow("Family", self.family_combo)
        box_layout = QVBoxLayout(schedule_box)
        box_layout.addLayout(form)
        box_layout.addWidget(self.family_note)
        box_layout.addWidget(self.params_stack)
        box_layout.addWidget(self.ztsnr_check)

        sampling_box = QGroupBox("Sampling timesteps")
        sform = QFormLayout(sampling_box)
        sform.addRow("Steps N", self.steps_spin)
        sform.addRow("Spacing", self.spacing_combo)
        sform.addRow(self.sampling_shift_label, self.sampling_shift)
        self.spacing_note = QLabel()
        self.spacing_note.setWordWrap(True)
        self.spacing_note.setStyleSheet("color: #555;")
        sform.addRow(self.spacing_note)

        ref_box = QGroupBox("Compare with")
        rform = QFormLayout(ref_box)
        rform.addRow("Reference", self.reference_combo)

        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b00020;")

        inner = QWidget()
        col = QVBoxLayout(inner)
        col.addWidget(schedule_box)
        col.addWidget(sampling_box)
        col.addWidget(ref_box)
        col.addWidget(self.error_label)
        col.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(inner)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setMinimumWidth(min(inner.sizeHint().width() + 12, 320))
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        for name, widget in (("schedule.family", self.family_combo), ("schedule.ztsnr", self.ztsnr_check),
                             ("schedule.beta_start", self.beta_start), ("schedule.beta_end", self.beta_end),
                             ("schedule.num_train_timesteps", self.num_train_timesteps),
                             ("schedule.shift", self.shift), ("schedule.sigma_min", self.sigma_min),
                             ("schedule.sigma_max", self.sigma_max), ("schedule.rho", self.rho),
                             ("sampling.steps", self.steps_spin), ("sampling.spacing", self.spacing_combo),
                             ("sampling.shift", self.sampling_shift)):
            describe_editor(widget, name)
        self.marker.add_named(scroll)
        self.marker.add("schedule.family", self.family_combo)
        self.marker.add("schedule.beta_start", self.beta_start)
        self.marker.add("schedule.beta_end", self.beta_end)
        self.marker.add("schedule.beta_start/beta_end", self.beta_start, self.beta_end)
        self.marker.add("schedule.num_train_timesteps", self.num_train_timesteps)
        self.marker.add("schedule.shift", self.shift)
        self.marker.add("schedule.sigma_max", self.sigma_min, self.sigma_max)
        self.marker.add("schedule.rho", self.rho)
        self.marker.add("schedule.points", self.points_edit)
        self.marker.add("sampling.steps", self.steps_spin)
        self.marker.add("sampling.spacing", self.spacing_combo)

        self.family_combo.currentIndexChanged.connect(lambda _i: self._set_family(self.family_combo.currentData()))
        self.beta_start.valueChanged.connect(lambda v: self._set_schedule(beta_start=float(v)))
        self.beta_end.valueChanged.connect(lambda v: self._set_schedule(beta_end=float(v)))
        self.num_train_timesteps.valueChanged.connect(lambda v: self._set_schedule(num_train_timesteps=int(v)))
        self.shift.valueChanged.connect(lambda v: self._set_schedule(shift=float(v)))
        self.sigma_min.valueChanged.connect(lambda v: self._set_schedule(sigma_min=float(v)))
        self.sigma_max.valueChanged.connect(lambda v: self._set_schedule(sigma_max=float(v)))
        self.rho.valueChanged.connect(lambda v: self._set_schedule(rho=float(v)))
        self.ztsnr_check.toggled.connect(lambda on: self._set_schedule(ztsnr=bool(on)))
        self.steps_spin.valueChanged.connect(lambda v: self.state.update("sampling", steps=int(v)))
        self.spacing_combo.currentIndexChanged.connect(self._spacing_chosen)
        self.sampling_shift.valueChanged.connect(lambda v: self.state.update("sampling", shift=float(v)))
        self.reference_combo.currentIndexChanged.connect(lambda _i: self.redraw())
        return scroll

    def _form(self, *rows) -> QWidget:
        w = QWidget()
        form = QFormLayout(w)
        form.setContentsMargins(0, 0, 0, 0)
        for label, widget in rows:
            form.addRow(label, widget)
        return w

    def _note_page(self, text: str) -> QWidget:
        label = QLabel(text)
        label.setWordWrap(True)
        label.setStyleSheet("color: #555;")
        return label

    def _custom_page(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        v.setContentsMargins(0, 0, 0, 0)
        self.points_label = QLabel()
        self.points_label.setWordWrap(True)
        self.points_edit = make_editor(info("schedule.points"))  # the points as text, to type or paste
        edited_signal(self.points_edit).connect(lambda v: self._set_schedule(points=v))
        self.add_point_button = QPushButton("Add point")
        self.add_point_button.setToolTip("Insert a control point in the widest gap, on the current curve")
        self.remove_point_button = QPushButton("Remove point")
        self.remove_point_button.setToolTip("Remove the last dragged inner point (or the middle one)")
        self.reset_points_button = QPushButton("Reset")
        self.reset_points_button.setToolTip("Back to three points: log-SNR 10, 0, −10")
        row = QHBoxLayout()
        for b in (self.add_point_button, self.remove_point_button, self.reset_points_button):
            row.addWidget(b)
        v.addWidget(self.points_label)
        v.addWidget(self.points_edit)
        v.addLayout(row)
        self.add_point_button.clicked.connect(self.add_point)
        self.remove_point_button.clicked.connect(self.remove_point)
        self.reset_points_button.clicked.connect(lambda: self._set_schedule(points=None))
        return w

    # ---------------------------------------------------------------- editing
    def _set_schedule(self, **values) -> None:
        self.state.update("schedule", **values)

    def _set_family(self, family: str) -> None:
        """A new family starts from its published betas; the spacing follows its kind."""
        cfg = self.state.config
        if family == cfg.schedule.family:
            return
        sampling = {}
        if cfg.sampling.spacing not in spacings_for(family):
            sampling["spacing"] = "trailing" if family in DISCRETE_FAMILIES else "uniform"
        new = cfg.updated(schedule={"family": family, "beta_start": None, "beta_end": None},
                          sampling=sampling)
        self.state.set_config(new)

    def _spacing_chosen(self, _index: int) -> None:
        spacing = self.spacing_combo.currentData()
        if spacing:
            self.state.update("sampling", spacing=spacing)

    def _on_config_changed(self, section: str) -> None:
        if section in ("data", "all"):
            self.latents.set_source(self.state.config.data.vae, self._thumb_source)
        if section in ("schedule", "sampling", "all"):
            self._sync_controls()
            self.redraw()

    def _sync_controls(self) -> None:
        """Show the config in the widgets without echoing edits back."""
        s, smp = self.state.config.schedule, self.state.config.sampling
        widgets = (self.family_combo, self.beta_start, self.beta_end, self.num_train_timesteps, self.shift,
                   self.sigma_min, self.sigma_max, self.rho, self.ztsnr_check, self.steps_spin,
                   self.spacing_combo, self.sampling_shift)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.family_combo.setCurrentIndex(max(0, self.family_combo.findData(s.family)))
            self.family_combo.setToolTip(H.FAMILY_TIPS.get(s.family, ""))
            self.family_note.setText(H.FAMILY_TIPS.get(s.family, ""))
            self.params_stack.setCurrentIndex(page_of(s.family))
            default = DEFAULT_BETAS.get(s.family, (1e-4, 0.02))
            _set_value(self.beta_start, default[0] if s.beta_start is None else s.beta_start)
            _set_value(self.beta_end, default[1] if s.beta_end is None else s.beta_end)
            cosine_betas = s.family == "squaredcos_cap_v2"
            self.beta_start.setEnabled(not cosine_betas)
            self.beta_end.setEnabled(not cosine_betas)
            _set_value(self.num_train_timesteps, s.num_train_timesteps)
            _set_value(self.shift, s.shift)
            _set_value(self.sigma_min, s.sigma_min)
            _set_value(self.sigma_max, s.sigma_max)
            _set_value(self.rho, s.rho)
            built_in = s.family in ("flow", "cosine")
            self.ztsnr_check.setChecked(True if built_in else bool(s.ztsnr))
            self.ztsnr_check.setEnabled(not built_in)
            self.ztsnr_check.setText("Zero terminal SNR (built into this family)" if built_in
                                     else "Zero terminal SNR (rescale, Lin et al.)")
            _set_value(self.steps_spin, smp.steps)
            self._fill_spacings(s.family, smp.spacing)
            _set_value(self.sampling_shift, smp.shift)
            shifted = smp.spacing == "shifted" or bool(self.state.errors_for("sampling.shift"))  # fixable
            self.sampling_shift.setVisible(shifted)
            self.sampling_shift_label.setVisible(shifted)
            self.spacing_note.setText(H.SPACING_TIPS.get(smp.spacing, ""))
            self.points_label.setText(self._points_text())
            set_editor_value(self.points_edit, s.points)
        finally:
            for w in widgets:
                w.blockSignals(False)

    def _fill_spacings(self, family: str, current: str) -> None:
        fill_spacing_combo(self.spacing_combo, family, current)

    def _on_validity(self, errors) -> None:
        mine = self.marker.apply(errors)
        self.error_label.setText("\n".join(f"{f.split('.', 1)[1]}: {m}" for f, m in mine))

    def _on_dataset(self, dataset, redraw: bool = True) -> None:
        source = None
        if dataset is not None and getattr(dataset, "kind", "") == "image" and len(dataset) > 0:
            source = dataset.preview(1)[0].to(torch.float64)  # one image read (folders: from the cache)
            self._thumb_name = f"First image of '{getattr(dataset, 'name', '') or 'the dataset'}'"
        else:
            self._thumb_name = "Built-in test image (load an image dataset to use its first image)"
        self._thumb_source = source if source is not None else test_image()
        gen = torch.Generator().manual_seed(THUMB_SEED)
        self._thumb_noise = torch.randn(self._thumb_source.shape, generator=gen, dtype=torch.float64)
        self._drawn.pop("thumbnails", None)
        self.latents.set_source(self.state.config.data.vae, self._thumb_source)
        self._show_caption()
        if redraw:
            self.redraw()

    def _show_caption(self) -> None:
        """Whose image, and with data.vae whether it is shown decoded from latents (or why not)."""
        lat, text = self.latents, self._thumb_name
        if lat.active and lat.encoded is not None and not lat.error:
            text += (f", decoded from its latents of shape {lat.encoded.shape_text} (C × h × w): the model "
                     f"trains on latents (data.vae)")
        elif lat.active and lat.error:
            text += f". Shown as pixels: the VAE (data.vae) cannot be used: {lat.error.removeprefix('data.vae: ')}"
        elif lat.active:
            text += ". Encoding it with the VAE (data.vae)…"
        self.thumb_caption.setText(text)

    def _on_latents_changed(self) -> None:
        self._show_caption()
        self._redraw_thumbnails()

    # ================================================================= view
    def _build_view(self) -> QWidget:
        view = QWidget()
        self.terminal_label = QLabel()
        font = QFont()
        font.setPointSize(17)
        font.setBold(True)
        self.terminal_label.setFont(font)
        self.terminal_label.setToolTip("α₁: how much of the image is left at t = 1, the last training step. "
                                       "The sampler starts from pure noise, so anything above 0 % is a "
                                       "mismatch the model learns to depend on.")
        self.terminal_label.setWordWrap(True)
        self.snr_label = QLabel()
        self.snr_label.setTextFormat(Qt.TextFormat.RichText)
        self.snr_label.setWordWrap(True)
        self.start_label = QLabel()
        self.start_label.setWordWrap(True)
        self.start_label.setStyleSheet("color: #444;")
        self.reference_label = QLabel()
        self.reference_label.setStyleSheet(f"color: {REFERENCE};")
        self.reference_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        readout = QFrame()
        readout.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QVBoxLayout(readout)
        top = QHBoxLayout()
        top.addWidget(self.terminal_label, 1)
        top.addWidget(self.reference_label)
        grid.addLayout(top)
        grid.addWidget(self.snr_label)
        grid.addWidget(self.start_label)
        grid.addStretch(1)
        self.readout_hold = HeightHold(readout)

        self.log_snr_plot = plot_widget("log-SNR  λ(t) = log(α²/σ²)", "λ(t)")
        self.alpha_plot = plot_widget("signal α(t) and noise σ(t)", "α, σ")
        self.alpha_plot.setXLink(self.log_snr_plot)
        for w in (self.log_snr_plot, self.alpha_plot):
            w.setMouseEnabled(x=False, y=False)
        self.legend = QLabel(
            f"<span style='color:{EDITED}'>━━</span> this schedule &nbsp; "
            f"<span style='color:{SIGMA}'>━━</span> σ(t) noise &nbsp; "
            f"<span style='color:{REFERENCE}'>╍╍</span> reference &nbsp; "
            f"<span style='color:{MARKER}'>●</span> the sampler's timesteps "
            f"(<span style='color:{MARKER}'>▼</span> at λ = −∞) &nbsp; "
            f"<span style='color:#2ca02c'>●</span> custom points (drag)")
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("font-size: 9pt; color: #444;")
        self.curves = {  # the edited curves redraw on every edit: stroked through fewer vertices
            "ref_log_snr": self.log_snr_plot.plot([], [], pen=pen(REFERENCE, 1.5, dashed=True)),
            "log_snr": _add_curve(self.log_snr_plot, pen(EDITED, 2.5)),
            "ref_alpha": self.alpha_plot.plot([], [], pen=pen(REFERENCE, 1.5, dashed=True)),
            "ref_sigma": self.alpha_plot.plot([], [], pen=pen(REFERENCE, 1.5, dashed=True)),
            "alpha": _add_curve(self.alpha_plot, pen(EDITED, 2.5)),
            "sigma": _add_curve(self.alpha_plot, pen(SIGMA, 2.5)),
        }
        marker_style = dict(size=7, pen=pg.mkPen("w", width=0.8), brush=pg.mkBrush(MARKER))
        self.markers = {
            "log_snr": pg.ScatterPlotItem(**marker_style),
            "alpha": pg.ScatterPlotItem(**marker_style),
            "sigma": pg.ScatterPlotItem(**marker_style),
        }
        self.log_snr_plot.addItem(self.markers["log_snr"])
        self.alpha_plot.addItem(self.markers["alpha"])
        self.alpha_plot.addItem(self.markers["sigma"])
        for item in self.markers.values():
            item.setZValue(10)
        snr_one = pg.InfiniteLine(pos=0.0, angle=0, pen=pen("#bbb", 1, dashed=True),
                                  label="SNR = 1", labelOpts={"position": 0.05, "color": "#999"})
        self.log_snr_plot.addItem(snr_one)
        self.control_points = DraggablePoints(self._constrain_point, self._point_moved, self._point_released)
        self.log_snr_plot.addItem(self.control_points)
        self._fix_plot_ranges()
        cache_axes(self.log_snr_plot)
        cache_axes(self.alpha_plot)
        cache_rendering(*(self.curves[name].curve for name in ("ref_log_snr", "ref_alpha", "ref_sigma")))

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.log_snr_plot)
        splitter.addWidget(self.alpha_plot)
        plots = QWidget()
        plots_layout = QVBoxLayout(plots)
        plots_layout.setContentsMargins(0, 0, 0, 0)
        plots_layout.setSpacing(2)
        plots_layout.addWidget(self.legend)
        plots_layout.addWidget(splitter, 1)

        self.thumb_caption = QLabel()
        self.thumb_caption.setWordWrap(True)
        self.thumb_caption.setStyleSheet("color: #555;")
        self.thumbs = {"clean": ImageView(), "noised": ImageView(), "low": ImageView()}
        self.thumb_labels = {
            "clean": QLabel("clean image x₀"),
            "noised": QLabel("x₁ = α₁x₀ + σ₁ε"),
            "low": QLabel(""),
        }
        self.leak_combo = QComboBox()
        self.leak_combo.setObjectName("schedule_leak_view")
        self.leak_combo.addItem(f"leaked signal x₁ − σ₁ε, ×{LEAK_GAIN:g}", "residual")
        self.leak_combo.addItem("low frequencies, amplified", "low")
        set_tooltip(self.leak_combo, "How to make the leak visible. Low frequencies: block averages of x₁, "
                    "stretched (the noise averages out, the image's brightness and layout do not; needs a "
                    "large image). Leaked signal: x₁ minus its noise, α₁x₀, at a fixed gain — an image "
                    "whenever anything is left, flat grey at zero terminal SNR, on any image size.")
        self.leak_combo.currentIndexChanged.connect(lambda _i: self._redraw_thumbnails())
        thumbs = QWidget()
        tcol = QGridLayout(thumbs)  # x0 | x1 side by side, the view of the leak under them
        tcol.setContentsMargins(4, 0, 4, 0)
        title = QLabel("<b>What the model sees at the last step</b>")
        title.setWordWrap(True)
        tcol.addWidget(title, 0, 0, 1, 2)
        tcol.addWidget(self.thumb_caption, 1, 0, 1, 2)
        for key in ("clean", "noised", "low"):
            self.thumbs[key].setMinimumSize(56, 56)
            self.thumb_labels[key].setWordWrap(True)
            self.thumb_labels[key].setStyleSheet("color: #444; font-size: 9pt;")
            self.thumb_labels[key].setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter)
        self.thumb_labels["clean"].setText("clean x₀")
        self.thumb_labels["noised"].setText("x₁ = α₁x₀ + σ₁ε")
        self.thumb_labels["noised"].setToolTip("What the model sees at the last training step, t = 1")
        tcol.addWidget(self.thumbs["clean"], 2, 0)
        tcol.addWidget(self.thumbs["noised"], 2, 1)
        tcol.addWidget(self.thumb_labels["clean"], 3, 0)
        tcol.addWidget(self.thumb_labels["noised"], 3, 1)
        tcol.addWidget(self.leak_combo, 4, 0, 1, 2)
        tcol.addWidget(self.thumbs["low"], 5, 0, 1, 2)
        tcol.addWidget(self.thumb_labels["low"], 6, 0, 1, 2)
        tcol.setRowStretch(2, 2)
        tcol.setRowStretch(5, 3)
        thumbs_area = QScrollArea()  # too short a window scrolls the column; nothing overlaps
        thumbs_area.setWidget(thumbs)
        thumbs_area.setWidgetResizable(True)
        thumbs_area.setFrameShape(QFrame.Shape.NoFrame)
        thumbs_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        thumbs_area.setMinimumWidth(180)
        thumbs_area.setMaximumWidth(280)
        thumbs = thumbs_area

        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(plots)
        body.addWidget(thumbs)
        body.setStretchFactor(0, 1)
        body.setStretchFactor(1, 0)

        layout = QVBoxLayout(view)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(readout)
        layout.addWidget(body, 1)
        return view

    def _fix_plot_ranges(self) -> None:
        """t always spans [0, 1] and alpha, sigma [0, 1]; log-SNR gets an explicit range per schedule
        (:meth:`_fit_lambda_range`). No auto-range: an edit then re-lays out no axis."""
        fix_range(self.log_snr_plot, x=(0.0, 1.0), y=(-10.0, 10.0), padding=RANGE_PADDING)
        fix_range(self.alpha_plot, x=(0.0, 1.0), y=(0.0, 1.0), padding=RANGE_PADDING)

    # ---------------------------------------------------------------- drawing
    @property
    def flipped(self) -> bool:
        """Time is shown in the seed's direction (t = 0 noise): plots show ``1 - t``."""
        return bool(self.state.flip_time)

    def display_x(self, t) -> np.ndarray:
        """Data time t -> the plotted x (1 - t in the seed's direction)."""
        t = np.asarray(t, dtype=np.float64)
        return 1.0 - t if self.flipped else t

    def data_t(self, x: float) -> float:
        """The diffstudio time ``t`` (0 = data) of the plotted horizontal position ``x``."""
        return 1.0 - x if self.flipped else x

    def redraw(self) -> None:
        """Recompute every curve, marker, readout and thumbnail from the config (one edit)."""
        start = time.perf_counter()
        self._set_axis_labels()
        try:
            schedule = self.state.config.schedule.build()
        except (ScheduleError, ValueError, TypeError) as exc:
            self._show_invalid(str(exc))
            return
        self.schedule = schedule
        self.grid = self._sampling_grid(schedule)
        n = len(self.t_grid)
        ts = self.grid[:-1] if self.grid is not None else self.t_grid[:0]
        every_t = torch.cat([self.t_grid, ts])  # one evaluation of the schedule for curves and markers
        c = Coefficients.at(schedule, every_t)
        alpha, sigma, lam = c.alpha.numpy(), c.sigma.numpy(), schedule.log_snr(every_t).numpy()
        x = self.display_x(self.t_grid.numpy())
        finite = np.isfinite(lam[:n])
        _set_curve(self.curves["log_snr"], x[finite], lam[:n][finite])
        _set_curve(self.curves["alpha"], x, alpha[:n])
        _set_curve(self.curves["sigma"], x, sigma[:n])
        self._draw_reference(x)
        self._fit_lambda_range(lam[:n][finite])
        self._draw_markers(self.display_x(ts.numpy()), alpha[n:], sigma[n:], lam[n:], lam[:n][finite])
        self._draw_readout(schedule)
        self._draw_control_points(schedule)
        self._draw_thumbnails(schedule)
        self.last_redraw_ms = 1000.0 * (time.perf_counter() - start)
        self.redrawn.emit(self.last_redraw_ms)

    def _set_axis_labels(self) -> None:
        """Only when the direction changes: a new label makes pyqtgraph redraw the whole axis."""
        label = ("time in the seed's direction: 1 − t  (0 = noise → 1 = data)" if self.flipped
                 else "t  (0 = data → 1 = noise)")
        if getattr(self, "_axis_label", None) == label:
            return
        self._axis_label = label
        for w in (self.log_snr_plot, self.alpha_plot):
            w.getPlotItem().setLabel("bottom", label)

    def _show_invalid(self, message: str) -> None:
        self.readout_hold.hold()
        self.schedule = None
        self.terminal_signal = None
        self.terminal_label.setText("invalid schedule")
        _set_style(self.terminal_label, "color: #b00020;")
        self.snr_label.setText(message)
        self.start_label.setText("Fix the marked field; the plots show the last valid schedule.")

    def _reference_key(self) -> str:
        return self.reference_combo.currentData() or "none"

    def _reference_data(self, key: str) -> tuple | None:
        """(alpha, sigma, log-SNR, terminal signal) of a reference schedule; computed once each
        (references never change)."""
        if key not in self._reference_cache:
            kwargs = H.REFERENCES.get(key, ("", None))[1]
            if kwargs is None:
                self._reference_cache[key] = None
            else:
                ref = make_schedule(**kwargs)
                c = Coefficients.at(ref, self.t_grid)
                self._reference_cache[key] = (c.alpha.numpy(), c.sigma.numpy(), ref.log_snr(self.t_grid).numpy(),
                                              ref.terminal_signal)
        return self._reference_cache[key]

    def _draw_reference(self, x: np.ndarray) -> None:
        """The dashed curves; set again only when the reference or the time direction changes."""
        key = self._reference_key()
        if self._drawn.get("reference") == (key, self.flipped):
            return
        self._drawn["reference"] = (key, self.flipped)
        data = self._reference_data(key)
        if data is None:
            for name in ("ref_log_snr", "ref_alpha", "ref_sigma"):
                self.curves[name].setData([], [])
            self.reference_label.setText("")
            return
        alpha, sigma, lam, terminal = data
        finite = np.isfinite(lam)
        _set_curve(self.curves["ref_log_snr"], x[finite], lam[finite])
        _set_curve(self.curves["ref_alpha"], x, alpha)
        _set_curve(self.curves["ref_sigma"], x, sigma)
        label = H.REFERENCES[key][0]
        self.reference_label.setText(f"dashed: {label}\n{format_percent(float(terminal))} left at t = 1")

    def _fit_lambda_range(self, finite_lam: np.ndarray) -> None:
        """Give the log-SNR axis a round range holding this schedule, its twin with zero terminal
        SNR toggled (so the toggle leaves the axis in place and the curves comparable), the
        reference and the custom points; keep the current range while it still fits well."""
        cfg = self.state.config.schedule
        if len(self._lambda_bounds) > 16:
            self._lambda_bounds.clear()
        self._lambda_bounds[repr(cfg)] = _bounds(finite_lam)
        bounds = [self._lambda_bounds[repr(cfg)], self._ztsnr_twin_bounds(cfg)]
        data = self._reference_data(self._reference_key())
        if data is not None:
            bounds.append(_bounds(data[2][np.isfinite(data[2])]))
        if cfg.family == "custom":
            bounds.append(_bounds(np.array([lam for _t, lam in self.current_points()])))
        bounds = [b for b in bounds if b is not None]
        if not bounds:
            return
        lo, hi = min(b[0] for b in bounds), max(b[1] for b in bounds)
        if keeps_range(self._lambda_range, lo, hi):
            return
        self._lambda_range = nice_range(lo, hi)
        self.log_snr_plot.setYRange(*self._lambda_range, padding=RANGE_PADDING)

    def _ztsnr_twin_bounds(self, cfg) -> tuple[float, float] | None:
        """log-SNR bounds of the same schedule with ``ztsnr`` toggled (cached: a toggle back and
        forth computes nothing)."""
        twin = dataclasses.replace(cfg, ztsnr=not cfg.ztsnr)
        key = repr(twin)
        if key not in self._lambda_bounds:
            try:
                lam = twin.build().log_snr(self.t_grid).numpy()
                self._lambda_bounds[key] = _bounds(lam[np.isfinite(lam)])
            except (ScheduleError, ValueError, TypeError):
                self._lambda_bounds[key] = None
        return self._lambda_bounds[key]

    def _sampling_grid(self, schedule: Schedule) -> torch.Tensor | None:
        s = self.state.config.sampling
        try:
            return sampling_grid(schedule, int(s.steps), s.spacing, shift=float(s.shift))
        except (ScheduleError, ValueError, TypeError):
            return None

    def _draw_markers(self, x: np.ndarray, alpha: np.ndarray, sigma: np.ndarray, lam: np.ndarray,
                      finite_lam: np.ndarray) -> None:
        """Markers at the sampler's times; a log-SNR of -inf (t = 1 at ZTSNR) is drawn as a
        triangle at the bottom of the curve."""
        floor = float(finite_lam.min()) if len(finite_lam) else -20.0
        ceil = float(finite_lam.max()) if len(finite_lam) else 20.0
        shown = np.clip(np.nan_to_num(lam, nan=floor, posinf=ceil, neginf=floor), floor, ceil)
        symbols = ["t" if v == -np.inf else "o" for v in lam]
        self.markers["log_snr"].setData(x, shown, symbol=symbols)
        self.markers["alpha"].setData(x, alpha)
        self.markers["sigma"].setData(x, sigma)

    def marker_timesteps(self) -> np.ndarray:
        """The model timesteps at the markers (discrete: diffusers' integer indices)."""
        if self.grid is None or self.schedule is None:
            return np.zeros(0)
        return self.schedule.timestep(self.grid[:-1]).numpy()

    def marker_times(self) -> np.ndarray:
        """The data times t of the markers (not flipped)."""
        return np.zeros(0) if self.grid is None else self.grid[:-1].numpy()

    def _draw_readout(self, schedule: Schedule) -> None:
        self.readout_hold.hold()
        self.terminal_signal = schedule.terminal_signal
        self.terminal_snr = schedule.terminal_snr
        where = "at the noise end (seed's t = 0)" if self.flipped else "at t=1"
        text = f"{format_percent(self.terminal_signal)} of the image left {where}"
        ztsnr = self.terminal_signal == 0.0
        self.terminal_label.setText(text)
        _set_style(self.terminal_label, "color: #2ca02c;" if ztsnr else
                   ("color: #d62728;" if self.terminal_signal >= 1e-3 else "color: #a05a00;"))
        lam1 = float(schedule.log_snr(1.0))
        lam_text = "−∞" if lam1 == -np.inf else f"{lam1:.2f}"
        if ztsnr:
            verdict = "<b style='color:#2ca02c'>zero terminal SNR: the last step is pure noise</b>"
        elif self.terminal_signal < 1e-3:
            verdict = "<b style='color:#a05a00'>nearly zero: very little of the image leaks at t=1</b>"
        else:
            verdict = "<b style='color:#d62728'>not zero: the image's brightness leaks into t=1</b>"
        self.snr_label.setText(f"terminal SNR α₁²/σ₁² = <b>{self.terminal_snr:.3g}</b> "
                               f"(log-SNR {lam_text}) — {verdict} &nbsp;·&nbsp; {schedule.describe()}")
        self.start_label.setText(self._start_text(schedule))

    def _start_text(self, schedule: Schedule) -> str:
        if self.grid is None:
            return "No sampling grid: check the steps and spacing."
        t0 = float(self.grid[0])
        alpha0 = float(schedule.alpha(t0))
        n = len(self.grid) - 1
        step = f"timestep {schedule.timestep(t0).item():.0f}, " if schedule.is_discrete else ""
        text = f"The sampler takes {n} steps and starts at t = {t0:.4g} ({step}α = {alpha0:.4f})"
        if alpha0 > 1e-6:
            text += (f": the model expects {format_percent(alpha0)} of an image there, "
                     "but sampling starts from pure noise.")
        else:
            text += ": pure noise, exactly what sampling starts from."
        return text

    def _draw_control_points(self, schedule: Schedule) -> None:
        custom = self.state.config.schedule.family == "custom"
        self.control_points.setVisible(custom)
        if not custom:
            return
        pts = self.current_points()
        if self.control_points.dragging is None or len(self.control_points.xy) != len(pts):
            self.control_points.set_points([(float(self.display_x(t)), lam) for t, lam in pts])

    def _redraw_thumbnails(self) -> None:
        self._drawn.pop("thumbnails", None)
        try:
            schedule = self.state.config.schedule.build()
        except (ScheduleError, ValueError, TypeError):
            return
        self._draw_thumbnails(schedule)

    def _draw_thumbnails(self, schedule: Schedule) -> None:
        """x at t = 1 depends on alpha_1 and sigma_1 only: recomputed when they, the image or the
        view of the leak change."""
        x0, eps = self._thumb_source, self._thumb_noise
        c = Coefficients.at(schedule, 1.0)
        mode = self.leak_combo.currentData() or "residual"
        key = (float(c.alpha), float(c.sigma), mode, self.latents.state())
        if self._drawn.get("thumbnails") == key:
            return
        self._drawn["thumbnails"] = key
        encoded = self.latents.encoded
        if self.latents.active and encoded is not None and not self.latents.error:
            self._draw_latent_thumbnails(key, encoded, c, mode)
            return
        x1 = terminal_sample(x0, eps, c)
        self._set_thumb_labels("clean x₀", "x₁ = α₁x₀ + σ₁ε")
        self.thumbs["clean"].set_image(unit_to_uint8(x0.numpy()))
        self.thumbs["noised"].set_image(unit_to_uint8(x1.numpy()))
        left = format_percent(float(c.alpha))
        if mode == "residual":
            third = leaked_signal(x1, eps, c)
            text = (f"α₁x₀ ×{LEAK_GAIN:g}: {left} of the image is left"
                    + (" — nothing: flat grey" if float(c.alpha) == 0.0 else ""))
        else:
            third, k = low_frequencies(x1)
            text = f"x₁ in {k}×{k} blocks, contrast ×{k / 3:.3g}: the low frequencies that leak ({left} left)"
        self.thumbs["low"].set_image(unit_to_uint8(third.numpy()))
        self.thumb_labels["low"].setText(text)

    def _draw_latent_thumbnails(self, key, encoded, c: Coefficients, mode: str) -> None:
        """The same views computed on the latent ``z0`` and decoded (in the background): ``z1 =
        alpha_1 z0 + sigma_1 eps`` and the leak's view of it; the clean image is the decode of z0."""
        z1 = terminal_sample(encoded.z0, encoded.noise, c)
        left = format_percent(float(c.alpha))
        if mode == "residual":
            third = leaked_signal(z1, encoded.noise, c)
            text = (f"α₁z₀ ×{LEAK_GAIN:g} in latent space, decoded: {left} of the image is left"
                    + (" — nothing (the decode of an all-zero latent)" if float(c.alpha) == 0.0 else ""))
        else:
            third, k = low_frequencies(z1)
            text = (f"z₁ in {k}×{k} latent blocks, contrast ×{k / 3:.3g}, decoded: the low frequencies "
                    f"that leak ({left} left)")
        self.thumbs["clean"].set_image(unit_to_uint8(encoded.clean.numpy()))
        self._set_thumb_labels("clean x₀ = D(z₀), decoded", "x₁ = D(α₁z₀ + σ₁ε)")
        self._latent_text = text
        self.latents.decode(key, torch.stack([z1, third]))

    def _set_thumb_labels(self, clean: str, noised: str) -> None:
        if self.thumb_labels["clean"].text() != clean:
            self.thumb_labels["clean"].setText(clean)
            self.thumb_labels["noised"].setText(noised)

    def _show_decoded(self, key, images: torch.Tensor) -> None:
        """A decode requested by :meth:`_draw_latent_thumbnails`; shown if still current."""
        if key != self._drawn.get("thumbnails"):
            return
        self.thumbs["noised"].set_image(unit_to_uint8(images[0].numpy()))
        self.thumbs["low"].set_image(unit_to_uint8(images[1].numpy()))
        self.thumb_labels["low"].setText(self._latent_text)
        self.thumbsDecoded.emit()

    # ------------------------------------------------------------ custom points
    def current_points(self) -> list[tuple[float, float]]:
        """The custom schedule's control points ``[(t, log-SNR)]`` (the default curve's when unset)."""
        pts = self.state.config.schedule.points
        return [(float(t), float(v)) for t, v in (pts if pts else CustomSchedule().points)]

    def _constrain_point(self, i: int, x: float, y: float) -> tuple[float, float]:
        """Keep the curve monotone: t strictly between the neighbours (end points keep their t),
        log-SNR strictly between the neighbours' values."""
        pts = self.current_points()
        n = len(pts)
        t = self.data_t(x)
        if i == 0 or i == n - 1:
            t = pts[i][0]
        else:
            t = min(max(t, pts[i - 1][0] + MIN_GAP_T), pts[i + 1][0] - MIN_GAP_T)
        hi = pts[i - 1][1] - MIN_GAP_LAMBDA if i > 0 else LAMBDA_LIMIT
        lo = pts[i + 1][1] + MIN_GAP_LAMBDA if i < n - 1 else -LAMBDA_LIMIT
        lam = min(max(y, lo), hi)
        return float(self.display_x(t)), lam

    def _point_moved(self, i: int, x: float, y: float) -> None:
        pts = self.current_points()
        pts[i] = (round(self.data_t(x), 6), round(y, 6))
        if 0 < i < len(pts) - 1:
            self._selected_point = i
        self._set_schedule(points=[list(p) for p in pts])

    def _point_released(self) -> None:
        self.points_label.setText(self._points_text())

    def move_control_point(self, i: int, t: float, log_snr: float) -> tuple[float, float]:
        """Drag point ``i`` to data time ``t`` and ``log_snr`` (as the mouse does); returns where
        it went, after the monotonicity constraint."""
        x, y = self.control_points.move_point(i, float(self.display_x(t)), log_snr)
        return self.data_t(x), y

    def add_point(self) -> None:
        """Add a control point on the curve in the middle of the widest gap in t (the shape is unchanged)."""
        pts = self.current_points()
        gaps = [b[0] - a[0] for a, b in zip(pts, pts[1:])]
        k = int(np.argmax(gaps))
        t = 0.5 * (pts[k][0] + pts[k + 1][0])
        lam, _ = CustomSchedule(tuple(pts)).lambda_and_slope(torch.tensor(t, dtype=torch.float64))
        pts.insert(k + 1, (round(t, 6), round(float(lam), 6)))  # on the curve: the shape is unchanged
        self._set_schedule(points=[list(p) for p in pts])

    def remove_point(self) -> None:
        """Remove the selected inner control point (else the middle one); the two ends stay."""
        pts = self.current_points()
        if len(pts) <= 2:
            return
        i = self._selected_point if self._selected_point and 0 < self._selected_point < len(pts) - 1 \
            else len(pts) // 2
        if not 0 < i < len(pts) - 1:
            i = len(pts) - 2
        del pts[i]
        self._selected_point = None
        self._set_schedule(points=[list(p) for p in pts])

    def _points_text(self) -> str:
        pts = self.current_points()
        listing = ", ".join(f"({t:.2f}, {v:.1f})" for t, v in pts)
        return (f"Drag the green points on the log-SNR plot. {len(pts)} points (t, λ): {listing}")

    # ------------------------------------------------------------------ misc
    def terminal_text(self) -> str:
        """The readout of the terminal signal and SNR, as shown."""
        return self.terminal_label.text()


def _set_value(widget, value) -> None:
    """setValue only when it differs (so a field being typed in is not reformatted)."""
    if value is None:
        return
    if abs(float(widget.value()) - float(value)) > 1e-15 * max(1.0, abs(float(value))):
        widget.setValue(value)


def _add_curve(plot: pg.PlotWidget, curve_pen) -> SimplifiedCurve:
    curve = SimplifiedCurve(pen=curve_pen)
    plot.addItem(curve)
    return curve


def _set_curve(item: pg.PlotDataItem | pg.PlotCurveItem, x: np.ndarray, y: np.ndarray) -> None:
    """setData for curves that are finite by construction (the non-finite log-SNR is filtered out)."""
    item.setData(x, y, skipFiniteCheck=True, connect="all")


def _bounds(values: np.ndarray) -> tuple[float, float] | None:
    return (float(values.min()), float(values.max())) if len(values) else None


def _set_style(widget: QWidget, sheet: str) -> None:
    """setStyleSheet only when it differs: each call re-polishes the widget and asks for a relayout."""
    if widget.styleSheet() != sheet:
        widget.setStyleSheet(sheet)


def _compact(combo: QComboBox, chars: int = 18) -> None:
    """Long item texts must not widen the dock: the popup still shows them in full."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
