"""What a backbone needs to know about its data: kind, channels, resolution, number of classes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

DataKind = Literal["image", "points"]


@dataclass(frozen=True)
class DataInfo:
    """``kind`` "image" (``channels`` x ``resolution`` x ``resolution``) or "points" (vectors of
    ``channels`` numbers, ``resolution`` 0). ``num_classes`` 0 means unlabelled data."""

    kind: DataKind = "image"
    channels: int = 1
    resolution: int = 0
    num_classes: int = 0

    def __post_init__(self) -> None:
        if self.resolution is None:  # points have no resolution
            object.__setattr__(self, "resolution", 0)
        if self.kind not in ("image", "points"):
            raise ValueError(f"kind: expected 'image' or 'points', got {self.kind!r}")
        if self.channels < 1:
            raise ValueError(f"channels: must be at least 1, got {self.channels}")
        if self.kind == "image" and self.resolution < 1:
            raise ValueError(f"resolution: an image needs a positive resolution, got {self.resolution}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes: must be >= 0, got {self.num_classes}")

    @classmethod
    def from_dataset(cls, dataset: Any, *, labels: bool = True, channels: int | None = None,
                     resolution: int | None = None) -> "DataInfo":
        """What a model is fitted to, from anything with ``kind``, ``channels``, ``resolution`` and
        ``num_classes`` (an :class:`~diffstudio.data.dataset.InMemoryDataset`, a streamed or latent
        dataset). ``labels`` False (``data.labels``): no classes, whatever the data carry.
        ``channels`` / ``resolution`` given: those of the model's input instead (a VAE's latents)."""
        classes = int(dataset.num_classes) if labels else 0
        return cls(kind=dataset.kind, channels=int(channels or dataset.channels),
                   resolution=int(resolution or dataset.resolution or 0), num_classes=classes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (the ``data`` entry of a model spec)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataInfo":
        """Read :meth:`to_dict`'s dict back; a missing resolution or class count is 0. Raises KeyError
        without ``kind`` or ``channels``, ValueError as ``__post_init__`` does."""
        return cls(kind=d["kind"], channels=int(d["channels"]), resolution=int(d.get("resolution") or 0),
                   num_classes=int(d.get("num_classes") or 0))
