"""The data a training run samples from: device-resident when it fits the memory budget, streamed
from the on-disk pixel cache otherwise.

Image folders always go through the uint8 pixel cache (:mod:`diffstudio.data.pixel_cache`): it is
built once (with progress, resumable) and reused by later runs. A folder whose pixels fit the
budget is read into one uint8 tensor on the device; a larger one is streamed
(:class:`~diffstudio.data.streaming.StreamingDataset`). Built-in and toy datasets are generated in
memory and stay there (as uint8 when their values are 8-bit levels, else float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from diffstudio.core.units import format_bytes
from diffstudio.data.dataset import InMemoryDataset
from diffstudio.data.errors import DatasetError, LoadCancelled
from diffstudio.data.folder_cache import cache_key, cached_rows
from diffstudio.data.folder_scan import folder_labels
from diffstudio.data.image_folder import (
    Progress,
    ShouldCancel,
    _drop_empty_classes,
    _no_usable_error,
    plan_folder,
    resolve_folder,
)
from diffstudio.data.paths import from_portable
from diffstudio.data.pixel_cache import build_pixel_cache, pixel_cache_key
from diffstudio.data.registry import DEFAULT_FOLDER_CHANNELS, load_dataset, source_kind
from diffstudio.data.streaming import StreamingDataset

AUTO_CUDA_FRACTION = 0.25
"""Auto budget on a CUDA device: this fraction of its free memory (the rest is for the model)."""
AUTO_CPU_FRACTION, AUTO_CPU_CAP = 0.10, 512 << 20
"""Auto budget on the CPU: this fraction of the available RAM, at most 512 MiB. On the CPU a
streamed cache is served from the OS page cache, so a private copy mostly doubles the memory."""


@dataclass
class TrainingData:
    """``dataset`` (InMemoryDataset or StreamingDataset), the budget it was placed under (bytes)
    and one line saying where the data lives and why."""

    dataset: InMemoryDataset | StreamingDataset
    budget: int
    placement: str


def memory_budget(setting_mb: int, device: torch.device) -> int:
    """Bytes of data held on ``device``: ``setting_mb`` MiB when > 0; otherwise (auto) 25 % of the
    free memory of a CUDA device, or on the CPU 10 % of the available RAM capped at 512 MiB."""
    if setting_mb > 0:
        return int(setting_mb * 2**20)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(AUTO_CUDA_FRACTION * free)
    return min(int(AUTO_CPU_FRACTION * available_ram()), AUTO_CPU_CAP)


def available_ram() -> int:
    """Bytes of RAM available to new allocations (Linux MemAvailable; else free physical pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30  # unknown: assume 4 GiB


def load_training_data(
    source: str,
    device: torch.device,
    *,
    resolution: int | None = None,
    channels: int | None = None,
    labels: bool = True,
    n: int | None = None,
    seed: int = 0,
    memory_budget_mb: int = 0,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
) -> TrainingData:
    """The training data for ``source`` on ``device`` (arguments as for
    :func:`diffstudio.data.registry.load_dataset`; ``memory_budget_mb`` as :func:`memory_budget`).

    Folders: build or reuse the pixel cache (``progress(done, total)``, ``should_cancel``), then
    hold the first ``n`` (default all) images on the device as uint8 if they fit the budget, else
    stream them. Raises DatasetError (LoadCancelled when cancelled) as ``load_dataset`` does.
    """
    budget = memory_budget(memory_budget_mb, device)
    if source_kind(source) != "folder":
        # built-ins are generated, not decoded into the cache: no "images decoded" progress
        data = load_dataset(source, resolution=resolution, channels=channels, labels=labels, n=n, seed=seed,
                            should_cancel=should_cancel).as_uint8().to(device)
        what = "uint8" if data.x.dtype == torch.uint8 else "float32 (not all values are 8-bit levels)"
        return TrainingData(data, budget, f"data: {source}, {len(data):,} items held on {device} as {what}")
    root = resolve_folder(from_portable(source))
    cache, notes = _folder_cache(root, resolution, channels or DEFAULT_FOLDER_CHANNELS, labels, progress,
                                 should_cancel)
    count = cache.count if n is None else min(n, cache.count)
    size = count * cache.image_bytes
    head = (f"data: {root.name}, {count:,} images of {cache.resolution} px, {format_bytes(size)} as uint8; "
            f"memory budget {format_bytes(budget)}")
    if size <= budget:
        x = torch.from_numpy(cache.read(count))
        y = None if cache.labels is None else torch.from_numpy(cache.labels[:count].copy())
        data = InMemoryDataset(x=x, labels=y, class_names=cache.class_names if y is not None else [],
                               name=root.name, skipped=cache.skipped, notes=notes).to(device)
        return TrainingData(data, budget, f"{head}: held on {device}")
    stream = StreamingDataset(cache, count, name=root.name, skipped=cache.skipped).to(device)
    stream.notes = notes
    return TrainingData(stream, budget, f"{head}: streamed from the cache {cache.path}")


def open_folder(
    source: str,
    *,
    resolution: int | None = None,
    channels: int | None = None,
    labels: bool = True,
    n: int | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
) -> StreamingDataset:
    """The folder ``source`` as a memory-mapped uint8 dataset over its pixel cache, nothing read.

    Builds or reuses the same cache entry :func:`load_training_data` uses (so a run started after
    it never decodes again; ``progress(done, total)``, ``should_cancel`` while building). The result
    holds only the memory map, the labels and the loader's notes: for views and statistics (the app's
    Dataset panel, ``dataset inspect``), which read it in chunks. Raises DatasetError (LoadCancelled
    when cancelled) as :func:`load_training_data` does.
    """
    root = resolve_folder(from_portable(source))
    cache, notes = _folder_cache(root, resolution, channels or DEFAULT_FOLDER_CHANNELS, labels, progress,
                                 should_cancel)
    count = cache.count if n is None else min(n, cache.count)
    data = StreamingDataset(cache, count, name=root.name, skipped=cache.skipped)
    data.notes = notes
    return data


def _folder_cache(root: Path, resolution: int | None, channels: int, labels: bool, progress: Progress | None,
                  should_cancel: ShouldCancel | None):
    """The folder's pixel cache and the loader's notes; ``resolution`` None is "native", chosen as
    :func:`~diffstudio.data.image_folder.load_image_folder` chooses it (never an upscale)."""
    labels, label_note = folder_labels(root, labels)
    files, scan_skipped, options, notes = plan_folder(root, resolution, channels, labels)
    notes = notes + ([label_note] if label_note else [])
    with cached_rows(cache_key(root, files, options), files) as decoded:  # a folder the app has loaded
        try:
            cache = build_pixel_cache(pixel_cache_key(root, files, options), files, options, progress,
                                      should_cancel, decoded=decoded)
        except LoadCancelled:
            raise
        except DatasetError as exc:
            if not exc.skipped:
                raise
            raise _no_usable_error(root, scan_skipped + exc.skipped, len(scan_skipped) + len(files)) from None
    cache.skipped = scan_skipped + cache.skipped
    if cache.labels is not None:  # classes whose files were all skipped go, as in load_image_folder
        labels, cache.class_names, dropped = _drop_empty_classes(root, cache, cache.skipped)
        cache.labels = labels.numpy()
        notes += dropped
    return cache, notes

