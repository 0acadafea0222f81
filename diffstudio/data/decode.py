"""Decode one image file into a square (C, r, r) uint16 array, or say why it cannot be used.

Pipeline: header check (decompression bomb) -> first frame -> JPEG draft -> complete decode of the
pixels -> EXIF orientation -> colour mode (:mod:`diffstudio.data.pil_modes`) -> centre-crop to a
square -> Lanczos resize. An image is usable only when every stage succeeded: an exception at any
stage (a corrupt data stream, a truncated file, an unreadable EXIF block) skips the file with its
reason, so a file Pillow cannot decode completely is never used half-decoded (e.g. all black).
uint16 holds 8-bit sources exactly (v * 257) and 16-bit sources at full precision; see
:mod:`diffstudio.data.pixels` for the conversion to float [-1, 1].
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from diffstudio.data.errors import ImageDecodeError
from diffstudio.data.pil_modes import RGB, WHITE, normalise_mode

DEFAULT_MAX_PIXELS = 8192 * 8192
"""Largest image (width * height) accepted; anything bigger counts as a decompression bomb."""

RESAMPLE = Image.Resampling.LANCZOS
_ORIENTATION_TAG = 0x0112


def decode_image(
    path: str | os.PathLike[str],
    resolution: int,
    channels: int,
    background: RGB = WHITE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode ``path`` to uint16 (channels, resolution, resolution).

    Raises ImageDecodeError (its message is the reason) when any stage fails: Pillow cannot
    identify or completely decode the file, the EXIF block cannot be read, the image is a
    decompression bomb, or the file is empty.
    """
    try:
        if os.path.getsize(path) == 0:
            raise ImageDecodeError("empty file (0 bytes)")
        with Image.open(path) as img:
            check_pixel_count(img.size, max_pixels)
            img.seek(0)  # first frame of animated GIF / WebP / multi-page TIFF
            img.draft(img.mode, _draft_size(img.size, resolution))  # JPEG: decode at 1/2..1/8
            img.load()  # the whole pixel stream, before anything else may call (and hide) load()
            img = normalise_mode(_apply_orientation(img), channels, background)
            return to_uint16(centre_crop_resize(img, resolution), channels)
    except ImageDecodeError:
        raise
    except Exception as exc:  # any failure at any stage means "skip this file", with a reason
        raise ImageDecodeError(decode_reason(exc)) from exc


def image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(width, height) from the file's header (no pixel decoding), or None when unreadable."""
    try:
        with Image.open(path) as img:
            return img.size
    except Exception:  # unreadable files are reported by decode_image, with their reason
        return None


def check_pixel_count(size: tuple[int, int], max_pixels: int) -> None:
    """Reject an image whose declared size exceeds ``max_pixels`` (a decompression bomb).
    ``size`` is (width, height) in pixels. Raises ImageDecodeError above the limit."""
    width, height = size
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"decompression bomb: declared size {width}x{height} = {width * height:,} pixels "
            f"exceeds the limit of {max_pixels:,}"
        )


def centre_crop_resize(img: Image.Image, resolution: int) -> Image.Image:
    """Crop the centred square of side min(W, H) and resize it to ``resolution`` (Lanczos)."""
    width, height = img.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    if side != width or side != height:  # crop first: resize(box=...) would filter across it
        img = img.crop((left, top, left + side, top + side))
    return img.resize((resolution, resolution), RESAMPLE, reducing_gap=3.0)


def to_uint16(img: Image.Image, channels: int) -> np.ndarray:
    """``L``/``RGB`` (8-bit, exact v * 257) or ``F`` in [0, 1] -> uint16 (channels, H, W)."""
    if img.mode == "F":
        unit = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        arr = np.rint(unit * 65535.0).astype(np.uint16)
    else:
        arr = np.asarray(img, dtype=np.uint16) * np.uint16(257)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if arr.shape[0] != channels:
        arr = np.repeat(arr, channels, axis=0)
    return np.ascontiguousarray(arr)


def decode_reason(exc: BaseException) -> str:
    """A short human-readable reason for a decoding failure."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb: {message}"
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image (Pillow cannot identify the file format)"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    if isinstance(exc, (OSError, SyntaxError, EOFError)) and "truncat" in message.lower():
        return f"truncated image data ({message})"
    if isinstance(exc, (OSError, SyntaxError, EOFError, ValueError)):
        return f"corrupt or unreadable image ({type(exc).__name__}: {message})"
    return f"cannot decode ({type(exc).__name__}: {message})"


@contextmanager
def pillow_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Within the block, Pillow's own bomb check uses ``max_pixels`` and its warning is an error.

    Both settings are process-wide in Pillow; they are restored on exit. The explicit
    :func:`check_pixel_count` in :func:`decode_image` is the per-file guarantee.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _draft_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """Size to ask a JPEG draft for: the short side stays at least 2x the target resolution."""
    scale = min(1.0, 2 * resolution / max(1, min(size)))
    return max(1, int(size[0] * scale) + 1), max(1, int(size[1] * scale) + 1)


def _apply_orientation(img: Image.Image) -> Image.Image:
    """Rotate/flip a loaded image by its EXIF orientation tag (1 or absent: unchanged).

    An EXIF block that cannot be read raises ImageDecodeError: the file is skipped with that
    reason rather than used with a guessed orientation.
    """
    try:
        orientation = int(img.getexif().get(_ORIENTATION_TAG, 1))
    except Exception as exc:
        raise ImageDecodeError(f"unreadable EXIF block ({decode_reason(exc)})") from exc
    return img if orientation == 1 else ImageOps.exif_transpose(img)

