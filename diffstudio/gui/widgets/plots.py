"""One look for every pyqtgraph plot of the app (white background like the other panels)."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt

EDITED = "#1f77b4"  # the schedule being edited
SIGMA = "#ff7f0e"
REFERENCE = "#8c8c8c"
MARKER = "#d62728"
POINT = "#2ca02c"


def configure() -> None:
    pg.setConfigOptions(antialias=True, background="w", foreground="#333")


def plot_widget(title: str = "", left: str = "", bottom: str = "") -> pg.PlotWidget:
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
    p = pg.mkPen(color, width=width)
    if dashed:
        p.setStyle(Qt.PenStyle.DashLine)
    return p
