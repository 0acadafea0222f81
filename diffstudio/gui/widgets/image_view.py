"""A light image widget: a uint8 picture scaled to fit, pixel-exact when enlarged, with a caption.

Used for thumbnails, sample grids and trajectory strips. Enlarging is nearest-neighbour (an 8x8
digit stays a grid of crisp squares, never a blur), by a whole factor where that costs little of
the room; the scaled pixmap is made once per size, so a paint is a single unscaled drawPixmap."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRect, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

WHOLE_SCALE_SHARE = 0.75
"""Enlarge by a whole factor (every source pixel the same size on screen) when it keeps at least
this share of the scale that would fill the room; below that (e.g. 1.9x, where a whole factor
would be 1x) the picture fills the room with nearest-neighbour pixels of unequal size."""
WINDOW_BOX = 720  # the largest side an ImageWindow opens with, in pixels (smaller on a short screen)
SCALED_CACHE_SIZES = 4  # scaled pixmaps kept per image (the widget's and a few recent sizes)


def fit_scale(size: tuple[int, int], room: tuple[int, int]) -> float:
    """The factor to draw a ``size`` (width, height) picture in ``room`` (width, height) pixels:
    the largest that fits, aspect kept, rounded down to a whole factor when it is at least 1 and
    the whole factor keeps ``WHOLE_SCALE_SHARE`` of it. Below 1 the picture is shrunk to fit.
    Returns 0 for an empty room or picture."""
    w, h = size
    if w <= 0 or h <= 0 or room[0] <= 0 or room[1] <= 0:
        return 0.0
    scale = min(room[0] / w, room[1] / h)
    if scale >= 1 and math.floor(scale) >= WHOLE_SCALE_SHARE * scale:
        return float(math.floor(scale))
    return scale


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) uint8 -> contiguous (H, W, 3) uint8.
    Raises TypeError for any other dtype."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])


def unit_to_uint8(x: np.ndarray) -> np.ndarray:
    """float (C, H, W) or (H, W) in [-1, 1] -> uint8 (H, W, 3), clipped."""
    from diffstudio.data.pixels import unit_range_to_uint8

    a = np.asarray(x, dtype=np.float32)
    return to_uint8_rgb(unit_range_to_uint8(a[None] if a.ndim == 2 else a))


class ImageView(QWidget):
    """Shows a numpy uint8 image centred, aspect kept, as large as the widget allows: enlarged
    nearest-neighbour (:func:`fit_scale`), shrunk smoothly.

    ``set_image(array)``; ``clear(text)`` shows a placeholder. ``image`` holds the last array."""

    def __init__(self, placeholder: str = "", min_size: int = 48, parent=None):
        super().__init__(parent)
        self.image: np.ndarray | None = None
        self._qimage: QImage | None = None
        self._scaled: dict[tuple[int, int], QPixmap] = {}  # (width, height) in device pixels
        self._placeholder = placeholder
        self._min = min_size
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(min_size, min_size)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(160, 160)

    def set_image(self, image: np.ndarray | None) -> None:
        """Show ``image`` uint8 (H, W), (H, W, 1) or (H, W, 3), scaled to fit; None clears. Raises
        TypeError for other dtypes (:func:`to_uint8_rgb`)."""
        if image is None:
            self.clear()
            return
        rgb = to_uint8_rgb(image)
        self.image = rgb
        h, w, _ = rgb.shape
        self._qimage = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self._scaled.clear()
        self.update()

    def clear(self, placeholder: str | None = None) -> None:
        """Show no image, and ``placeholder`` text instead when given."""
        self.image, self._qimage = None, None
        self._scaled.clear()
        if placeholder is not None:
            self._placeholder = placeholder
        self.update()

    def placeholder(self) -> str:
        """The text shown while there is no image."""
        return self._placeholder

    def _device_layout(self) -> tuple[int, int, int, int, float]:
        """(x, y, width, height) of the drawn picture in device pixels, and the device pixel ratio."""
        dpr = self.devicePixelRatioF() or 1.0
        room = (int(self.width() * dpr), int(self.height() * dpr))
        w, h = self._qimage.width(), self._qimage.height()
        scale = fit_scale((w, h), room)
        tw, th = max(1, round(w * scale)), max(1, round(h * scale))
        return (room[0] - tw) // 2, (room[1] - th) // 2, tw, th, dpr

    def target_rect(self) -> QRect:
        """Where the image is drawn, in widget coordinates (empty when there is no image)."""
        if self._qimage is None:
            return QRect()
        x, y, tw, th, dpr = self._device_layout()
        return QRect(round(x / dpr), round(y / dpr), max(1, round(tw / dpr)), max(1, round(th / dpr)))

    def scaled_pixmap(self, width: int, height: int) -> QPixmap:
        """The picture at ``width`` x ``height`` device pixels: nearest-neighbour when enlarged,
        smooth when shrunk; made once per size and kept (up to ``SCALED_CACHE_SIZES`` sizes)."""
        key = (width, height)
        pixmap = self._scaled.get(key)
        if pixmap is None:
            shrink = width < self._qimage.width() or height < self._qimage.height()
            how = Qt.TransformationMode.SmoothTransformation if shrink else Qt.TransformationMode.FastTransformation
            pixmap = QPixmap.fromImage(self._qimage.scaled(width, height, Qt.AspectRatioMode.IgnoreAspectRatio, how))
            while len(self._scaled) >= SCALED_CACHE_SIZES:
                self._scaled.pop(next(iter(self._scaled)))
            self._scaled[key] = pixmap
        return pixmap

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        if self._qimage is None:
            if self._placeholder:
                p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
                p.drawText(self.rect().adjusted(6, 6, -6, -6),
                           Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            p.end()
            return
        x, y, tw, th, dpr = self._device_layout()
        pixmap = self.scaled_pixmap(tw, th)
        pixmap.setDevicePixelRatio(dpr)  # drawn 1:1 onto device pixels, no further scaling
        p.drawPixmap(QPointF(x / dpr, y / dpr), pixmap)
        p.setPen(QColor(0, 0, 0, 60))
        p.drawRect(self.target_rect().adjusted(-1, -1, 0, 0))  # a frame just outside the picture
        p.end()


def save_png(image: np.ndarray, path: str) -> str:
    """Write a uint8 (H, W, 3) picture to ``path`` as PNG (Pillow); returns the path written
    (``.png`` added when missing). Raises OSError when the file cannot be written."""
    from PIL import Image

    if not path.lower().endswith(".png"):
        path += ".png"
    Image.fromarray(to_uint8_rgb(image)).save(path, format="PNG")
    return path


class ImageWindow(QWidget):
    """A resizable top-level window showing one picture large (nearest-neighbour, see
    :class:`ImageView`), with Save PNG…. ``ImageWindow(image, title)``; with ``follow`` ticked,
    :meth:`show_image` replaces the picture (the sample grid follows training); untick it to keep
    this picture. Escape closes it; the window deletes itself when closed."""

    def __init__(self, image: np.ndarray, title: str = "Preview", parent=None, *, follow: bool = False):
        from PySide6.QtGui import QKeySequence, QShortcut
        from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

        super().__init__(parent, Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        self.setWindowTitle(title)
        self.view = ImageView(min_size=128)
        self.view.set_image(image)
        self.caption = QLabel(title)
        self.caption.setWordWrap(True)
        self.follow = QCheckBox("Follow new previews")
        self.follow.setToolTip("Show each new preview here as it arrives; untick to keep this one (e.g. to "
                               "compare it with a later one in another window)")
        self.follow.setChecked(follow)
        self.follow.setVisible(follow)  # only windows opened on a live preview can follow one
        self.save_button = QPushButton("Save PNG…")
        self.save_button.clicked.connect(self.save_dialog)
        row = QHBoxLayout()
        row.addWidget(self.caption, 1)
        row.addWidget(self.follow)
        row.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        layout.addLayout(row)
        self.close_shortcut = QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.close)
        h, w = self.view.image.shape[:2]
        box = WINDOW_BOX
        screen = self.screen()
        if screen is not None:  # at most three quarters of the screen's height
            box = min(box, int(0.75 * screen.availableGeometry().height()))
        scale = max(1, min(16, box // max(h, w, 1)))  # a whole factor, within the box
        self.resize(max(440, w * scale + 24), max(240, h * scale + 80))  # the row under it fits

    def following(self) -> bool:
        return self.follow.isChecked()

    def show_image(self, image: np.ndarray, title: str) -> bool:
        """Show a newer ``image`` (uint8) titled ``title`` when following; True when shown."""
        if not self.following():
            return False
        self.view.set_image(image)
        self.caption.setText(title)
        self.setWindowTitle(title)
        return True

    def save_dialog(self) -> str | None:
        """Ask for a file and save the shown image as PNG; its path, or None when cancelled."""
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self, "Save the picture", "preview.png", "PNG image (*.png)")
        return save_png(self.view.image, path) if path else None
