"""The fixed split of a dataset into training and held-out validation items, as index sets.

The split is a pure function of the dataset's length, the share held out and a seed, so every
process of a ``torchrun`` job and every resume of a run compute the same one without talking to
each other. It is expressed as sorted index tensors over the dataset, so any data path (the
in-memory tensor, a memory-mapped or streamed store) can exclude the held-out items by gathering
only the training indices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class Split:
    """``train`` and ``val``: sorted, disjoint int64 index tensors (CPU) whose union is
    ``range(n)``; ``val_order``: the held-out indices in the permutation's order, so that its first
    ``k`` entries are a uniformly random subset of the held-out set."""

    n: int
    train: Tensor
    val: Tensor
    val_order: Tensor

    def fingerprint(self) -> str:
        """A short hash of ``(n, val)``: two runs with equal fingerprints hold out the same items."""
        h = hashlib.sha1(f"{self.n}:".encode())
        h.update(self.val.numpy().astype("<i8").tobytes())
        return h.hexdigest()[:16]


def describe_split(n: int, held_out: int, unit: str = "items") -> str:
    """``"301 images (286 for training, 15 held out for validation)"``: the whole dataset first, as
    the data's load message counts it, then the split; ``"301 images"`` when nothing is held out.
    Shared by the run's message and ``train --dry-run`` so that both count the same way."""
    if held_out <= 0:
        return f"{n:,} {unit}"
    return f"{n:,} {unit} ({n - held_out:,} for training, {held_out:,} held out for validation)"


def held_out_count(n: int, fraction: float) -> int:
    """Items held out of ``n`` for a share ``fraction`` (0 <= fraction < 1): ``round(n fraction)``,
    at least 1 when the share is positive, and never all of them (at least one item trains).
    Raises ValueError for a fraction outside [0, 1)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction: expected 0 <= fraction < 1, got {fraction}")
    if fraction == 0.0 or n < 2:
        return 0
    return min(n - 1, max(1, round(n * fraction)))


def split_indices(n: int, fraction: float, seed: int = 0) -> Split:
    """A uniformly random held-out set of :func:`held_out_count` items from ``range(n)``, drawn
    with ``torch.randperm`` on a CPU generator seeded with ``seed`` (identical on every machine)."""
    count = held_out_count(n, fraction)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    val_order = perm[:count]
    return Split(n, perm[count:].sort().values, val_order.sort().values, val_order)


def take(dataset, indices: Tensor, *, in_memory: bool = False):
    """The items ``indices`` of an :class:`~diffstudio.data.dataset.InMemoryDataset` (a new
    dataset sharing nothing with the old one's storage; labels follow). A StreamingDataset gives
    a subset over the same cache, or with ``in_memory`` the items read into an InMemoryDataset."""
    if hasattr(dataset, "subset"):
        return dataset.materialize(indices) if in_memory else dataset.subset(indices)
    idx = indices.to(dataset.x.device)
    labels = None if dataset.labels is None else dataset.labels[idx]
    return replace(dataset, x=dataset.x[idx], labels=labels)


def split_dataset(full, fraction: float, seed: int, items: int):
    """``(split, training items, evaluated held-out items or None)`` of an InMemoryDataset: the
    :func:`split_indices` split, the training part gathered from ``split.train`` and the first
    ``items`` held-out items in random order (``split.val_order``); the rest of the held-out set
    is neither trained on nor evaluated."""
    split = split_indices(len(full), fraction, seed)
    if len(split.val) == 0:
        return split, full, None
    return split, take(full, split.train), take(full, split.val_order[:items], in_memory=True)


__all__ = ["Split", "held_out_count", "split_indices", "split_dataset", "take"]
