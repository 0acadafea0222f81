"""Control points on a plot that the mouse can drag, each move passed through a constraint."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

Constrain = Callable[[int, float, float], tuple[float, float]]


class DraggablePoints(pg.GraphItem):
    """Points joined by nothing, draggable with the left button (pyqtgraph's CustomGraphItem
    pattern). ``constrain(i, x, y) -> (x, y)`` limits a move; ``moved(i, x, y)`` reports it while
    dragging and ``finished()`` at the release. :meth:`move_point` is the same path without a mouse."""

    def __init__(self, constrain: Constrain | None = None,
                 moved: Callable[[int, float, float], None] | None = None,
                 finished: Callable[[], None] | None = None,
                 color: str = "#2ca02c"):
        super().__init__()
        self.constrain = constrain or (lambda i, x, y: (x, y))
        self.moved = moved or (lambda i, x, y: None)
        self.finished = finished or (lambda: None)
        self.xy = np.zeros((0, 2))
        self.dragging: int | None = None
        self._offset = np.zeros(2)
        self._brush = pg.mkBrush(color)
        self._pen = pg.mkPen("w", width=1.5)
        self.setZValue(20)

    def set_points(self, pos) -> None:
        """Replace every point (display coordinates, shape (n, 2))."""
        self.xy = np.array(pos, dtype=float).reshape(-1, 2)
        self._refresh()

    def _refresh(self) -> None:
        super().setData(pos=self.xy, size=13, symbol="o", pxMode=True, symbolBrush=self._brush,
                        symbolPen=self._pen, data=np.arange(len(self.xy)))
        self.setCursor(Qt.CursorShape.OpenHandCursor)

    def index_at(self, pos) -> int | None:
        """The point under ``pos`` (item coordinates), if any."""
        spots = self.scatter.pointsAt(pos)
        return int(spots[0].data()) if len(spots) else None

    def move_point(self, i: int, x: float, y: float) -> tuple[float, float]:
        """Move point ``i`` towards ``(x, y)`` as far as the constraint allows; returns where it went."""
        x, y = self.constrain(i, float(x), float(y))
        self.xy[i] = (x, y)
        self._refresh()
        self.moved(i, x, y)
        return x, y

    def mouseDragEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        if ev.isStart():
            down = ev.buttonDownPos()
            index = self.index_at(down)
            if index is None:
                ev.ignore()
                return
            self.dragging = index
            self._offset = self.xy[index] - np.array([down.x(), down.y()])
        elif ev.isFinish():
            if self.dragging is not None:
                self.dragging = None
                self.finished()
            ev.accept()
            return
        elif self.dragging is None:
            ev.ignore()
            return
        target = np.array([ev.pos().x(), ev.pos().y()]) + self._offset
        self.move_point(self.dragging, target[0], target[1])
        ev.accept()
