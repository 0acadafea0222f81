"""Normalise any Pillow image mode to ``L``, ``RGB`` or ``F`` (grey in [0, 1]).

Alpha (``LA``, ``RGBA``, ``PA``, palette with ``tRNS``) is composited over a solid background;
``CMYK``/``YCbCr``/``HSV`` go through Pillow's conversion to RGB; high bit-depth grey (``I;16*``,
``I``, ``F``) becomes ``F`` scaled to [0, 1] so no precision is lost before resizing.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from diffstudio.data.errors import ImageDecodeError

RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)

_UINT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})


def normalise_mode(img: Image.Image, channels: int, background: RGB = WHITE) -> Image.Image:
    """Return ``img`` as ``L`` or ``F`` (channels == 1, or grey F for 3) or ``RGB`` (channels == 3).

    A grey ``F`` result is replicated to RGB later, after resizing, by the caller.
    """
    if img.mode in _UINT16_MODES or img.mode in ("I", "F"):
        return high_bit_depth_to_unit(img)
    if img.mode in _ALPHA_MODES or img.has_transparency_data:
        img = composite_over(img, background)
    elif img.mode not in ("1", "L", "RGB"):
        img = _convert_or_fail(img, "RGB")
    return img.convert("L" if channels == 1 else "RGB")


def composite_over(img: Image.Image, background: RGB = WHITE) -> Image.Image:
    """Composite an image with alpha (or palette transparency) over ``background``; RGB out."""
    rgba = _convert_or_fail(img, "RGBA")
    base = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")


def high_bit_depth_to_unit(img: Image.Image) -> Image.Image:
    """Grey 16-bit (``I;16*``), 32-bit int (``I``) or float (``F``) image -> ``F`` in [0, 1].

    ``I;16*`` divides by 65535; ``I`` by 65535 when its values fit in 16 bits (PNG and TIFF
    16-bit grey decode to ``I``) else by 2**32 - 1; ``F`` is taken as [0, 1] when its maximum is
    at most 1, as [0, 255] when at most 255, else divided by its maximum.
    """
    arr = np.asarray(img).astype(np.float64)
    scale = _unit_scale(img.mode, float(arr.max()) if arr.size else 0.0)
    unit = np.clip(np.nan_to_num(arr / scale), 0.0, 1.0).astype(np.float32)
    return Image.fromarray(unit)


def _unit_scale(mode: str, maximum: float) -> float:
    if mode in _UINT16_MODES:
        return 65535.0
    if mode == "I":
        return 65535.0 if maximum <= 65535 else 4294967295.0
    if maximum <= 1.0:
        return 1.0
    return 255.0 if maximum <= 255.0 else maximum


def _convert_or_fail(img: Image.Image, mode: str) -> Image.Image:
    try:
        return img.convert(mode)
    except ValueError as exc:
        raise ImageDecodeError(f"unsupported colour mode {img.mode} ({exc})") from exc
