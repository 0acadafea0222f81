"""The "loss by noise level" view: validation curves against t (or log-SNR), and the summary and
sample-quality numbers against steps.

Fed with :class:`~diffstudio.engine.evaluation.ValidationResult` objects (live, from the worker)
or with ``metrics.jsonl`` rows (a run folder). With one run it draws the first validation, the
latest and up to three in between; with several runs (Compare runs) the latest of each. Values
that are undefined (None: eps or score at a zero-SNR t = 1) are gaps, never numbers. Plot items
are created once; new data only calls ``setData``.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from diffstudio.gui.widgets.plots import pen, plot_widget

METRICS = (("x0_mse", "x0-MSE (common scale)"), ("eps_mse", "eps-MSE"), ("loss", "objective's own loss"))
AXES = (("t", "t"), ("log_snr", "log-SNR"))
IN_BETWEEN = 3
RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e")
AGE_COLORS = ("#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08306b")  # first (light) .. latest (dark)


def shown_indices(count: int, between: int = IN_BETWEEN) -> list[int]:
    """Which of ``count`` validations one run shows: the first, the latest and up to ``between``
    evenly spaced ones in between."""
    if count <= 2 + between:
        return list(range(count))
    inner = np.linspace(0, count - 1, between + 2)[1:-1].round().astype(int).tolist()
    return sorted({0, count - 1, *inner})


def curve_arrays(result, metric: str, axis: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float arrays of one validation; None (undefined) and non-positive values (no place on
    a log axis) become NaN, which the curve draws as a gap."""
    xs = result.t if axis == "t" else result.log_snr
    ys = getattr(result, metric)
    x = np.array([np.nan if v is None else float(v) for v in xs], dtype=float)
    y = np.array([np.nan if v is None or not math.isfinite(v) or v <= 0 else float(v) for v in ys], dtype=float)
    return x, y


