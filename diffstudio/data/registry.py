"""One entry point for every dataset source: a built-in name, a toy name or a folder path."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from diffstudio.data.builtin import BUILTIN_IMAGE_DATASETS, make_builtin
from diffstudio.data.dataset import DatasetKind, InMemoryDataset
from diffstudio.data.errors import DatasetError
from diffstudio.data.folder_scan import folder_labels
from diffstudio.data.paths import from_portable, printable
from diffstudio.data.image_folder import Progress, ShouldCancel, load_image_folder, resolve_folder
from diffstudio.data.toys import DEFAULT_TOY_POINTS, TOY_DATASETS, make_toy

DEFAULT_FOLDER_CHANNELS = 3


def list_builtin() -> list[tuple[str, DatasetKind, str]]:
    """(name, kind, one-line description) of every built-in image and toy dataset."""
    images = [(name, "image", info.description) for name, info in BUILTIN_IMAGE_DATASETS.items()]
    points = [(name, "points", text) for name, text in TOY_DATASETS.items()]
    return images + points  # type: ignore[return-value]


def known_names() -> list[str]:
    """Names ``load_dataset`` accepts besides folder paths."""
    return [name for name, _, _ in list_builtin()]


def is_toy_source(source: str) -> bool:
    """True when ``source`` names a built-in 2-D point dataset (what :func:`source_kind` calls
    'toy'); never raises, so it can be asked before the source is checked."""
    return not _looks_like_path(source) and source in TOY_DATASETS


def source_kind(source: str) -> str:
    """'builtin', 'toy' or 'folder'; DatasetError (listing the known names) for anything else.

    A known name wins over a same-named folder unless written as a path ('./digits'). A folder
    may be given as a ``file:`` URI (how a name that is not UTF-8 is written into config files,
    :mod:`diffstudio.data.paths`).
    """
    if not _looks_like_path(source) and source in BUILTIN_IMAGE_DATASETS:
        return "builtin"
    if is_toy_source(source):
        return "toy"
    if Path(from_portable(source)).expanduser().is_dir():
        return "folder"
    raise DatasetError(
        f"{printable(source)!r} is neither a built-in dataset nor an existing folder. "
        f"Built-in datasets: {', '.join(known_names())}"
    )


def load_dataset(
    source: str,
    resolution: int | None = None,
    channels: int | None = None,
    labels: bool = True,
    n: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
) -> InMemoryDataset:
    """Load ``source``: a built-in image dataset, a 2-D toy, or a folder of images.

    None picks the default resolution / channels / count; for a folder, resolution None is
    "native" (the smallest square side found, at most 64 px, never an upscale; the dataset's
    ``notes`` name the sizes found) and channels None is RGB. ``labels`` asks
    for class labels where the source has them (a folder has them when all its images sit in two
    or more first-level sub-folders). ``n`` caps a folder to its first n images and sets the
    count of generated datasets; ``seed`` drives generated datasets. Toys ignore resolution and
    channels. Generated datasets are memoised in-process: treat results as read-only.
    """
    kind = source_kind(source)
    if kind == "folder":
        dataset = _load_folder(source, resolution, channels, labels, progress, should_cancel)
        dataset = dataset if n is None else dataset.head(n)
    else:
        if kind == "toy":  # points have no resolution or channels: share one memo entry
            resolution = channels = None
        dataset = _generated(source, resolution, channels, n, seed)
        if progress is not None:
            progress(len(dataset), len(dataset))
    return dataset if labels else dataset.without_labels()


def clear_cache() -> None:
    """Forget the memoised generated datasets."""
    _generated.cache_clear()


@lru_cache(maxsize=8)
def _generated(name: str, resolution: int | None, channels: int | None, n: int | None,
               seed: int) -> InMemoryDataset:
    if name in TOY_DATASETS:
        return make_toy(name, DEFAULT_TOY_POINTS if n is None else n, seed)
    return make_builtin(name, resolution, channels, n, seed)


def _load_folder(source: str, resolution: int | None, channels: int | None, labels: bool,
                 progress: Progress | None, should_cancel: ShouldCancel | None) -> InMemoryDataset:
    root = resolve_folder(from_portable(source))
    use_labels, label_note = folder_labels(root, labels)
    data = load_image_folder(root, resolution, channels or DEFAULT_FOLDER_CHANNELS, labels=use_labels,
                             progress=progress, should_cancel=should_cancel)
    if label_note:
        data.notes.append(label_note)
    return data


def _looks_like_path(source: str) -> bool:
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return any(sep in source for sep in separators) or source.startswith(("~", "."))
