"""Load a folder of images (recursively) into an :class:`InMemoryDataset`.

Every file is decoded once (a small thread pool; Pillow releases the GIL while decoding), bad
files are skipped with a reason, and the result is cached on disk so that loading an unchanged
folder again is a single safetensors read (:mod:`diffstudio.data.folder_cache`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from diffstudio.data.dataset import InMemoryDataset, SkippedFile
from diffstudio.data.decode import DEFAULT_MAX_PIXELS, decode_image, image_size, pillow_pixel_limit
from diffstudio.data.errors import DatasetError, ImageDecodeError, LoadCancelled
from diffstudio.data.folder_cache import DecodedFolder, cache_key, read_cached, write_cached
from diffstudio.data.folder_scan import (
    IMAGE_EXTENSIONS,
    ImageFile,
    class_folders,
    class_names_of,
    scan_folder,
)
from diffstudio.data.native_size import resolve_resolution
from diffstudio.data.paths import printable
from diffstudio.data.pil_modes import RGB, WHITE
from diffstudio.data.pixels import uint16_to_unit_range

DECODER_VERSION = 2
"""Part of the cache key: bumped when decoding or skipping rules change (2: an image is usable
only when decoded completely), so entries made by an older rule are never reused."""

Progress = Callable[[int, int], None]
ShouldCancel = Callable[[], bool]


def load_image_folder(
    path: str | os.PathLike[str],
    resolution: int | None,
    channels: int,
    labels: bool = False,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
    *,
    background: RGB = WHITE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    use_cache: bool = True,
    workers: int | None = None,
) -> InMemoryDataset:
    """Decode the images under ``path`` to float32 (N, channels, resolution, resolution), [-1, 1].

    Images are centre-cropped to a square and resized (Lanczos); transparency is composited
    over ``background``; images larger than ``max_pixels`` are rejected as decompression bombs.
    ``resolution`` None means "native": the smallest square side found (read from the file
    headers), at most 64 px, so no image is upscaled; the choice and the sizes found are one
    of the result's ``notes`` (:mod:`diffstudio.data.native_size`). An explicit resolution that
    upscales some images is honoured and said in ``notes`` too.
    With ``labels`` the class of a file is its first-level sub-folder; a class folder without a
    usable image is dropped (the remaining labels are renumbered 0..K-1 in name order) and said
    so in ``notes``. Symbolic links are followed, with loop and duplicate protection
    (:mod:`diffstudio.data.folder_scan`). ``progress(done, total)`` is called from the calling
    thread; ``should_cancel()`` returning True raises LoadCancelled. The result's ``skipped``
    lists every file found but not used, with the reason. Raises DatasetError for a missing
    folder or one without a single usable image.
    """
    root = resolve_folder(path)
    files, scan_skipped, options, notes = plan_folder(root, resolution, channels, labels, background, max_pixels)
    key = cache_key(root, files, options) if use_cache else None
    decoded = read_cached(key) if key else None
    if decoded is not None:
        if progress is not None:
            progress(len(files), len(files))
    else:
        decoded = _decode_folder(files, options, progress, should_cancel, workers)
        if key and len(decoded.pixels):
            write_cached(key, decoded, source=printable(root))
    dataset = _to_dataset(root, decoded, scan_skipped, len(files) + len(scan_skipped))
    dataset.notes[:0] = notes
    return dataset


def plan_folder(root: Path, resolution: int | None, channels: int, labels: bool, background: RGB = WHITE,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[list[ImageFile], list, dict, list[str]]:
    """What every folder loader decides before decoding: ``(files, skipped by the scan, decode
    options, notes)``. ``options`` holds the resolution ("native" resolved from the file headers,
    :mod:`diffstudio.data.native_size`), channels, labels, background, max_pixels and the decoder
    version (the caches' keys). Raises DatasetError for bad options or a folder without a usable
    image (the same words for the in-memory and the pixel-cache loaders)."""
    _check_options(resolution, channels)
    files, scan_skipped = scan_folder(root, labels)
    if not files:
        if scan_skipped:
            raise _no_usable_error(root, scan_skipped, len(scan_skipped))
        raise _no_images_error(root)
    resolution, notes = resolve_resolution(_header_sizes(files), resolution)
    options = {"resolution": resolution, "channels": channels, "labels": labels,
               "background": list(background), "max_pixels": max_pixels, "decoder": DECODER_VERSION}
    return files, scan_skipped, options, notes


def _header_sizes(files: list[ImageFile]) -> list[tuple[int, int] | None]:
    """(width, height) of each file from its header (~40 us a file); None where unreadable.

    Pillow's warnings about damaged headers are silenced here: decoding reports those files.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [image_size(f.path) for f in files]


def resolve_folder(path: str | os.PathLike[str]) -> Path:
    """Absolute folder path; DatasetError when it does not exist or is not a folder."""
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise DatasetError(f"Dataset folder does not exist: {printable(root)}")
    if not root.is_dir():
        raise DatasetError(f"Dataset source is a file, not a folder: {printable(root)}")
    return root


def _decode_folder(
    files: list[ImageFile],
    options: dict,
    progress: Progress | None,
    should_cancel: ShouldCancel | None,
    workers: int | None,
) -> DecodedFolder:
    """Decode all files into one preallocated uint16 array; record failures as SkippedFile."""
    res, ch = options["resolution"], options["channels"]
    pixels = np.empty((len(files), ch, res, res), dtype=np.uint16)
    kept: list[int] = []
    skipped: list[SkippedFile] = []
    results = _decode_parallel(files, options, progress, should_cancel, workers)
    for i, result in enumerate(results):
        if isinstance(result, SkippedFile):
            skipped.append(result)
        else:
            pixels[len(kept)] = result
            kept.append(i)
    class_names = class_names_of(files) if options["labels"] else []
    labels = _labels_of([files[i] for i in kept], class_names) if options["labels"] else None
    return DecodedFolder(pixels[: len(kept)], labels, class_names, skipped)


def _decode_parallel(
    files: list[ImageFile],
    options: dict,
    progress: Progress | None,
    should_cancel: ShouldCancel | None,
    workers: int | None,
) -> Iterator[np.ndarray | SkippedFile]:
    """Yield each file's pixels or SkippedFile in order; progress and cancel on this thread."""
    total = len(files)
    workers = workers or min(4, os.cpu_count() or 1)
    if progress is not None:
        progress(0, total)
    with pillow_pixel_limit(options["max_pixels"]), ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda f: _decode_or_skip(f, options), files)
        for done, result in enumerate(results, start=1):
            if should_cancel is not None and should_cancel():
                pool.shutdown(wait=False, cancel_futures=True)
                raise LoadCancelled(f"Loading cancelled after {done - 1} of {total} images")
            if progress is not None:
                progress(done, total)
            yield result


