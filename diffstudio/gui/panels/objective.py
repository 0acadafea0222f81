"""The objective editor: what the network predicts, how each noise level is weighted, which
training times are drawn, offset noise — with a plot of the effective weight over t and plain
warnings for combinations that cannot work (from :func:`diffstudio.engine.advice.objective_advice`,
which the command line uses too).

The weights come from :func:`diffstudio.core.objectives.loss_weight` and
:func:`diffstudio.core.parameterization.determinant`; the panel multiplies them by the density of
the time sampling and states them on x0-MSE as well, so parameterizations can be compared."""

from __future__ import annotations

import numpy as np
import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QBoxLayout,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from diffstudio.core.objectives import TIME_SAMPLINGS, WEIGHTINGS, loss_weight, time_density
from diffstudio.core.parameterization import PARAMETERIZATIONS, Coefficients, determinant
from diffstudio.core.schedules import ScheduleError
from diffstudio.engine.advice import objective_advice
from diffstudio.gui import help as H
from diffstudio.gui.panels.schedule import _compact
from diffstudio.gui.widgets.field import FieldMarker, NumberBox, set_tooltip
from diffstudio.gui.widgets.settings_form import describe_editor
from diffstudio.gui.widgets.plots import EDITED, SIGMA, pen, plot_widget

WEIGHT_POINTS = 1000
NARROW_WIDTH = 440  # below this width the form sits above the plot
WARNING_STYLE = ("QLabel { background: #fff4e5; color: #8a3b00; border: 1px solid #f0b070; "
                 "border-radius: 4px; padding: 6px; }")
NOTE_STYLE = ("QLabel { background: #eef5fc; color: #17456e; border: 1px solid #b5d0ea; "
              "border-radius: 4px; padding: 6px; }")


