"""The one preview type: what the app and the CLI show of a model — trained, loaded from a
checkpoint, or the exact oracle. It crosses threads (training thread -> UI), so it is frozen."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Preview:
    """Samples of one model under one set of sampling settings.

    ``samples``: float32 (N, C, H, W) in [-1, 1] for images, (N, 2) for 2-D points;
    ``labels``: (N,) class labels or None; ``grid``: uint8 (H', W', 3) tiling of (some of) the
    images (:func:`diffstudio.data.pixels.image_grid`); ``mean_brightness``: (N,) per-image mean;
    ``trajectory``: ``(t, x_t, x0_hat)`` of sample 0 at each step (numpy, one sample's shape);
    ``warnings``: plain-language problems met while sampling (e.g. a singular prediction).
    The oracle also fills ``spread`` (std of the reported statistic over the samples divided by
    the data's, 1.0 = the full range), ``data_std``, ``grid_times`` (the sampling grid) and
    ``title``; ``source`` says who made it ("model" or "oracle"). ``trajectory`` and ``warnings``
    are stored as tuples."""

    step: int
    kind: str  # "image" | "points"
    samples: np.ndarray
    labels: np.ndarray | None = None
    grid: np.ndarray | None = None
    mean_brightness: np.ndarray | None = None
    trajectory: tuple[tuple[float, np.ndarray, np.ndarray], ...] = field(default_factory=tuple)
    warnings: tuple[str, ...] = field(default_factory=tuple)
    spread: float = float("nan")
    data_std: float = 1.0
    grid_times: np.ndarray | None = None
    source: str = "model"
    title: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "trajectory", tuple(self.trajectory))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def points(self) -> np.ndarray | None:
        """The samples of a 2-D points preview (None for images)."""
        return self.samples if self.kind == "points" else None

    def replace(self, **changes: Any) -> "Preview":
        """A copy with some fields replaced (``dataclasses.replace``)."""
        import dataclasses

        return dataclasses.replace(self, **changes)