class ValidationView(QWidget):
    """By-t curves plus the x0-MSE summary and quality measures over steps, for one or more runs."""

    def __init__(self, runs: Iterable[str] = ("",), parent=None):
        super().__init__(parent)
        self.runs = list(runs)
        self.results: dict[str, list] = {r: [] for r in self.runs}  # ValidationResult, by step
        self.quality: dict[str, list[tuple[int, dict]]] = {r: [] for r in self.runs}
        self.metric_combo = QComboBox()
        self.metric_combo.setObjectName("validation.metric")
        for key, label in METRICS:
            self.metric_combo.addItem(label, key)
        self.axis_combo = QComboBox()
        self.axis_combo.setObjectName("validation.axis")
        for key, label in AXES:
            self.axis_combo.addItem(label, key)
        self.quality_combo = QComboBox()
        self.quality_combo.setObjectName("validation.quality")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #555;")
        self.by_t = plot_widget("Loss by noise level", left="x0-MSE", bottom="t")
        self.by_t.setLogMode(False, True)
        self.by_t.addLegend(offset=(-10, 10))
        self.summary = plot_widget("x0-MSE averaged over t", left="x0-MSE", bottom="step")
        self.quality_plot = plot_widget("Sample quality", left="", bottom="step")
        self._build_items()
        self._layout()
        self.metric_combo.currentIndexChanged.connect(self.redraw)
        self.axis_combo.currentIndexChanged.connect(self.redraw)
        self.quality_combo.currentIndexChanged.connect(self._redraw_quality)

    def _build_items(self) -> None:
        slots = 2 + IN_BETWEEN if len(self.runs) == 1 else 1
        self.curves: dict[str, list[pg.PlotDataItem]] = {}
        self.summary_curves: dict[str, pg.PlotDataItem] = {}
        self.quality_curves: dict[str, pg.PlotDataItem] = {}
        for i, run in enumerate(self.runs):
            colors = AGE_COLORS[-slots:] if len(self.runs) == 1 else (RUN_COLORS[i % len(RUN_COLORS)],)
            self.curves[run] = [self.by_t.plot([], [], pen=pen(c), symbol="o", symbolSize=4, symbolBrush=c,
                                               connect="finite") for c in colors]
            c = RUN_COLORS[i % len(RUN_COLORS)]
            self.summary_curves[run] = self.summary.plot([], [], pen=pen(c), symbol="o", symbolSize=4, symbolBrush=c,
                                                         connect="finite", name=run or None)
            self.quality_curves[run] = self.quality_plot.plot([], [], pen=pen(c), symbol="o", symbolSize=4,
                                                              symbolBrush=c, connect="finite", name=run or None)

    def _layout(self) -> None:
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Show"))
        controls.addWidget(self.metric_combo)
        controls.addWidget(QLabel("against"))
        controls.addWidget(self.axis_combo)
        controls.addSpacing(12)
        controls.addWidget(QLabel("Quality"))
        controls.addWidget(self.quality_combo, 1)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.summary)
        right.addWidget(self.quality_plot)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.by_t)
        split.addWidget(right)
        split.setSizes([500, 300])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(split, 1)
        layout.addWidget(self.note)

    # ---------------------------------------------------------------- data in
    def add_result(self, result, run: str = "") -> None:
        """One validation (an engine ValidationResult). A step at or before the latest drops the
        later ones (a run resumed from an earlier checkpoint). With ``run.val_model = both`` only the
        first model seen (EMA) is drawn."""
        first = self.results[run][0].model if self.results[run] else result.model
        if result.model != first:
            return
        self.results[run] = [r for r in self.results[run] if r.step < result.step] + [result]
        self.redraw()

    def add_quality(self, step: int, quality: dict, run: str = "") -> None:
        """Record the quality measures ``{name: number}`` of ``run`` at ``step`` (replacing any at or
        after it) and redraw the quality plot."""
        self.quality[run] = [q for q in self.quality[run] if q[0] < step] + [(int(step), dict(quality))]
        names = [self.quality_combo.itemData(i) for i in range(self.quality_combo.count())]
        for name in quality:
            if name not in names:
                self.quality_combo.addItem(name, name)
        self._redraw_quality()

    def add_rows(self, rows: Iterable[dict], run: str = "") -> None:
        """``metrics.jsonl`` rows: the validation and quality ones are taken, others ignored."""
        from diffstudio.engine.evaluation import ValidationResult

        for row in rows:
            result = ValidationResult.from_row(row)
            if result is not None:
                self.add_result(result, run)
            elif isinstance(row.get("quality"), dict):
                self.add_quality(int(row.get("step", 0)), row["quality"], run)

    def clear(self, run: str | None = None) -> None:
        """Forget the results of ``run`` (all runs when None) and redraw."""
        for r in self.runs if run is None else [run]:
            self.results[r], self.quality[r] = [], []
        if run is None:
            self.quality_combo.clear()
        self.redraw()
        self._redraw_quality()

    # ---------------------------------------------------------------- drawing
    @property
    def metric(self) -> str:
        """The metric shown: 'x0_mse', 'eps_mse' or 'loss'."""
        return self.metric_combo.currentData()

    @property
    def axis(self) -> str:
        """The horizontal axis: 't' or 'log_snr'."""
        return self.axis_combo.currentData()

    def shown(self, run: str = "") -> list:
        """The validations whose curves are drawn for ``run`` (oldest first)."""
        res = self.results[run]
        if len(self.runs) > 1:
            return res[-1:]
        return [res[i] for i in shown_indices(len(res))]

    def redraw(self) -> None:
        """Draw each run's latest validations (older ones lighter) of :attr:`metric` over :attr:`axis`."""
        label = dict(METRICS)[self.metric]
        self.by_t.setLabel("left", label)
        self.by_t.setLabel("bottom", dict(AXES)[self.axis])
        notes = []
        self._drawn: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for run in self.runs:
            shown = self.shown(run)
            slots = self.curves[run]
            self._drawn[run] = []
            for i, item in enumerate(slots):
                k = i - (len(slots) - len(shown))  # the latest always in the darkest slot
                if 0 <= k < len(shown):
                    x, y = curve_arrays(shown[k], self.metric, self.axis)
                    item.setData(x, y, connect="finite")
                    item.setVisible(True)
                    self._drawn[run].append((x, y))
                else:
                    item.setData([], [])
                    item.setVisible(False)
            res = self.results[run]
            steps = np.array([r.step for r in res], dtype=float)
            means = np.array([np.nan if r.x0_mse_mean is None else r.x0_mse_mean for r in res], dtype=float)
            self.summary_curves[run].setData(steps, means, connect="finite")
            if shown:
                latest = shown[-1]
                for u in latest.undefined[:1]:
                    notes.append(f"{run + ': ' if run else ''}undefined at t = {u['t']:g}: {u['reason']}")
        steps_text = ", ".join(str(r.step) for r in self.shown(self.runs[0])) if len(self.runs) == 1 else ""
        self.note.setText("  ".join(notes) + (f"  Curves at steps {steps_text} (darker is later)." if steps_text else ""))

    def _redraw_quality(self, *_args) -> None:
        name = self.quality_combo.currentData()
        self.quality_plot.setLabel("left", name or "")
        for run in self.runs:
            pts = [(s, q[name]) for s, q in self.quality[run] if name in q and q[name] is not None]
            x = np.array([p[0] for p in pts], dtype=float)
            y = np.array([p[1] for p in pts], dtype=float)
            self.quality_curves[run].setData(x, y)

    def curve_data(self, run: str = "") -> list[tuple[np.ndarray, np.ndarray]]:
        """(x, y) of the drawn by-t curves of ``run`` in data units (NaN: a gap), oldest first."""
        return list(getattr(self, "_drawn", {}).get(run, []))


__all__ = ["ValidationView", "shown_indices", "curve_arrays"]
