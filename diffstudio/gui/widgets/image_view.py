"""A light image widget: a uint8 picture scaled to fit, pixel-exact when enlarged, with a caption.

Used for thumbnails, sample grids and trajectory strips; painting is a single drawImage."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget


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
    """Shows a numpy uint8 image centred, aspect kept, nearest-neighbour when enlarged.

    ``set_image(array)``; ``clear(text)`` shows a placeholder. ``image`` holds the last array."""

    def __init__(self, placeholder: str = "", min_size: int = 48, parent=None):
        super().__init__(parent)
        self.image: np.ndarray | None = None
        self._qimage: QImage | None = None
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
        self.update()

    def clear(self, placeholder: str | None = None) -> None:
        """Show no image, and ``placeholder`` text instead when given."""
        self.image, self._qimage = None, None
        if placeholder is not None:
            self._placeholder = placeholder
        self.update()

    def placeholder(self) -> str:
        """The text shown while there is no image."""
        return self._placeholder

    def target_rect(self) -> QRect:
        """Where the image is drawn (integer scale when it fits, else fit)."""
        if self._qimage is None:
            return QRect()
        w, h = self._qimage.width(), self._qimage.height()
        scale = min(self.width() / w, self.height() / h)
        if scale >= 1:
            scale = max(1, int(scale))
        tw, th = max(1, int(w * scale)), max(1, int(h * scale))
        return QRect((self.width() - tw) // 2, (self.height() - th) // 2, tw, th)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        if self._qimage is None:
            if self._placeholder:
                p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
                p.drawText(self.rect().adjusted(6, 6, -6, -6),
                           Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            p.end()
            return
        rect = self.target_rect()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, rect.width() < self._qimage.width())
        p.drawImage(rect, self._qimage)
        p.setPen(QColor(0, 0, 0, 60))
        p.drawRect(rect.adjusted(0, 0, -1, -1))
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
    """A resizable top-level window showing one picture large (pixel-exact at integer scales),
    with Save PNG…. ``ImageWindow(image, title)``; the window deletes itself when closed."""

    def __init__(self, image: np.ndarray, title: str = "Preview", parent=None):
        from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout

        super().__init__(parent, Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        self.setWindowTitle(title)
        self.view = ImageView(min_size=128)
        self.view.set_image(image)
        self.caption = QLabel(title)
        self.caption.setWordWrap(True)
        self.save_button = QPushButton("Save PNG…")
        self.save_button.clicked.connect(self.save_dialog)
        row = QHBoxLayout()
        row.addWidget(self.caption, 1)
        row.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        layout.addLayout(row)
        h, w = self.view.image.shape[:2]
        scale = max(1, min(8, 720 // max(h, w, 1)))  # a larger integer scale, within a 720 px box
        self.resize(max(320, w * scale + 24), max(240, h * scale + 64))

    def save_dialog(self) -> str | None:
        """Ask for a file and save the shown image as PNG; its path, or None when cancelled."""
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self, "Save the picture", "preview.png", "PNG image (*.png)")
        return save_png(self.view.image, path) if path else None
