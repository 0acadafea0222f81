"""The image widget: the drawn picture grows with the widget, keeps its aspect, and is enlarged
nearest-neighbour (pixel art stays blocks of one colour, never blended); scaled pixmaps are cached."""

from __future__ import annotations

import numpy as np
import pytest

from diffstudio.gui.widgets.image_view import WHOLE_SCALE_SHARE, ImageView, ImageWindow, fit_scale

BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def checker(n: int = 2, tile: int = 1) -> np.ndarray:
    """An n x n checker of ``tile``-pixel black and white squares, (H, W, 3) uint8."""
    cells = (np.add.outer(np.arange(n), np.arange(n)) % 2).astype(np.uint8) * 255
    return np.repeat(np.repeat(cells, tile, 0), tile, 1)[..., None].repeat(3, axis=-1)


def grabbed(view: ImageView) -> np.ndarray:
    """What the widget paints, as (H, W, 3) uint8."""
    from PySide6.QtGui import QImage

    image = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    w, h = image.width(), image.height()
    return np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())[:, :3 * w].reshape(h, w, 3).copy()


@pytest.fixture
def view(qtbot):
    view = ImageView(min_size=8)
    qtbot.addWidget(view)
    return view


def drawn(view: ImageView, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    view.resize(*size)
    rect = view.target_rect()
    x, y, w, h = rect.x(), rect.y(), rect.width(), rect.height()
    return grabbed(view)[y:y + h, x:x + w], (x, y, w, h)


def test_fit_scale_prefers_whole_factors_where_they_cost_little():
    assert fit_scale((38, 38), (120, 400)) == 3.0  # 3.16 -> 3: every pixel the same size
    assert fit_scale((38, 38), (400, 160)) == 4.0
    assert fit_scale((10, 10), (19, 19)) == pytest.approx(1.9)  # 1x would lose almost half the room
    assert 1 < WHOLE_SCALE_SHARE * 1.9
    assert fit_scale((100, 50), (50, 50)) == pytest.approx(0.5)  # shrunk to fit
    assert fit_scale((8, 8), (0, 50)) == 0.0 and fit_scale((0, 8), (50, 50)) == 0.0


def test_a_checker_scaled_up_is_pure_blocks_that_grow_with_the_widget(view):
    view.set_image(checker(2))
    sides = []
    for size in ((60, 60), (140, 100), (300, 420)):
        pixels, (_x, _y, w, h) = drawn(view, size)
        assert w == h  # aspect kept
        assert w % 2 == 0 and w >= 0.75 * min(size)  # a whole factor, most of the room
        half = w // 2
        blocks = {(0, 0): BLACK, (0, 1): WHITE, (1, 0): WHITE, (1, 1): BLACK}
        for (r, c), colour in blocks.items():
            block = pixels[r * half:(r + 1) * half, c * half:(c + 1) * half]
            assert (block == colour).all(), f"blended or misplaced pixels at {size}, block {(r, c)}"
        sides.append(w)
    assert sides == sorted(sides) and sides[0] < sides[-1]  # grows with its widget


def test_a_fractional_enlargement_is_nearest_neighbour_too(view):
    """16x16 pixel art in a 27 px square: 1.69x, so pixels of 1 or 2 screen pixels, each one of
    the picture's two colours, and every source pixel still visible."""
    art = checker(16)
    view.set_image(art)
    pixels, (_x, _y, w, h) = drawn(view, (27, 27))
    assert (w, h) == (27, 27)
    colours = {tuple(p) for p in pixels.reshape(-1, 3)}
    assert colours == {BLACK, WHITE}
    rows = np.unique(pixels[:, :, 0], axis=0)  # every row of the checker shows as a screen row
    assert len(rows) == 2 and len({tuple(r) for r in pixels[:, :, 0]}) == 2
    changes = np.count_nonzero(np.diff(pixels[0, :, 0].astype(int)))
    assert changes == 15  # all 16 columns of the first row appear, none merged


def test_a_larger_picture_is_shrunk_to_fit_with_its_aspect(view):
    view.set_image(np.zeros((50, 200, 3), np.uint8))
    view.resize(100, 100)
    rect = view.target_rect()
    assert (rect.width(), rect.height()) == (100, 25)
    assert rect.y() == (100 - 25) // 2


def test_scaled_pixmaps_are_made_once_per_size_and_renewed_with_the_image(view):
    view.set_image(checker(2))
    first = view.scaled_pixmap(40, 40)
    assert view.scaled_pixmap(40, 40) is first  # a repaint at the same size scales nothing
    assert view.scaled_pixmap(60, 60) is not first
    view.set_image(255 - checker(2))  # a new image: the cached pixmaps go with the old one
    pixels, _ = drawn(view, (40, 40))
    assert (pixels[:20, :20] == WHITE).all()


def test_the_image_window_follows_new_pictures_until_told_to_keep_one(qtbot):
    window = ImageWindow(checker(2), "step 100", follow=True)
    qtbot.addWidget(window)
    window.show()
    assert window.show_image(255 - checker(2), "step 200")
    assert np.array_equal(window.view.image, 255 - checker(2)) and window.caption.text() == "step 200"
    window.follow.setChecked(False)
    assert not window.show_image(checker(4), "step 300")
    assert window.caption.text() == "step 200"
    snapshot = ImageWindow(checker(2), "kept")  # not opened on a live preview: never follows
    qtbot.addWidget(snapshot)
    assert not snapshot.show_image(checker(4), "later") and snapshot.follow.isHidden()


def test_the_image_window_opens_large_within_the_screen(qtbot):
    window = ImageWindow(checker(38), "a 4x4 grid of 8x8 digits is 38 px")
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    screen = window.screen().availableGeometry()
    assert window.height() <= screen.height() and window.width() <= max(screen.width(), 440)
    drawn_side = window.view.target_rect().width()
    assert drawn_side % 38 == 0 and drawn_side >= 8 * 38  # a whole factor, each digit pixel 8+ px