def _decode_or_skip(file: ImageFile, options: dict) -> np.ndarray | SkippedFile:
    try:
        return decode_image(file.path, options["resolution"], options["channels"],
                            tuple(options["background"]), options["max_pixels"])
    except ImageDecodeError as exc:
        return SkippedFile(printable(file.path), printable(str(exc)))


def _labels_of(files: list[ImageFile], class_names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(class_names)}
    return np.array([index[f.class_name] for f in files], dtype=np.int64)


def _to_dataset(root: Path, decoded: DecodedFolder, scan_skipped: list[SkippedFile],
                found: int) -> InMemoryDataset:
    skipped = scan_skipped + decoded.skipped
    if len(decoded.pixels) == 0:
        raise _no_usable_error(root, skipped, found)
    labels, class_names, notes = None, [], []
    if decoded.labels is not None:
        labels, class_names, notes = _drop_empty_classes(root, decoded, skipped)
    return InMemoryDataset(x=uint16_to_unit_range(decoded.pixels), labels=labels,
                           class_names=class_names, kind="image", name=printable(root.name),
                           skipped=skipped, notes=notes)


def _drop_empty_classes(root: Path, decoded: DecodedFolder,
                        skipped: list[SkippedFile]) -> tuple[torch.Tensor, list[str], list[str]]:
    """Labels renumbered over the classes that kept an image, their printable names, and notes.

    Names are :func:`~diffstudio.data.paths.printable` (they end up in JSON, checkpoints and
    the window). A class folder without one usable image is dropped with a note.
    """
    old = np.asarray(decoded.labels, dtype=np.int64)
    counts = np.bincount(old, minlength=len(decoded.class_names))
    kept = [i for i, n in enumerate(counts) if n > 0]
    remap = np.full(len(decoded.class_names), -1, dtype=np.int64)
    remap[kept] = np.arange(len(kept))
    names = [printable(decoded.class_names[i]) for i in kept]
    notes = []
    for i, name in enumerate(decoded.class_names):
        if counts[i] == 0:
            tried = sum(1 for s in skipped if _in_class(s.file, root, name))
            notes.append(f"class {printable(name)!r} dropped: none of its {tried} image file(s) is usable "
                         f"(see the skipped files); labels renumbered, {len(kept)} class(es) left")
    listed = set(decoded.class_names)
    for folder in class_folders(root):
        if folder not in listed:
            notes.append(f"folder {printable(folder)!r} holds no image files: not a class")
    return torch.from_numpy(remap[old]), names, notes


def _in_class(file: str, root: Path, class_name: str) -> bool:
    return file.startswith(printable(root / class_name) + os.sep)


def _check_options(resolution: int | None, channels: int) -> None:
    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if resolution is not None and not 1 <= resolution <= 4096:
        raise DatasetError(f"resolution must be between 1 and 4096, got {resolution}")


def _no_images_error(root: Path) -> DatasetError:
    extensions = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
    return DatasetError(f"No image files ({extensions}) found in {printable(root)} or its "
                        "sub-folders; 0 files skipped")


def _no_usable_error(root: Path, skipped: list[SkippedFile], found: int) -> DatasetError:
    return DatasetError(
        f"No usable image in {printable(root)}: all {found} image file(s) were skipped"
        + _first_reasons(skipped), skipped)


def _first_reasons(skipped: list[SkippedFile], limit: int = 3) -> str:
    if not skipped:
        return ""
    lines = [f"\n  {s.file}: {s.reason}" for s in skipped[:limit]]
    more = f"\n  ... and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return "".join(lines) + more