class ObjectivePanel(QWidget):
    """Edits ``objective.*`` and plots the effective loss weight over t (on p-MSE and on x0-MSE, times
    the time-sampling density: :func:`~diffstudio.core.objectives.loss_weight`); ``warningsChanged``
    carries the plain-language warnings."""
    warningsChanged = Signal(list)  # the plain-language warnings, whenever they change

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.t = (torch.arange(WEIGHT_POINTS, dtype=torch.float64) + 0.5) / WEIGHT_POINTS
        self.marker = FieldMarker()
        self._build()
        state.configChanged.connect(self._on_config_changed)
        state.validityChanged.connect(self.marker.apply)
        state.trainingChanged.connect(lambda _on: self._show_messages())
        state.flipTimeChanged.connect(lambda _on: self.redraw())
        self._sync()
        self.marker.apply(state.errors)
        self.redraw()

    # ---------------------------------------------------------------- widgets
    def _build(self) -> None:
        self.param_combo = QComboBox()
        _compact(self.param_combo)
        for name in PARAMETERIZATIONS:
            self.param_combo.addItem(H.PARAM_LABELS.get(name, name), name)
            self.param_combo.setItemData(self.param_combo.count() - 1, H.PARAM_TIPS.get(name, ""),
                                         Qt.ItemDataRole.ToolTipRole)
        self.weighting_combo = QComboBox()
        _compact(self.weighting_combo)
        for name in WEIGHTINGS:
            self.weighting_combo.addItem(H.WEIGHTING_LABELS.get(name, name), name)
            self.weighting_combo.setItemData(self.weighting_combo.count() - 1, H.WEIGHTING_TIPS.get(name, ""),
                                             Qt.ItemDataRole.ToolTipRole)
        self.gamma = NumberBox(0.0, 1e6, digits=4)
        set_tooltip(self.gamma, "γ of min-SNR-γ: the SNR above which a step stops gaining weight (5 in the paper).")
        self.time_combo = QComboBox()
        for name in TIME_SAMPLINGS:
            self.time_combo.addItem(name.replace("_", "-"), name)
            self.time_combo.setItemData(self.time_combo.count() - 1, H.TIME_SAMPLING_TIPS.get(name, ""),
                                        Qt.ItemDataRole.ToolTipRole)
        self.logit_mean = NumberBox(-10.0, 10.0, digits=4)
        set_tooltip(self.logit_mean, "m: the centre of the logit-normal (0: t = 0.5; SD3 uses 0).")
        self.logit_std = NumberBox(0.0, 10.0, digits=4)
        set_tooltip(self.logit_std, "s: the spread of the logit-normal (SD3 uses 1).")
        self.offset_noise = NumberBox(0.0, 10.0, digits=4)
        set_tooltip(self.offset_noise, H.OFFSET_NOISE_TIP)
        set_tooltip(self.param_combo, "What the network outputs. Every choice is converted to (x0, ε) for "
                                      "sampling, so any sampler works with any of them.")
        set_tooltip(self.weighting_combo, "How much each noise level counts in the loss.")
        set_tooltip(self.time_combo, "Which noise levels t are drawn during training.")

        form = QFormLayout()
        form.addRow("Prediction", self.param_combo)
        form.addRow("Loss weighting", self.weighting_combo)
        self.gamma_label = QLabel("γ")
        form.addRow(self.gamma_label, self.gamma)
        form.addRow("Time sampling", self.time_combo)
        self.logit_row = QWidget()
        row = QHBoxLayout(self.logit_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("m"))
        row.addWidget(self.logit_mean, 1)
        row.addWidget(QLabel("s"))
        row.addWidget(self.logit_std, 1)
        self.logit_label = QLabel("logit-normal")
        form.addRow(self.logit_label, self.logit_row)
        form.addRow("Offset noise", self.offset_noise)
        self.param_note = QLabel()
        self.param_note.setWordWrap(True)
        self.param_note.setStyleSheet("color: #555;")

        self.warning_label = QLabel()
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet(WARNING_STYLE)
        self.warning_label.setTextFormat(Qt.TextFormat.RichText)
        self.note_label = QLabel()
        self.note_label.setWordWrap(True)
        self.note_label.setStyleSheet(NOTE_STYLE)
        self.training_label = QLabel(H.NOTE_TRAINING)
        self.training_label.setWordWrap(True)
        self.training_label.setStyleSheet("color: #555; font-style: italic;")

        box = QGroupBox("Training objective")
        v = QVBoxLayout(box)
        v.addLayout(form)
        v.addWidget(self.param_note)

        self.weight_plot = plot_widget("effective weight of each noise level", "relative weight")
        self.weight_plot.setMouseEnabled(x=False, y=False)
        self.weight_plot.setLogMode(x=False, y=True)
        self.weight_plot.setMinimumHeight(160)
        self.weight_plot.getPlotItem().addLegend(offset=(10, -10), labelTextSize="8pt",
                                                 brush=(255, 255, 255, 200))
        self.curves = {
            "weight": self.weight_plot.plot([], [], pen=pen(EDITED, 2.5), name="on the trained loss"),
            "weight_x0": self.weight_plot.plot([], [], pen=pen(SIGMA, 2, dashed=True), name="on x0-MSE"),
        }
        self.caption = QLabel(H.WEIGHT_CAPTION)
        self.caption.setWordWrap(True)
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.caption.setStyleSheet("color: #555; font-size: 9pt;")

        plot_widget_ = QWidget()
        plot_col = QVBoxLayout(plot_widget_)
        plot_col.setContentsMargins(0, 0, 0, 0)
        plot_col.addWidget(self.weight_plot, 1)
        plot_col.addWidget(self.caption)
        left = QVBoxLayout()
        left.addWidget(box)
        left.addWidget(self.warning_label)
        left.addWidget(self.note_label)
        left.addWidget(self.training_label)
        left.addStretch(1)
        left_widget = QWidget()
        left_widget.setLayout(left)
        left_widget.setMinimumWidth(230)
        left_widget.setMaximumWidth(440)
        self._layout = QBoxLayout(QBoxLayout.Direction.LeftToRight, self)
        self._layout.setContentsMargins(4, 4, 4, 4)
        self._layout.addWidget(left_widget, 0)
        self._layout.addWidget(plot_widget_, 1)
        self._left = left_widget

        for name, widget in (("objective.parameterization", self.param_combo),
                             ("objective.weighting", self.weighting_combo), ("objective.gamma", self.gamma),
                             ("objective.time_sampling", self.time_combo),
                             ("objective.logit_mean", self.logit_mean), ("objective.logit_std", self.logit_std),
                             ("objective.offset_noise", self.offset_noise)):
            describe_editor(widget, name)
            self.marker.add(name, widget)

        self.param_combo.currentIndexChanged.connect(lambda _i: self._set(parameterization=self.param_combo.currentData()))
        self.weighting_combo.currentIndexChanged.connect(lambda _i: self._set(weighting=self.weighting_combo.currentData()))
        self.time_combo.currentIndexChanged.connect(lambda _i: self._set(time_sampling=self.time_combo.currentData()))
        self.gamma.valueChanged.connect(lambda v: self._set(gamma=float(v)))
        self.logit_mean.valueChanged.connect(lambda v: self._set(logit_mean=float(v)))
        self.logit_std.valueChanged.connect(lambda v: self._set(logit_std=float(v)))
        self.offset_noise.valueChanged.connect(lambda v: self._set(offset_noise=float(v)))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        """Side by side when wide, stacked when narrow (e.g. docked in a side column)."""
        narrow = event.size().width() < NARROW_WIDTH
        direction = QBoxLayout.Direction.TopToBottom if narrow else QBoxLayout.Direction.LeftToRight
        if self._layout.direction() != direction:
            self._layout.setDirection(direction)
            self._left.setMaximumWidth(16777215 if narrow else 440)
        super().resizeEvent(event)

    def _set(self, **values) -> None:
        if all(v is not None for v in values.values()):
            self.state.update("objective", **values)

    # ------------------------------------------------------------------ sync
    def _on_config_changed(self, section: str) -> None:
        if section in ("objective", "all"):
            self._sync()
        if section in ("objective", "schedule", "all"):
            self.redraw()

    def _sync(self) -> None:
        o = self.state.config.objective
        widgets = (self.param_combo, self.weighting_combo, self.time_combo, self.gamma, self.logit_mean,
                   self.logit_std, self.offset_noise)
        for w in widgets:
            w.blockSignals(True)
        try:
            _select(self.param_combo, o.parameterization)
            _select(self.weighting_combo, o.weighting)
            _select(self.time_combo, o.time_sampling)
            for box, value in ((self.gamma, o.gamma), (self.logit_mean, o.logit_mean),
                               (self.logit_std, o.logit_std), (self.offset_noise, o.offset_noise)):
                if isinstance(value, (int, float)) and abs(box.value() - value) > 1e-12:
                    box.setValue(value)
            # a field that is not used but invalid (e.g. from a file) stays visible, to be fixed
            min_snr = o.weighting == "min_snr" or bool(self.state.errors_for("objective.gamma"))
            self.gamma.setVisible(min_snr)
            self.gamma_label.setVisible(min_snr)
            logit = o.time_sampling == "logit_normal" or bool(self.state.errors_for("objective.logit_"))
            self.logit_row.setVisible(logit)
            self.logit_label.setVisible(logit)
            self.param_note.setText(H.PARAM_TIPS.get(o.parameterization, ""))
        finally:
            for w in widgets:
                w.blockSignals(False)

    # ------------------------------------------------------------------ views
    def redraw(self) -> None:
        """Refresh the warnings and the weight plot from the state's config."""
        self._show_messages()
        self._draw_weights()

    def warnings(self) -> list[str]:
        """The objective's warnings for the current config (:func:`~diffstudio.engine.advice.objective_advice`)."""
        return objective_advice(self.state.config)[0]

    def _show_messages(self) -> None:
        warnings, notes = objective_advice(self.state.config)
        self.warning_label.setText("<br><br>".join("⚠ " + _escape(w) for w in warnings))
        self.warning_label.setVisible(bool(warnings))
        self.note_label.setText("\n\n".join(notes))
        self.note_label.setVisible(bool(notes))
        self.training_label.setVisible(bool(self.state.training))
        if warnings != getattr(self, "_last_warnings", None):
            self._last_warnings = warnings
            self.warningsChanged.emit(list(warnings))

    def weight_curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(t, weight on the trained loss, weight on x0-MSE), each times the time density and
        normalised to its largest finite value; None when the schedule or objective is invalid."""
        cfg = self.state.config
        o = cfg.objective
        try:
            schedule = cfg.schedule.build()
            c = Coefficients.at(schedule, self.t)
            w = loss_weight(o.weighting, o.parameterization, c, float(o.gamma))
            det = determinant(o.parameterization, c)
            density = time_density(self.t, o.time_sampling, float(o.logit_mean), float(o.logit_std))
        except (ScheduleError, ValueError, TypeError, ZeroDivisionError):
            return None
        w_p = (w * density).numpy()
        w_x0 = (w * (det / c.sigma) ** 2 * density).numpy()
        return self.t.numpy(), _normalise(w_p), _normalise(w_x0)

    def _draw_weights(self) -> None:
        curves = self.weight_curves()
        if curves is None:
            for item in self.curves.values():
                item.setData([], [])
            return
        t, w_p, w_x0 = curves
        x = 1.0 - t if self.state.flip_time else t
        for key, y in (("weight", w_p), ("weight_x0", w_x0)):
            keep = np.isfinite(y) & (y > 0)
            self.curves[key].setData(x[keep], y[keep])
        label = ("1 − t  (seed's direction: 0 = noise → 1 = data)" if self.state.flip_time
                 else "t  (0 = data → 1 = noise)")
        if getattr(self, "_axis_label", None) != label:  # a new label redraws the whole axis
            self._axis_label = label
            self.weight_plot.getPlotItem().setLabel("bottom", label)


def _normalise(y: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    finite = np.isfinite(y) & (y > 0)
    if not finite.any():
        return np.zeros_like(y)
    out = y / y[finite].max()
    return np.where(np.isfinite(out), np.maximum(out, floor), np.nan)


def _select(combo: QComboBox, value: str) -> None:
    index = combo.findData(value)
    if index < 0:
        combo.addItem(f"{value} (unknown)", value)
        index = combo.count() - 1
    combo.setCurrentIndex(index)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
