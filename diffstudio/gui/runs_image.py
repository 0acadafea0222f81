"""Small views shared by the dataset panel and the run windows: an image grid and a 2-D scatter."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from diffstudio.gui.widgets.image_view import ImageView
from diffstudio.gui.widgets.plots import plot_widget

SCATTER_MAX_POINTS = 4000
LABEL_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf")


class GridImageView(QWidget):
    """A uint8 (H, W, 3) picture (scaled to fit, pixel-exact when enlarged) with a caption."""

    def __init__(self, caption: str = "", parent=None):
        super().__init__(parent)
        self.canvas = ImageView()
        self.caption = QLabel(caption)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.caption)

    @property
    def image(self) -> np.ndarray | None:
        """The shown image, uint8 (H, W, 3), or None."""
        return self.canvas.image

    def set_image(self, image: np.ndarray | None, caption: str | None = None) -> None:
        """Show ``image`` (uint8 (H, W[, C]); None clears) and, when given, a new caption."""
        self.canvas.set_image(image)
        if caption is not None:
            self.caption.setText(caption)


class PointsView(QWidget):
    """A 2-D scatter (toy datasets and their samples), coloured by label when given."""

    def __init__(self, caption: str = "", parent=None):
        super().__init__(parent)
        self.plot_widget = plot_widget()
        self.plot_widget.setAspectLocked(True)
        self.scatter = pg.ScatterPlotItem(size=3, pen=None)
        self.plot_widget.addItem(self.scatter)
        self.caption = QLabel(caption)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(self.caption)
        self.points: np.ndarray | None = None

    def set_points(self, points: np.ndarray | None, labels: np.ndarray | None = None,
                   caption: str | None = None) -> None:
        """Scatter ``points`` (N, 2) (at most ``SCATTER_MAX_POINTS``), coloured by ``labels`` (N,) when
        given; None or empty clears. A new caption when given."""
        if points is None or len(points) == 0:
            self.points = None
            self.scatter.clear()
        else:
            points = np.asarray(points, dtype=np.float64)[:SCATTER_MAX_POINTS]
            self.points = points
            brushes = _brushes(labels, len(points))
            self.scatter.setData(points[:, 0], points[:, 1], brush=brushes)
            self.plot_widget.autoRange()
        if caption is not None:
            self.caption.setText(caption)


def _brushes(labels: np.ndarray | None, n: int):
    if labels is None:
        return pg.mkBrush(31, 119, 180, 140)
    table = [pg.mkBrush(pg.mkColor(c)) for c in LABEL_COLORS]
    return [table[int(k) % len(table)] for k in np.asarray(labels)[:n]]
