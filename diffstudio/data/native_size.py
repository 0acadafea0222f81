"""The resolution "native" means for a folder of images: chosen from the sizes found, never upscaled.

A folder's images are centre-cropped to a square of side min(W, H) and resized to one training
resolution. "Native" picks that resolution as the smallest square side found in the folder,
capped at :data:`NATIVE_MAX_RESOLUTION` (a bigger default would make a first run on a folder of
photos slow and memory-hungry); so no image is ever upscaled, and the choice comes with a note
naming the sizes found, so a different resolution can be chosen explicitly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

NATIVE_MAX_RESOLUTION = 64
"""Largest resolution "native" picks for a folder (pixels); set data.resolution for more."""

MIN_RESOLUTION = 4
"""Smallest side training takes (the lower bound of the ``data.resolution`` setting): "native"
never picks less, even for a folder of smaller images (they are then upscaled, and the note says so)."""


@dataclass(frozen=True)
class NativeChoice:
    """The resolution chosen for "native" (pixels), the sizes it was chosen from, and why."""

    resolution: int
    sizes: dict[tuple[int, int], int]  # (width, height) -> number of images of that size
    note: str


def choose_native_resolution(sizes: Iterable[tuple[int, int] | None],
                             cap: int = NATIVE_MAX_RESOLUTION) -> NativeChoice:
    """Pick min(``cap``, smallest min(W, H) among ``sizes``), but at least :data:`MIN_RESOLUTION`
    (or ``cap`` when it is smaller); ``None`` entries are ignored.

    Returns the choice with a one-line note such as "resolution 'native' is 40 px: the smallest
    square side found, so no image is upscaled; image sizes found: 48x40 (3), 64x64 (5)".
    With no known size (every header unreadable) the resolution is ``cap``.
    Raises ValueError when ``cap`` < 1.
    """
    if cap < 1:
        raise ValueError(f"cap must be at least 1 pixel, got {cap}")
    counts = Counter(s for s in sizes if s is not None)
    if not counts:
        return NativeChoice(cap, {}, f"resolution 'native' is {cap} px (no image size could be read)")
    smallest = min(min(w, h) for w, h in counts)
    resolution = max(min(MIN_RESOLUTION, cap), min(cap, smallest))
    if resolution == smallest:
        why = "the smallest square side found, so no image is upscaled"
    elif resolution > smallest:
        upscaled = sum(n for (w, h), n in counts.items() if min(w, h) < resolution)
        why = (f"the smallest side training takes ({upscaled} of {sum(counts.values())} images are smaller and "
               f"are upscaled)")
    else:
        why = f"the largest 'native' picks for a folder (every image is at least {smallest} px: all are downscaled)"
    note = (f"resolution 'native' is {resolution} px: {why}; image sizes found: {format_sizes(counts)}. "
            "Set data.resolution to choose another.")
    return NativeChoice(resolution, dict(counts), note)


def upscale_note(sizes: Iterable[tuple[int, int] | None], resolution: int) -> str | None:
    """A note when an explicitly chosen ``resolution`` upscales some images, else None.

    E.g. "3 of 8 images are smaller than 64 px and are upscaled (smallest square side 40 px;
    sizes found: 48x40 (3), 128x128 (5))". ``None`` entries (unreadable headers) are ignored.
    """
    counts = Counter(s for s in sizes if s is not None)
    small = sum(n for (w, h), n in counts.items() if min(w, h) < resolution)
    if not small:
        return None
    smallest = min(min(w, h) for w, h in counts)
    return (f"{small} of {sum(counts.values())} images are smaller than {resolution} px and are upscaled "
            f"(smallest square side {smallest} px; sizes found: {format_sizes(counts)})")


def format_sizes(counts: dict[tuple[int, int], int], limit: int = 5) -> str:
    """``"48x40 (3), 64x64 (5)"``: the most common sizes first, at most ``limit`` of them."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"{w}x{h} ({n})" for (w, h), n in ranked[:limit])
    more = len(ranked) - limit
    return text + (f" and {more} more size(s)" if more > 0 else "")


def resolve_resolution(sizes: Iterable[tuple[int, int] | None], resolution: int | None) -> tuple[int, list[str]]:
    """``(resolution, notes)`` for images of ``sizes``: ``None`` is "native"
    (:func:`choose_native_resolution`, with its note); an explicit side is kept, with a note when
    it upscales (:func:`upscale_note`). Shared by the folder loader and the training cache."""
    sizes = list(sizes)
    if resolution is None:
        native = choose_native_resolution(sizes)
        return native.resolution, [native.note]
    note = upscale_note(sizes, resolution)
    return resolution, [note] if note else []
