"""A dataset of VAE posteriors: each image is kept as the mean and std of its latent, so every
batch draws fresh latents ``z = mean + std * n`` (as latent-diffusion trainers sample
``latent_dist.sample()`` per step) without running the encoder again.

Batches follow :meth:`~diffstudio.data.dataset.InMemoryDataset.sample_batch`'s random stream
(indices, then flips), then draw the latent noise. A flip cannot be done on latents, so with
``hflip`` the posteriors of the mirrored images are kept too and a flip picks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass
class LatentDataset:
    """``mean``, ``std``: float32 (N, c, h, w) scaled latents; ``flip_mean``/``flip_std`` those of
    the mirrored images (or None); ``labels`` int64 (N,) or None. Read-only once built."""

    mean: Tensor
    std: Tensor
    labels: Tensor | None = None
    class_names: list[str] = field(default_factory=list)
    name: str = ""
    flip_mean: Tensor | None = None
    flip_std: Tensor | None = None
    kind: str = "image"

    def __post_init__(self) -> None:
        if self.mean.ndim != 4 or self.mean.shape != self.std.shape:
            raise ValueError(f"latent mean and std must share one (N, c, h, w) shape, got {tuple(self.mean.shape)} "
                             f"and {tuple(self.std.shape)}")

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    def prefetch(self, generator, batch_size: int, shard: tuple[int, int] = (0, 1)) -> None:
        """Nothing to read ahead: the posteriors are held on the device (the Trainer's data contract)."""

    def close(self) -> None:
        """Nothing to release (the Trainer's data contract)."""

    @property
    def num_classes(self) -> int:
        """How many classes the labels name (0 without labels)."""
        return len(self.class_names) if self.labels is not None else 0

    @property
    def channels(self) -> int:
        """c, the latent channels."""
        return int(self.mean.shape[1])

    @property
    def resolution(self) -> int:
        """The side of the (square) latents, in latent pixels (the images' side over the VAE's factor)."""
        return int(self.mean.shape[-1])

    @property
    def device(self) -> torch.device:
        """Where the posteriors (and labels) are held."""
        return self.mean.device

    @property
    def x(self) -> Tensor:
        """The posterior means (what a deterministic encoder would give)."""
        return self.mean

    def to(self, device: torch.device | str) -> "LatentDataset":
        """The same posteriors and labels on ``device`` (self when already there)."""
        device = torch.device(device)
        if self.mean.device == device:
            return self

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return replace(self, mean=move(self.mean), std=move(self.std), labels=move(self.labels),
                       flip_mean=move(self.flip_mean), flip_std=move(self.flip_std))

    def without_labels(self) -> "LatentDataset":
        """The same posteriors with no labels (an unconditional run)."""
        return replace(self, labels=None, class_names=[])

    def sample_batch(self, batch_size: int, generator: torch.Generator, hflip: bool = False,
                     shard: tuple[int, int] = (0, 1)) -> tuple[Tensor, Tensor | None]:
        """``(z (B, c, h, w), labels (B,) or None)``: ``batch_size`` posteriors drawn uniformly with
        replacement (this rank's share of ``batch_size * world``), each sampled once.
        Raises ValueError for a generator on another device type, or ``hflip`` on latents
        encoded without the mirrored images."""
        if generator.device.type != self.device.type:
            raise ValueError(f"generator is on {generator.device} but the latents are on {self.device}")
        rank, world = shard
        part = slice(rank * batch_size, (rank + 1) * batch_size)
        idx = torch.randint(len(self), (batch_size * world,), generator=generator, device=self.device)[part]
        mean, std = self.mean[idx], self.std[idx]
        if hflip:
            if self.flip_mean is None:
                raise ValueError("hflip needs the mirrored images' latents: encode the dataset with hflip")
            flip = (torch.rand(batch_size * world, generator=generator, device=self.device)[part] < 0.5)[:, None, None, None]
            mean = torch.where(flip, self.flip_mean[idx], mean)
            std = torch.where(flip, self.flip_std[idx], std)
        noise = torch.randn((batch_size * world,) + tuple(mean.shape[1:]), generator=generator, device=self.device)[part]
        labels = None if self.labels is None else self.labels[idx]
        return mean + std * noise, labels

    def preview(self, n: int) -> Tensor:
        """The first ``n`` posterior means (n, c, h, w) on the CPU, in scaled latent units."""
        return self.mean[: max(0, n)].detach().cpu()


__all__ = ["LatentDataset"]
