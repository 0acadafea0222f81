"""The live loss curve: a bounded history (raw and EMA-smoothed) and its pyqtgraph plot.

Plot items are created once; points are appended to a :class:`LossHistory` and the plot calls
``setData`` from a timer (4 Hz) only when something changed,
so a fast run cannot flood the UI. Memory stays bounded: past ``max_points`` the history halves its
resolution (pairs are averaged) and later points are averaged in buckets of the same width.

The view follows the data with ranges that change rarely (:func:`follow_range`): the step axis
grows in nice steps and the loss axis only when the curve leaves it or shrinks well inside it. The
axes are cached as pixmaps, so a redraw repaints the curves, not the tick labels (most of a
repaint's cost; benchmarks/gui_responsiveness.py). Zooming or panning by hand stops the following
until "Fit" is pressed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QCheckBox, QGraphicsItem, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from diffstudio.gui.widgets.plots import plot_widget

EMA_BETA = 0.9
"""Smoothing of the EMA curve per logged point (debiased, as TensorBoard does)."""

REDRAW_MS = 250
_NICE = (1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 1.5, 2, 3, 5, 7.5 x 10^k that is >= ``value`` (> 0)."""
    if value <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(value))
    return next(base * m for m in _NICE if base * m >= value * (1 - 1e-12))


def follow_range(current: tuple[float, float] | None, lo: float, hi: float, slack: float = 0.1,
                 shrink: float = 3.0, min_span: float = 1e-9) -> tuple[float, float]:
    """A y-range holding ``[lo, hi]`` that keeps ``current`` unless the data left it, or the data
    fill less than ``1/shrink`` of it; a new range has ``slack`` of the span (at least
    ``min_span``: one point or a flat curve still gets readable ticks) added on both sides."""
    span = max(hi - lo, min_span)
    if span > hi - lo:  # centre a widened span on the data
        lo, hi = 0.5 * (lo + hi - span), 0.5 * (lo + hi + span)
    if current is not None:
        c_lo, c_hi = current
        if c_lo <= lo and hi <= c_hi and (c_hi - c_lo) <= shrink * span:
            return current
    return lo - slack * span, hi + slack * span


