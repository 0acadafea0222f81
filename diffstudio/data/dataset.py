"""The in-memory dataset every loader returns and the trainer samples from.

Training holds a dataset that fits its memory budget on the device as one tensor: a batch is an
index gather plus an optional on-device horizontal flip, never per-step PIL work or Python loops over
images. Image data whose values are all 8-bit levels is held as uint8 (4x smaller than float32) and
converted per batch; larger folders stream from their on-disk cache
(:mod:`diffstudio.data.streaming`), drawing the same batches from the same random stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from diffstudio.data.pixels import uint8_to_unit_range, unit_range_to_exact_uint8

DatasetKind = Literal["image", "points"]


@dataclass(frozen=True)
class SkippedFile:
    """A file that was found but not used, and the human-readable reason why."""

    file: str
    reason: str


@dataclass
class InMemoryDataset:
    """A whole dataset as one tensor.

    ``x``: images float32 (N, C, H, W) in [-1, 1] with H == W, or points float32 (N, 2); images
    may instead be stored as uint8 levels ``v`` meaning ``v / 127.5 - 1`` (see :meth:`as_uint8`):
    :meth:`sample_batch` and :meth:`preview` always return float32 in [-1, 1].
    ``labels``: int64 (N,) class indices into ``class_names``, or None when unlabelled.
    ``skipped``: the files that were found but not used, each with its reason (``file`` is
    printable text: bytes that are not UTF-8 appear as ``\\xNN`` escapes).
    ``notes``: one-line messages about choices the loader made that the user should hear of
    (a class dropped for want of usable images, the resolution chosen for "native").
    Treat instances as read-only: loaders may cache and share them.
    """

    x: Tensor
    labels: Tensor | None = None
    class_names: list[str] = field(default_factory=list)
    kind: DatasetKind = "image"
    name: str = ""
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_x(self.x, self.kind)
        if self.labels is not None:
            _check_labels(self.labels, len(self.x), len(self.class_names))

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes; 0 for an unlabelled dataset."""
        return len(self.class_names) if self.labels is not None else 0

    @property
    def channels(self) -> int:
        """C for images (1 or 3); the point dimension (2) for points."""
        return int(self.x.shape[1])

    @property
    def resolution(self) -> int | None:
        """Side of the square images; None for points."""
        return int(self.x.shape[-1]) if self.kind == "image" else None

    @property
    def device(self) -> torch.device:
        """Device the tensors live on."""
        return self.x.device

    @property
    def nbytes(self) -> int:
        """Bytes the stored tensor takes (uint8 images: N*C*H*W)."""
        return self.x.numel() * self.x.element_size()

    def as_uint8(self) -> InMemoryDataset:
        """The same images stored as uint8 when every value is an 8-bit level (image folders of
        8-bit files), so batches are bit-identical; otherwise (points, generated float data) self."""
        if self.kind != "image" or self.x.dtype == torch.uint8:
            return self
        levels = unit_range_to_exact_uint8(self.x)
        return self if levels is None else replace(self, x=levels)

    def to(self, device: torch.device | str) -> InMemoryDataset:
        """Return a dataset whose tensors live on ``device`` (self when already there)."""
        device = torch.device(device)
        if self.x.device == device:
            return self
        labels = None if self.labels is None else self.labels.to(device)
        return replace(self, x=self.x.to(device), labels=labels)

    def without_labels(self) -> InMemoryDataset:
        """The same data with labels and class names dropped."""
        return replace(self, labels=None, class_names=[])

    def head(self, n: int) -> InMemoryDataset:
        """The first ``n`` items (all of them when ``n >= len(self)``)."""
        if n >= len(self):
            return self
        labels = None if self.labels is None else self.labels[:n]
        return replace(self, x=self.x[:n], labels=labels)

    def sample_batch(
        self, batch_size: int, generator: torch.Generator, hflip: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> tuple[Tensor, Tensor | None]:
        """Draw ``batch_size`` items uniformly with replacement, on the data's device.

        ``generator`` must live on the same device as the data. With ``hflip`` each image is
        mirrored left-right with probability 1/2 (ignored for points, where a flip would change
        the distribution). ``shard = (rank, world)``: draw the global batch of ``batch_size * world``
        items and return only this rank's ``batch_size`` of them (every rank holds the same
        generator state, so the ranks together see exactly what one process would). Returns
        ``(x (B, ...), labels (B,) or None)``.
        Raises ValueError for an empty dataset or a generator on another device type.
        """
        _check_generator(generator, self.x.device)
        n = len(self)
        if n == 0:
            raise ValueError(f"cannot sample from the empty dataset {self.name!r}")
        idx = draw_indices(n, batch_size, generator, shard)
        x = finish_batch(self.x[idx], generator, hflip and self.kind == "image", shard)
        labels = None if self.labels is None else self.labels[idx]
        return x, labels

    def prefetch(self, generator: torch.Generator, batch_size: int, shard: tuple[int, int] = (0, 1)) -> None:
        """Nothing to do: the data is already on the device (the streaming loader reads ahead here)."""

    def close(self) -> None:
        """Nothing to release (the streaming loader stops its reader thread here)."""

    def preview(self, n: int) -> Tensor:
        """The first ``n`` items on the CPU as float32 (for thumbnails and scatter previews)."""
        x = self.x[: max(0, n)].detach().cpu()
        return uint8_to_unit_range(x) if x.dtype == torch.uint8 else x


def draw_indices(n: int, batch_size: int, generator: torch.Generator, shard: tuple[int, int]) -> Tensor:
    """This rank's ``batch_size`` of the ``batch_size * world`` indices drawn uniformly from [0, n)
    (int64, on the generator's device): the first draw of a step from the shared random stream."""
    rank, world = shard
    full = torch.randint(n, (batch_size * world,), generator=generator, device=generator.device)
    return full[rank * batch_size:(rank + 1) * batch_size]


def finish_batch(x: Tensor, generator: torch.Generator, hflip: bool, shard: tuple[int, int]) -> Tensor:
    """Gathered rows (B, ...) uint8 or float32 -> float32: with ``hflip`` each image is mirrored
    left-right where this rank's slice of ``rand(B * world) < 0.5`` (the step's second draw); uint8
    levels ``v`` become ``v / 127.5 - 1``. Both the device-resident and the streaming path end here."""
    if hflip:
        rank, world = shard
        b = x.shape[0]
        flip = torch.rand(b * world, generator=generator, device=generator.device)[rank * b:(rank + 1) * b] < 0.5
        x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    return uint8_to_unit_range(x) if x.dtype == torch.uint8 else x


def _check_x(x: Tensor, kind: DatasetKind) -> None:
    if x.dtype != torch.float32 and not (kind == "image" and x.dtype == torch.uint8):
        raise ValueError(f"dataset tensor must be float32 (or uint8 images), got {x.dtype}")
    if kind == "image" and (x.ndim != 4 or x.shape[-1] != x.shape[-2]):
        raise ValueError(f"image data must be (N, C, H, W) with H == W, got {tuple(x.shape)}")
    if kind == "points" and x.ndim != 2:
        raise ValueError(f"point data must be (N, D), got {tuple(x.shape)}")
    if kind not in ("image", "points"):
        raise ValueError(f"unknown dataset kind {kind!r}")


def _check_labels(labels: Tensor, n: int, num_classes: int) -> None:
    if labels.dtype != torch.int64 or labels.shape != (n,):
        got = f"{labels.dtype} {tuple(labels.shape)}"
        raise ValueError(f"labels must be int64 of shape ({n},), got {got}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) (one per class name)")


def _check_generator(generator: torch.Generator, device: torch.device) -> None:
    if generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device} but the data is on {device}; "
            "create the generator with torch.Generator(device=dataset.device)"
        )
