"""Procedural coloured shapes (circle, square, triangle, star) on a plain background.

Drawn with PIL.ImageDraw at 4x the target resolution and box-downsampled (anti-aliased edges).
Every random choice comes from one ``numpy.random.Generator(seed)``: same seed, same images.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

from diffstudio.data.dataset import InMemoryDataset
from diffstudio.data.pixels import uint8_hwc_to_unit_range

SHAPE_KINDS = ("circle", "square", "triangle", "star")
SUPERSAMPLE = 4


def make_shapes(
    n: int = 4000, resolution: int = 32, channels: int = 3, seed: int = 0
) -> InMemoryDataset:
    """``n`` images of one shape each; labels index SHAPE_KINDS and are balanced across kinds."""
    rng = np.random.default_rng(seed)
    params = _random_params(rng, n)
    mode = "L" if channels == 1 else "RGB"
    images = np.empty((n, resolution, resolution, channels), dtype=np.uint8)
    for i in range(n):
        img = draw_shape(resolution, **{k: v[i] for k, v in params.items()})
        images[i] = np.asarray(img.convert(mode)).reshape(resolution, resolution, channels)
    return InMemoryDataset(x=uint8_hwc_to_unit_range(images),
                           labels=torch.from_numpy(params["kind"].astype(np.int64)),
                           class_names=list(SHAPE_KINDS), kind="image", name="shapes")


def draw_shape(resolution: int, kind: int, fg: np.ndarray, bg: np.ndarray, centre: np.ndarray,
               radius: float, rotation: float) -> Image.Image:
    """One RGB image; ``centre`` and ``radius`` are fractions of the side, rotation in degrees."""
    side = resolution * SUPERSAMPLE
    img = Image.new("RGB", (side, side), tuple(int(c) for c in bg))
    draw = ImageDraw.Draw(img)
    cx, cy, r = centre[0] * side, centre[1] * side, radius * side
    colour = tuple(int(c) for c in fg)
    name = SHAPE_KINDS[int(kind)]
    if name == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif name == "star":
        draw.polygon(_star_points(cx, cy, r, rotation), fill=colour)
    else:
        sides = 4 if name == "square" else 3
        draw.regular_polygon((cx, cy, r), sides, rotation=float(rotation), fill=colour)
    return img.reduce(SUPERSAMPLE)


def _random_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Balanced kinds; fg differs from bg by 96..159 (mod 256) in every channel, for contrast."""
    kind = rng.permutation(np.arange(n) % len(SHAPE_KINDS))
    bg = rng.integers(0, 256, (n, 3))
    fg = (bg + rng.integers(96, 160, (n, 3))) % 256
    radius = rng.uniform(0.18, 0.4, n)
    centre = radius[:, None] + rng.uniform(0.0, 1.0, (n, 2)) * (1.0 - 2.0 * radius[:, None])
    rotation = rng.uniform(0.0, 360.0, n)
    return {"kind": kind, "fg": fg, "bg": bg, "centre": centre, "radius": radius,
            "rotation": rotation}


def _star_points(cx: float, cy: float, r: float, rotation: float) -> list[tuple[float, float]]:
    """Five-pointed star: 10 vertices alternating between radius r and 0.45 r."""
    points = []
    for k in range(10):
        angle = math.radians(rotation) + k * math.pi / 5
        rk = r if k % 2 == 0 else 0.45 * r
        points.append((cx + rk * math.sin(angle), cy - rk * math.cos(angle)))
    return points