class LossHistory:
    """(step, loss) points and their debiased EMA; at most ``max_points`` stored."""

    def __init__(self, max_points: int = 4000, beta: float = EMA_BETA):
        self.max_points = max(2, int(max_points))
        self.beta = beta
        self.clear()

    def clear(self) -> None:
        """Forget every point and restart the EMA."""
        self._steps: list[float] = []
        self._raw: list[float] = []
        self._ema: list[float] = []
        self._stride = 1  # raw points per stored point
        self._bucket: list[tuple[float, float, float]] = []
        self._ema_value = 0.0
        self._ema_weight = 0.0
        self.count = 0  # raw points seen
        self.last_step: float | None = None

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, step: float, loss: float) -> None:
        """Add the loss at ``step``: non-finite losses are skipped; a step at or before the last one (a
        resumed run's log) drops the points after it first; past ``max_points`` stored points, pairs
        are merged and later points averaged over twice as many steps."""
        loss = float(loss)
        if not math.isfinite(loss):
            return
        if self.last_step is not None and step <= self.last_step:
            # the log went back in steps: a run resumed from an earlier checkpoint appends to the
            # same metrics file; the abandoned branch beyond the checkpoint is dropped
            self.truncate_after(step - 1)
        self._ema_value = self.beta * self._ema_value + (1 - self.beta) * loss
        self._ema_weight = self.beta * self._ema_weight + (1 - self.beta)
        self._bucket.append((float(step), loss, self._ema_value / self._ema_weight))
        self.count += 1
        self.last_step = float(step)
        if len(self._bucket) >= self._stride:
            self._store(*np.mean(self._bucket, axis=0))
            self._bucket = []

    def extend(self, steps: Iterable[float], losses: Iterable[float]) -> None:
        """Add each ``(step, loss)`` in order (:meth:`add`)."""
        for step, loss in zip(steps, losses):
            self.add(step, loss)

    def _store(self, step: float, raw: float, ema: float) -> None:
        self._steps.append(step)
        self._raw.append(raw)
        self._ema.append(ema)
        if len(self._steps) > self.max_points:
            self._steps, self._raw, self._ema = (_halve(a) for a in (self._steps, self._raw, self._ema))
            self._stride *= 2

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(steps, raw, ema) float64 arrays, the unfinished bucket included."""
        rows = list(zip(self._steps, self._raw, self._ema))
        if self._bucket:
            rows.append(tuple(np.mean(self._bucket, axis=0)))
        if not rows:
            empty = np.zeros(0)
            return empty, empty, empty
        a = np.asarray(rows, dtype=np.float64)
        return a[:, 0], a[:, 1], a[:, 2]

    def truncate_after(self, step: float) -> None:
        """Forget points past ``step`` (a run resumed from an earlier checkpoint)."""
        steps, raw, _ = self.arrays()
        keep = steps <= step
        self.clear()
        self.extend(steps[keep].tolist(), raw[keep].tolist())


def _halve(values: list[float]) -> list[float]:
    a = np.asarray(values, dtype=np.float64)
    n = len(a) // 2 * 2
    merged = a[:n].reshape(-1, 2).mean(axis=1).tolist()
    return merged + a[n:].tolist()


def loss_rows(rows: Iterable[dict]) -> tuple[list[float], list[float]]:
    """Steps and losses of the metrics rows that carry a finite loss."""
    steps, losses = [], []
    for row in rows:
        loss, step = row.get("loss"), row.get("step")
        if isinstance(loss, (int, float)) and isinstance(step, (int, float)) and math.isfinite(loss):
            steps.append(float(step))
            losses.append(float(loss))
    return steps, losses


class _Series:
    def __init__(self, plot: pg.PlotItem, name: str, color, max_points: int):
        self.history = LossHistory(max_points)
        qcolor = pg.mkColor(color)
        faint = pg.mkColor(color)
        faint.setAlpha(90)
        label = f"{name} " if name else ""
        self.raw_item = plot.plot([], [], pen=pg.mkPen(faint, width=1), name=f"{label}loss")
        self.ema_item = plot.plot([], [], pen=pg.mkPen(qcolor, width=2), name=f"{label}loss (EMA)")
        self.dirty = False

    def redraw(self) -> None:
        steps, raw, ema = self.history.arrays()
        self.raw_item.setData(steps, raw, skipFiniteCheck=True)  # LossHistory keeps finite points only
        # a line needs two points: mark the first ones so a slow run shows something at once
        self.ema_item.setData(steps, ema, symbol="o" if len(steps) < 3 else None, symbolSize=6,
                              symbolBrush=self.ema_item.opts["pen"].color(), skipFiniteCheck=True)
        self.dirty = False

    def bounds(self, log: bool) -> tuple[float, float, float] | None:
        """(last step, lowest, highest loss) in view coordinates (log10 in log mode), or None."""
        steps, raw, _ = self.history.arrays()
        values = np.asarray(raw, dtype=float)
        if log:
            values = np.log10(values[values > 0])
        if not len(steps) or not len(values):
            return None
        return float(steps[-1]), float(values.min()), float(values.max())


class LossCurve(QWidget):
    """A loss plot with one or more named series (raw thin, EMA bold) and a log-scale toggle."""

    COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")

    def __init__(self, series: Iterable[str] = ("",), max_points: int = 4000, parent=None):
        super().__init__(parent)
        self.plot_widget = plot_widget(left="loss", bottom="step")
        self.plot = self.plot_widget.getPlotItem()
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        names = list(series)
        if len(names) > 1 or names[0]:
            self.plot.addLegend(offset=(-10, 10))
        self.series = {name: _Series(self.plot, name, self.COLORS[i % len(self.COLORS)], max_points)
                       for i, name in enumerate(names)}
        self.log_box = QCheckBox("log scale")
        self.log_box.toggled.connect(self.set_log_scale)  # a bound method: see RunViewer
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Follow the whole curve again (after zooming or panning by hand)")
        self.fit_button.clicked.connect(self.fit)
        self.info = QLabel("")
        # a longer text must not re-lay out the panel on every redraw
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar = QHBoxLayout()
        bar.addWidget(self.info, 1)
        bar.addWidget(self.fit_button)
        bar.addWidget(self.log_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot_widget, 1)
        layout.addLayout(bar)
        self.following = True
        self._y_range: tuple[float, float] | None = None
        self._x_end = 0.0
        box = self.plot.getViewBox()
        box.disableAutoRange()
        box.sigRangeChangedManually.connect(self._on_manual_range)
        for name in ("left", "bottom"):
            self.plot.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()

    def set_log_scale(self, on: bool) -> None:
        """Show the loss on a log axis (or linear) and fit the view."""
        self.plot.setLogMode(y=bool(on))
        self.fit()

    def fit(self) -> None:
        """Follow the data again: show every point, keep following as the curve grows."""
        self.following = True
        self._y_range, self._x_end = None, 0.0
        self._follow()

    def _on_manual_range(self, *_args) -> None:
        self.following = False

    def _follow(self) -> None:
        """Move the view only when the data need it (see :func:`follow_range`)."""
        if not self.following:
            return
        found = [b for s in self.series.values() if (b := s.bounds(self.log_box.isChecked())) is not None]
        if not found:
            return
        last = max(b[0] for b in found)
        lo, hi = min(b[1] for b in found), max(b[2] for b in found)
        # at least a tenth of a decade (log scale) or 5 % of the loss (linear)
        min_span = 0.1 if self.log_box.isChecked() else max(0.05 * abs(hi), 1e-6)
        y = follow_range(self._y_range, lo, hi, min_span=min_span)
        x_end = self._x_end if last <= self._x_end else nice_ceiling(1.25 * max(last, 1.0))
        if (x_end, y) != (self._x_end, self._y_range):
            self._x_end, self._y_range = x_end, y
            self.plot.getViewBox().setRange(xRange=(0.0, x_end), yRange=y, padding=0.0)

    def history(self, name: str = "") -> LossHistory:
        """The :class:`LossHistory` of the series ``name`` ('' for the single run)."""
        return self.series[name].history

    def add(self, steps: Iterable[float], losses: Iterable[float], name: str = "") -> None:
        """Append points; the plot catches up on the next redraw tick."""
        s = self.series[name]
        s.history.extend(steps, losses)
        s.dirty = True

    def clear(self, name: str | None = None) -> None:
        """Forget the points of series ``name`` (all when None) and follow the next ones whole."""
        for key, s in self.series.items():
            if name is None or key == name:
                s.history.clear()
                s.dirty = True
        self.following = True  # a new history is shown whole, whatever the last one was zoomed to
        self._y_range, self._x_end = None, 0.0

    def truncate_after(self, step: float, name: str = "") -> None:
        """Drop the points of series ``name`` after ``step`` (a run resumed from an earlier checkpoint)."""
        s = self.series[name]
        s.history.truncate_after(step)
        s.dirty = True

    def point_count(self, name: str = "") -> int:
        """Points currently drawn (after the last redraw)."""
        x, _ = self.series[name].raw_item.getData()
        return 0 if x is None else len(x)

    def redraw(self) -> None:
        """setData on the series that changed (called by the timer; call it to force a redraw)."""
        changed = False
        for s in self.series.values():
            if s.dirty:
                s.redraw()
                changed = True
        if changed:
            self._follow()
            self._update_info()

    def _update_info(self) -> None:
        parts = []
        for name, s in self.series.items():
            _, raw, ema = s.history.arrays()
            if len(ema):
                label = f"{name}: " if name else ""
                parts.append(f"{label}loss {ema[-1]:.4g} (EMA), last {raw[-1]:.4g}")
        self.info.setText("   ".join(parts))
