"""Fixtures for the data tests: an isolated dataset cache and builders of (bad) image files."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
EXIF_ORIENTATION = 0x0112


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own $DIFFSTUDIO_CACHE, so nothing touches ~/.cache."""
    root = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("DIFFSTUDIO_CACHE", str(root))
    return root / "datasets"


def _solid(colour: tuple[int, ...], size: tuple[int, int] = (12, 12), mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def _saved(img: Image.Image, **options: object) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        img.save(path, **options)
        return path

    return write


def _raw(data: bytes) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return write


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A ~60-byte PNG whose header declares width x height RGB pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body + _png_chunk(b"IEND", b""))
    return path


def write_truncated_png(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_exif6_jpeg(path: Path) -> Path:
    """Stored: top half red, bottom half blue; EXIF 6 = display rotated 90 degrees clockwise,
    so the displayed image is blue on the left and red on the right."""
    img = _solid(RED, (24, 24))
    img.paste(BLUE, (0, 12, 24, 24))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    img.save(path, exif=exif, quality=95)
    return path


def write_palette_transparent(path: Path) -> Path:
    """Palette PNG: left half index 1 (transparent), right half index 0 (red)."""
    img = Image.new("P", (12, 12), 0)
    img.putpalette([*RED, *GREEN] + [0] * (256 * 3 - 6))
    img.paste(1, (0, 0, 6, 12))
    img.save(path, transparency=1)
    return path


def write_rgba(path: Path) -> Path:
    """RGBA: left half fully transparent black, right half opaque blue."""
    img = _solid((0, 0, 0, 0), mode="RGBA")
    img.paste((*BLUE, 255), (6, 0, 12, 12))
    img.save(path)
    return path


def write_animated_gif(path: Path) -> Path:
    """Two frames, red then blue: only the first (red) must be used."""
    _solid(RED).save(path, save_all=True, append_images=[_solid(BLUE)], duration=100, loop=0)
    return path


def write_gray16(path: Path, value: int = 25_828) -> Path:
    """16-bit grey PNG (mode I;16) of one value that 8 bits cannot represent exactly."""
    Image.fromarray(np.full((12, 12), value, dtype=np.uint16)).save(path)
    return path


WRITERS: dict[str, Callable[[Path], Path]] = {
    "red.png": _saved(_solid(RED)),
    "green.jpg": _saved(_solid(GREEN), quality=95),
    "blue.webp": _saved(_solid(BLUE), lossless=True),
    "grey.bmp": _saved(_solid((128, 128, 128))),
    "teal.tiff": _saved(_solid((0, 128, 128))),
    "anim.gif": write_animated_gif,
    "palette.png": write_palette_transparent,
    "la.png": _saved(_solid((0, 0), mode="LA")),
    "rgba.png": write_rgba,
    "cmyk.jpg": _saved(_solid((0, 255, 255, 0), mode="CMYK"), quality=95),
    "gray16.png": write_gray16,
    "exif6.jpg": write_exif6_jpeg,
}
"""Valid images, one per format/mode, keyed by file name."""

BAD_WRITERS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated.png": (write_truncated_png, "truncated"),
    "empty.png": (_raw(b""), "empty file"),
    "text.png": (_raw(b"this is not an image\n"), "not a readable image"),
    "bomb.png": (write_bomb_png, "decompression bomb"),
}
"""Undecodable files keyed by name, with a word their skip reason must contain."""


@pytest.fixture
def write_file() -> Callable[[Path, str], Path]:
    """``write_file(folder, name)`` writes the sample ``name`` of WRITERS or BAD_WRITERS."""

    def write(folder: Path, name: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        writer = WRITERS[name] if name in WRITERS else BAD_WRITERS[name][0]
        writer(folder / name)
        return folder / name

    return write


@pytest.fixture
def mixed_folder(tmp_path: Path, write_file: Callable[[Path, str], Path]) -> Path:
    """Every valid and bad sample in nested folders, plus files that must be ignored."""
    root = tmp_path / "mixed"
    for i, name in enumerate(sorted(WRITERS)):
        write_file(root / ("nested/deeper" if i % 3 == 0 else ""), name)
    for name in BAD_WRITERS:
        write_file(root / "bad", name)
    (root / "notes.txt").write_text("ignored: not an image extension")
    (root / ".hidden.png").write_bytes(b"ignored: hidden")
    return root


@pytest.fixture
def good_names() -> list[str]:
    """Names of the valid samples (what ``write_file`` can write that must load)."""
    return sorted(WRITERS)


@pytest.fixture
def bad_reasons() -> dict[str, str]:
    """Names of the undecodable samples -> a word their skip reason must contain."""
    return {name: keyword for name, (_, keyword) in BAD_WRITERS.items()}
