"""One look for every pyqtgraph plot of the app (white background like the other panels)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGraphicsItem

EDITED = "#1f77b4"  # the schedule being edited
SIGMA = "#ff7f0e"
REFERENCE = "#8c8c8c"
MARKER = "#d62728"
POINT = "#2ca02c"

SIMPLIFY_TOLERANCE = 1e-4  # of the data's extent: 0.1 px on a 1000-px plot
SIMPLIFY_STRIDES = (32, 8, 4, 2)  # coarse to fine; each divides the one before


def configure() -> None:
    """pyqtgraph's global options for every plot of the app: antialiased, white background."""
    pg.setConfigOptions(antialias=True, background="w", foreground="#333")


def plot_widget(title: str = "", left: str = "", bottom: str = "") -> pg.PlotWidget:
    """A PlotWidget in the app's style: optional title and axis labels, light grid, no menu or buttons."""
    configure()
    w = pg.PlotWidget(background="w")
    item = w.getPlotItem()
    if title:
        item.setTitle(title, size="10pt")
    if left:
        item.setLabel("left", left)
    if bottom:
        item.setLabel("bottom", bottom)
    item.showGrid(x=True, y=True, alpha=0.15)
    item.setMenuEnabled(False)
    item.hideButtons()
    return w


def pen(color: str, width: float = 2.0, dashed: bool = False) -> pg.QtGui.QPen:
    """A pen of ``color`` (a Qt colour string), ``width`` in pixels, dashed or solid."""
    p = pg.mkPen(color, width=width)
    if dashed:
        p.setStyle(Qt.PenStyle.DashLine)
    return p


def cache_rendering(*items: QGraphicsItem) -> None:
    """Keep each item's painting as a pixmap, re-rendered only when the item changes or the view
    range/size does. For parts that stay put while other curves move: a repaint of the plot then
    blits them instead of replaying tick text or stroking long dashed paths again."""
    for item in items:
        item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)


def cache_axes(widget: pg.PlotWidget) -> None:
    """Cache the visible axes (their tick labels and, with ``showGrid``, the grid lines that span
    the whole view): pyqtgraph repaints an axis whenever anything under its grid changes."""
    item = widget.getPlotItem()
    cache_rendering(*(item.getAxis(name) for name in ("left", "bottom", "right", "top")
                      if item.getAxis(name).isVisible()))


def fix_range(widget: pg.PlotWidget, x: tuple[float, float] | None = None,
              y: tuple[float, float] | None = None, padding: float = 0.02) -> None:
    """Explicit ranges instead of auto-range: a data edit then never re-lays out the axes."""
    box = widget.getPlotItem().getViewBox()
    box.disableAutoRange()
    if x is not None:
        box.setXRange(*x, padding=padding)
    if y is not None:
        box.setYRange(*y, padding=padding)


def _unit(v: np.ndarray) -> np.ndarray:
    """v scaled to [0, 1] (a constant stays 0)."""
    span = float(v.max() - v.min())
    return (v - v.min()) / (span if span > 0 else 1.0)


def _chord_error(u: np.ndarray, v: np.ndarray, stride: int) -> np.ndarray:
    """For every point, how far it lies (max of both coordinates) from the chord joining the points
    at the multiples of ``stride`` around it, at the same index fraction: an upper bound on its
    distance from that chord."""
    i = np.arange(len(u))
    a = (i // stride) * stride
    b = np.minimum(a + stride, len(u) - 1)
    f = (i - a) / np.maximum(b - a, 1)
    return np.maximum(np.abs(u - (u[a] + f * (u[b] - u[a]))), np.abs(v - (v[a] + f * (v[b] - v[a]))))


def simplify_polyline(x: np.ndarray, y: np.ndarray, tolerance: float = SIMPLIFY_TOLERANCE,
                      strides: tuple[int, ...] = SIMPLIFY_STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """The points of a finite polyline worth drawing: every ``strides[0]``-th point, and inside a
    stretch where the chord strays more than ``tolerance`` (in units of the data's x and y extents)
    from a point, the next finer stride's points, down to every point. Every dropped point stays
    within ``tolerance`` of the drawn polyline, so a smooth 1001-point curve strokes as 100-200."""
    n = len(x)
    if n <= 2 * strides[0]:
        return x, y
    u, v = _unit(np.asarray(x, dtype=float)), _unit(np.asarray(y, dtype=float))
    i = np.arange(n)
    keep = (i % strides[0] == 0) | (i == n - 1)
    for coarse, fine in zip(strides, strides[1:] + (1,)):
        straying = np.bincount(i // coarse, weights=_chord_error(u, v, coarse) > tolerance) > 0
        keep |= straying[i // coarse] & (i % fine == 0)
    return x[keep], y[keep]


class SimplifiedCurve(pg.PlotCurveItem):
    """A curve for smooth, finite data: it holds every point (``getData`` returns them, bounds and
    hit tests use them) and strokes the polyline of :func:`simplify_polyline` through them, the
    same picture with several times fewer vertices (a wide antialiased pen costs per vertex)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.setSegmentedLineMode("off")  # one path, so simplifying is what makes it cheap

    def generatePath(self, x, y):  # noqa: N802 - pyqtgraph API
        return super().generatePath(*simplify_polyline(x, y))
