"""Every Pillow mode and file format decodes to the right pixel values (float32, [-1, 1])."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffstudio.data import load_image_folder
from diffstudio.data.decode import decode_image

RES = 8
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def unit(rgb: tuple[int, ...]) -> torch.Tensor:
    """8-bit values -> the [-1, 1] convention."""
    return torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1.0


def load_single(tmp_path: Path, write_file: Callable, name: str, channels: int = 3) -> torch.Tensor:
    """Load a folder holding only sample ``name``; return its one image (C, RES, RES)."""
    folder = tmp_path / name.replace(".", "_")
    write_file(folder, name)
    dataset = load_image_folder(folder, RES, channels, use_cache=False)
    assert len(dataset) == 1 and dataset.skipped == []
    assert dataset.x.dtype == torch.float32 and dataset.x.shape == (1, channels, RES, RES)
    assert dataset.x.min() >= -1.0 and dataset.x.max() <= 1.0
    return dataset.x[0]


def centre_pixel(img: torch.Tensor) -> torch.Tensor:
    return img[:, RES // 2, RES // 2]


@pytest.mark.parametrize(
    ("name", "rgb", "atol"),
    [
        ("red.png", RED, 1e-6),
        ("green.jpg", GREEN, 0.03),
        ("blue.webp", BLUE, 1e-6),
        ("grey.bmp", (128, 128, 128), 1e-6),
        ("teal.tiff", (0, 128, 128), 1e-6),
        ("anim.gif", RED, 1e-6),  # first frame red, second blue
        ("cmyk.jpg", RED, 0.03),  # CMYK (0, 255, 255, 0) is red
    ],
)
def test_formats_decode_to_expected_rgb(tmp_path: Path, write_file: Callable, name: str,
                                        rgb: tuple[int, int, int], atol: float) -> None:
    img = load_single(tmp_path, write_file, name)
    expected = unit(rgb)[:, None, None].expand_as(img)
    torch.testing.assert_close(img, expected, atol=atol, rtol=0)


def test_red_to_grey_uses_itu601_luma(tmp_path: Path, write_file: Callable) -> None:
    img = load_single(tmp_path, write_file, "red.png", channels=1)
    # Pillow's L = 0.299 R + 0.587 G + 0.114 B -> 76 for pure red
    torch.testing.assert_close(img, torch.full_like(img, 76 / 127.5 - 1.0), atol=1e-6, rtol=0)


def test_grey_source_repeats_to_rgb(tmp_path: Path) -> None:
    folder = tmp_path / "grey"
    folder.mkdir()
    Image.new("L", (10, 10), 200).save(folder / "g.png")
    img = load_image_folder(folder, RES, 3, use_cache=False).x[0]
    torch.testing.assert_close(img, torch.full_like(img, 200 / 127.5 - 1.0), atol=1e-6, rtol=0)


def test_rgba_transparent_pixels_composite_over_white(tmp_path: Path, write_file: Callable) -> None:
    img = load_single(tmp_path, write_file, "rgba.png")
    torch.testing.assert_close(img[:, 4, 0], unit(WHITE), atol=1e-6, rtol=0)  # transparent left
    torch.testing.assert_close(img[:, 4, -1], unit(BLUE), atol=1e-6, rtol=0)  # opaque right


def test_rgba_half_alpha_blends_with_background(tmp_path: Path) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    Image.new("RGBA", (8, 8), (0, 0, 0, 128)).save(folder / "half.png")
    img = load_image_folder(folder, RES, 3, use_cache=False).x[0]
    expected = round(255 * (1 - 128 / 255)) / 127.5 - 1.0  # black at 50% over white
    torch.testing.assert_close(img, torch.full_like(img, expected), atol=2 / 255, rtol=0)


def test_background_colour_is_configurable(tmp_path: Path, write_file: Callable) -> None:
    folder = tmp_path / "bg"
    write_file(folder, "rgba.png")
    img = load_image_folder(folder, RES, 3, background=(0, 255, 0), use_cache=False).x[0]
    torch.testing.assert_close(img[:, 4, 0], unit(GREEN), atol=1e-6, rtol=0)


def test_palette_transparency_composites_over_white(tmp_path: Path, write_file: Callable) -> None:
    img = load_single(tmp_path, write_file, "palette.png")
    torch.testing.assert_close(img[:, 4, 0], unit(WHITE), atol=1e-6, rtol=0)  # transparent index
    torch.testing.assert_close(img[:, 4, -1], unit(RED), atol=1e-6, rtol=0)


def test_la_transparent_black_becomes_white(tmp_path: Path, write_file: Callable) -> None:
    img = load_single(tmp_path, write_file, "la.png", channels=1)
    torch.testing.assert_close(img, torch.ones_like(img), atol=1e-6, rtol=0)


def test_sixteen_bit_grey_keeps_full_precision(tmp_path: Path, write_file: Callable) -> None:
    img = load_single(tmp_path, write_file, "gray16.png", channels=1)
    expected = 25_828 / 32767.5 - 1.0  # between two 8-bit levels: 8 bits would be off by ~3e-3
    torch.testing.assert_close(img, torch.full_like(img, expected), atol=1e-5, rtol=0)


def test_sixteen_bit_white_is_one(tmp_path: Path) -> None:
    folder = tmp_path / "w16"
    folder.mkdir()
    Image.fromarray(np.full((9, 9), 65535, dtype=np.uint16)).save(folder / "w.png")
    img = load_image_folder(folder, RES, 3, use_cache=False).x[0]
    assert img.shape == (3, RES, RES)
    torch.testing.assert_close(img, torch.ones_like(img), atol=1e-6, rtol=0)


def test_exif_orientation_6_is_applied(tmp_path: Path, write_file: Callable) -> None:
    img = load_single(tmp_path, write_file, "exif6.jpg")
    # stored top red / bottom blue; displayed rotated 90 degrees clockwise: left blue, right red
    torch.testing.assert_close(img[:, RES // 2, 0], unit(BLUE), atol=0.03, rtol=0)
    torch.testing.assert_close(img[:, RES // 2, -1], unit(RED), atol=0.03, rtol=0)
    torch.testing.assert_close(img[:, 0, RES // 2 - 2], img[:, -1, RES // 2 - 2], atol=0.03, rtol=0)


def test_non_square_is_centre_cropped(tmp_path: Path) -> None:
    folder = tmp_path / "wide"
    folder.mkdir()
    img = Image.new("RGB", (36, 12), BLUE)  # blue | red | green, 12 px each
    img.paste(RED, (12, 0, 24, 12))
    img.paste(GREEN, (24, 0, 36, 12))
    img.save(folder / "wide.png")
    x = load_image_folder(folder, RES, 3, use_cache=False).x[0]
    torch.testing.assert_close(x, unit(RED)[:, None, None].expand_as(x), atol=1e-6, rtol=0)


def test_tall_image_is_centre_cropped(tmp_path: Path) -> None:
    folder = tmp_path / "tall"
    folder.mkdir()
    img = Image.new("L", (10, 30), 0)
    img.paste(255, (0, 10, 10, 20))
    img.save(folder / "tall.png")
    x = load_image_folder(folder, RES, 1, use_cache=False).x[0]
    torch.testing.assert_close(x, torch.ones_like(x), atol=1e-6, rtol=0)


def test_decode_image_returns_uint16_exact_for_8_bit(tmp_path: Path, write_file: Callable) -> None:
    path = write_file(tmp_path, "red.png")
    arr = decode_image(path, 4, 3)
    assert arr.dtype.name == "uint16" and arr.shape == (3, 4, 4)
    assert (arr[0] == 65535).all() and (arr[1:] == 0).all()
