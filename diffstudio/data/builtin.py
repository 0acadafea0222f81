"""Built-in offline image datasets, deterministic for a seed: digits, shapes, lighting(-flat)."""

from __future__ import annotations

from typing import NamedTuple

from diffstudio.data.dataset import InMemoryDataset
from diffstudio.data.digits import DIGITS_COUNT, make_digits
from diffstudio.data.errors import DatasetError
from diffstudio.data.lighting import lighting_brightness_range, make_lighting, make_lighting_flat
from diffstudio.data.shapes import SHAPE_KINDS, make_shapes

__all__ = [
    "BUILTIN_IMAGE_DATASETS", "BuiltinInfo", "SHAPE_KINDS", "lighting_brightness_range",
    "make_builtin", "make_digits", "make_lighting", "make_lighting_flat", "make_shapes",
]


class BuiltinInfo(NamedTuple):
    """(default resolution, default channels, has labels, one-line description)."""

    resolution: int
    channels: int
    has_labels: bool
    description: str


BUILTIN_IMAGE_DATASETS: dict[str, BuiltinInfo] = {
    "digits": BuiltinInfo(8, 1, True, "scikit-learn handwritten digits: 1797 grey 8x8, 10 classes"),
    "shapes": BuiltinInfo(32, 3, True, "coloured circles, squares, triangles and stars, 4 classes"),
    "lighting": BuiltinInfo(32, 1, False, "soft patterns at mean brightness U(-1, 1): black to white"),
    "lighting-flat": BuiltinInfo(32, 1, False, "constant images at brightness U(-1, 1): exact denoiser"),
}

DEFAULT_COUNTS = {"digits": DIGITS_COUNT, "shapes": 4000, "lighting": 4096, "lighting-flat": 4096}


def make_builtin(name: str, resolution: int | None = None, channels: int | None = None,
                 n: int | None = None, seed: int = 0) -> InMemoryDataset:
    """Generate built-in ``name``; None means the default resolution / channels / count.

    ``digits`` is fixed data: ``seed`` is unused and ``n`` takes its first n images (at most 1797).
    ``resolution`` in pixels (1 to 1024), ``channels`` 1 or 3. Raises DatasetError for an unknown
    name, channels, resolution or count out of range.
    """
    info = BUILTIN_IMAGE_DATASETS.get(name)
    if info is None:
        known = ", ".join(BUILTIN_IMAGE_DATASETS)
        raise DatasetError(f"Unknown built-in dataset {name!r}; known: {known}")
    res, ch = resolution or info.resolution, channels or info.channels
    count = DEFAULT_COUNTS[name] if n is None else n
    _check(name, res, ch, count)
    if name == "digits":
        return make_digits(res, ch, count)
    if name == "shapes":
        return make_shapes(count, res, ch, seed)
    make = make_lighting if name == "lighting" else make_lighting_flat
    return make(count, res, ch, seed)


def _check(name: str, resolution: int, channels: int, count: int) -> None:
    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if not 1 <= resolution <= 1024:
        raise DatasetError(f"resolution must be between 1 and 1024, got {resolution}")
    limit = DIGITS_COUNT if name == "digits" else 1_000_000
    if not 1 <= count <= limit:
        raise DatasetError(f"{name}: n must be between 1 and {limit:,}, got {count}")
