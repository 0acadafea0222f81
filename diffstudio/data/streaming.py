"""Training batches gathered from a memory-mapped pixel cache by a background thread.

For a dataset larger than the memory budget. The step's random draws are those of
:meth:`InMemoryDataset.sample_batch` (indices, then flips, from the shared generator), so the same
seed gives the same batches, and bit-identical weights, on either path.

Reading ahead: once the trainer has drawn everything for a step (the end of its ``_batch``), the
generator's state is exactly the one the next step's index draw starts from. :meth:`prefetch`
copies that state into a private generator, draws the next indices with it on a reader thread,
gathers those rows from the memory map (into pinned memory when the target is a CUDA device) and
starts the copy to the device on a side stream. The next :meth:`sample_batch` draws its indices
from the real generator as always and uses the prepared batch only when they are equal (else it
gathers synchronously), so reading ahead can never change what is trained on.

With ``shard = (rank, world)`` (torchrun) every rank draws the global indices and reads only its
own slice of them from the shared cache.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
import torch
from torch import Tensor

from diffstudio.data.dataset import SkippedFile, _check_generator, draw_indices, finish_batch
from diffstudio.data.pixel_cache import PixelCache
from diffstudio.data.pixels import uint8_to_unit_range

_RING = 2  # host buffers: the one being filled and the one whose batch is being uploaded/used


class StreamingDataset:
    """Images (N, C, H, W) uint8 read from a :class:`PixelCache` batch by batch.

    Offers what the trainer uses of :class:`InMemoryDataset`: ``kind``, ``channels``,
    ``resolution``, ``labels``, ``num_classes``, :meth:`to`, :meth:`sample_batch` (float32 in
    [-1, 1] on the target device), plus :meth:`prefetch` and :meth:`close`. Labels (int64, N) are
    held in memory on the target device. Not safe for concurrent use by several threads.
    """

    kind = "image"

    def __init__(self, cache: PixelCache, count: int | None = None, name: str = "",
                 skipped: list[SkippedFile] | None = None, labels: bool = True):
        self.cache = cache
        self.pixels = cache.memmap(count)
        use_labels = labels and cache.labels is not None
        self.labels = torch.from_numpy(cache.labels[: len(self.pixels)].copy()) if use_labels else None
        self.class_names = list(cache.class_names) if use_labels else []
        self.name, self.skipped = name, list(skipped or [])
        self.notes: list[str] = []  # the loader's one-line notes (native resolution, dropped classes)
        self._device = torch.device("cpu")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="diffstudio-stream")
        self._pending: Future | None = None
        self._ring: list[tuple[Tensor, torch.cuda.Event | None]] = []
        self._turn = 0
        self._stream = None
        self.reads = {"ahead": 0, "waited": 0}  # batches read ahead / read on the training thread
        self.rows: np.ndarray | None = None  # cache rows of a subset (the training part of a split)

    def subset(self, indices: Tensor) -> StreamingDataset:
        """A dataset over the same cache holding only items ``indices`` (sorted, int64), in that order:
        its item ``i`` is this dataset's item ``indices[i]``; nothing is copied but the index."""
        rows = np.asarray(indices.cpu().numpy(), dtype=np.int64)
        if self.rows is not None:
            rows = self.rows[rows]
        sub = StreamingDataset(self.cache, len(self.pixels), self.name, self.skipped, labels=False)
        sub.rows, sub.class_names, sub.notes = rows, list(self.class_names), list(self.notes)
        sub.labels = None if self.labels is None else self.labels[indices.to(self.labels.device)]
        return sub.to(self._device)

    def materialize(self, indices: Tensor):
        """Items ``indices`` as a device-resident uint8 :class:`InMemoryDataset` (held-out sets)."""
        from diffstudio.data.dataset import InMemoryDataset

        x = torch.from_numpy(self._gather(np.asarray(indices.cpu().numpy(), dtype=np.int64)))
        y = None if self.labels is None else self.labels[indices.to(self.labels.device)].cpu()
        return InMemoryDataset(x=x, labels=y, class_names=list(self.class_names) if y is not None else [],
                               name=self.name)

    def __len__(self) -> int:
        return int(self.pixels.shape[0] if self.rows is None else len(self.rows))

    @property
    def num_classes(self) -> int:
        """How many classes the labels name (0 without labels)."""
        return len(self.class_names) if self.labels is not None else 0

    @property
    def channels(self) -> int:
        """C, the channels of one image."""
        return int(self.pixels.shape[1])

    @property
    def resolution(self) -> int:
        """The side of the (square) images in pixels."""
        return int(self.pixels.shape[-1])

    @property
    def device(self) -> torch.device:
        """Where batches are delivered."""
        return self._device

    @property
    def nbytes(self) -> int:
        """Bytes of the pixels on disk (N * C * H * W)."""
        return int(self.pixels.nbytes)

    def as_uint8(self) -> StreamingDataset:
        """Self: the pixels are uint8 already."""
        return self

    def to(self, device: torch.device | str) -> StreamingDataset:
        """Deliver batches (and hold the labels) on ``device``; returns self."""
        self._device = torch.device(device)
        if self.labels is not None:
            self.labels = self.labels.to(self._device)
        if self._device.type == "cuda":
            self._stream = torch.cuda.Stream(self._device)
        self._ring = []
        return self

    def sample_batch(
        self, batch_size: int, generator: torch.Generator, hflip: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> tuple[Tensor, Tensor | None]:
        """As :meth:`InMemoryDataset.sample_batch`: ``(x float32 (B, C, H, W) in [-1, 1], labels (B,)
        int64 or None)`` on the target device. Raises ValueError when ``generator`` is not on that
        device's type."""
        _check_generator(generator, self._device)
        idx = draw_indices(len(self), batch_size, generator, shard)
        rows = self._take_prepared(idx)
        self.reads["ahead" if rows is not None else "waited"] += 1
        if rows is None:
            rows = torch.from_numpy(self._gather(idx.cpu().numpy())).to(self._device)
        x = finish_batch(rows, generator, hflip, shard)
        labels = None if self.labels is None else self.labels[idx]
        return x, labels

    def prefetch(self, generator: torch.Generator, batch_size: int, shard: tuple[int, int] = (0, 1)) -> None:
        """Start reading the batch whose indices ``generator`` will draw next (see the module doc)."""
        self._drop_pending()
        state, device = generator.get_state(), generator.device
        slot = self._slot(batch_size)
        self._pending = self._reader.submit(self._read_ahead, state, device, batch_size, shard, slot)

    def close(self) -> None:
        """Finish the read in flight and stop the reader thread."""
        self._drop_pending()
        self._reader.shutdown(wait=True)

    def read_items(self, start: int, stop: int) -> np.ndarray:
        """Items ``start`` to ``stop`` (clipped to the dataset) as uint8 (n, C, H, W), read from the
        cache into a private array (chunked statistics and views)."""
        start, stop = max(0, start), min(stop, len(self))
        if self.rows is None:
            return np.array(self.pixels[start:stop])
        return self._gather(np.arange(start, stop))

    def preview(self, n: int) -> Tensor:
        """The first ``n`` images on the CPU as float32 in [-1, 1]."""
        return uint8_to_unit_range(torch.from_numpy(self._gather(np.arange(min(max(0, n), len(self))))))

    # ---- reader ---------------------------------------------------------------------------------
    def _read_ahead(self, state: Tensor, device: torch.device, batch_size: int, shard: tuple[int, int],
                    slot: tuple[Tensor, torch.cuda.Event | None]) -> tuple[Tensor, Tensor]:
        host, uploaded = slot
        if uploaded is not None:
            uploaded.synchronize()  # this buffer's previous upload has finished
        with torch.cuda.stream(self._stream) if self._stream is not None else nullcontext():
            twin = torch.Generator(device=device)
            twin.set_state(state)
            idx = draw_indices(len(self), batch_size, twin, shard)
            self._gather(idx.cpu().numpy(), out=host.numpy())
            if self._stream is None:
                return idx, host
            rows = host.to(self._device, non_blocking=True)
            uploaded.record(self._stream)
        return idx, rows

    def _take_prepared(self, idx: Tensor) -> Tensor | None:
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        ahead_idx, rows = pending.result()
        if ahead_idx.shape != idx.shape or not torch.equal(ahead_idx, idx):
            return None  # the stream was used otherwise than foreseen: read synchronously
        if self._stream is not None:
            current = torch.cuda.current_stream(self._device)
            current.wait_stream(self._stream)
            rows.record_stream(current)
        return rows

    def _gather(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self.rows is not None:
            idx = self.rows[idx]
        if out is None:
            return np.take(self.pixels, idx, axis=0)
        return np.take(self.pixels, idx, axis=0, out=out, mode="clip")  # "raise" would buffer a copy

    def _slot(self, batch_size: int) -> tuple[Tensor, torch.cuda.Event | None]:
        shape = (batch_size, *self.pixels.shape[1:])
        if not self._ring or tuple(self._ring[0][0].shape) != shape:
            cuda = self._device.type == "cuda"
            self._ring = [(torch.empty(shape, dtype=torch.uint8, pin_memory=cuda),
                           torch.cuda.Event() if cuda else None) for _ in range(_RING)]
        self._turn = (self._turn + 1) % _RING
        return self._ring[self._turn]

    def _drop_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()
