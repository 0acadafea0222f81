"""On-disk cache of decoded image folders (safetensors + JSON metadata, atomic writes).

A cache entry is keyed by a hash of the folder's absolute path, the decoding options and the
list of (relative path, size, mtime) of its image files, so any added, removed or touched file
gives a new key. Pixels are stored as uint16 (exact for 8-bit sources); the skipped files and
class names live in the safetensors metadata as JSON strings. Loading never executes code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from diffstudio.data.dataset import SkippedFile
from diffstudio.data.folder_scan import ImageFile

CACHE_FORMAT_VERSION = 1
CACHE_ENV_VAR = "DIFFSTUDIO_CACHE"

log = logging.getLogger(__name__)


@dataclass
class DecodedFolder:
    """Decoded pixels uint16 (N, C, H, W), labels int64 (N,) or None, and what was skipped."""

    pixels: np.ndarray
    labels: np.ndarray | None
    class_names: list[str]
    skipped: list[SkippedFile]


def cache_dir() -> Path:
    """``$DIFFSTUDIO_CACHE/datasets`` when the variable is set, else ``~/.cache/diffstudio/datasets``.

    The variable names the diffstudio cache root, so other caches can sit beside ``datasets``.
    """
    root = os.environ.get(CACHE_ENV_VAR)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "diffstudio"
    return base / "datasets"


def cache_key(root: Path, files: list[ImageFile], options: dict[str, Any]) -> str:
    """``<hash(absolute root, options)>-<hash([(relpath, size, mtime_ns)])>``.

    The first part names the folder-and-options slot; a newer listing of the same slot replaces
    the older entry when written (see :func:`write_cached`).
    """
    slot = {"v": CACHE_FORMAT_VERSION, "root": str(root), "options": options}
    listing = [(f.relpath, f.size, f.mtime_ns) for f in files]
    return f"{_digest(slot)}-{_digest(listing)}"


def cache_path(key: str) -> Path:
    """The safetensors file of a cache key."""
    return cache_dir() / f"folder-{key}.safetensors"


def read_cached(key: str) -> DecodedFolder | None:
    """The cached decode for ``key``, or None when absent or unreadable (then it is re-made)."""
    path = cache_path(key)
    if not path.is_file():
        return None
    try:
        return _read(path)
    except Exception as exc:  # a damaged cache file must never stop a load
        log.warning("ignoring unreadable dataset cache %s: %s", path, exc)
        return None


def write_cached(key: str, decoded: DecodedFolder, source: str) -> Path | None:
    """Write atomically (temp file + os.replace) and drop stale entries of the same slot.

    Failures are logged, never raised: caching is an optimisation.
    """
    path = cache_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, decoded, source)
        _remove_stale(key)
        return path
    except Exception as exc:  # caching is best effort: a read-only disk must not stop a load
        log.warning("could not write dataset cache %s: %s", path, exc)
        return None


@contextmanager
def cached_rows(key: str, files: list[ImageFile]) -> Iterator[Callable[[int], np.ndarray | SkippedFile] | None]:
    """Within the block, ``row(i)``: the cached decode of ``files[i]`` (uint16 (C, H, W)) or its
    SkippedFile, read lazily from the entry for ``key``; None when there is no readable entry.

    ``files`` must be the listing the key was made from (the key holds it). Lets another cache of
    the same folder (the training pixel cache) be filled without decoding the images again.
    """
    path = cache_path(key)
    reader = None
    if path.is_file():
        try:
            reader = _row_reader(safe_open(str(path), framework="np"), files)
        except Exception as exc:  # unreadable: the caller decodes the files instead
            log.warning("ignoring unreadable dataset cache %s: %s", path, exc)
    yield reader


def _row_reader(f, files: list[ImageFile]) -> Callable[[int], np.ndarray | SkippedFile]:
    meta = f.metadata() or {}
    if int(meta.get("format_version", -1)) != CACHE_FORMAT_VERSION:
        raise ValueError(f"cache format {meta.get('format_version')!r}")
    skipped = {s["file"]: SkippedFile(**s) for s in json.loads(meta["skipped"])}
    rows, row_of = f.get_slice("pixels"), {}
    for i, file in enumerate(files):
        if str(file.path) not in skipped:
            row_of[i] = len(row_of)
    if rows.get_shape()[0] != len(row_of):
        raise ValueError("the cached image count does not match the folder's listing")

    def row(i: int) -> np.ndarray | SkippedFile:
        return rows[row_of[i]:row_of[i] + 1][0] if i in row_of else skipped[str(files[i].path)]

    return row


def _digest(value: object) -> str:
    blob = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _remove_stale(key: str) -> None:
    slot = key.split("-", 1)[0]
    for old in cache_dir().glob(f"folder-{slot}-*.safetensors"):
        if old.name != cache_path(key).name:
            old.unlink(missing_ok=True)


def _read(path: Path) -> DecodedFolder:
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata() or {}
        if int(meta.get("format_version", -1)) != CACHE_FORMAT_VERSION:
            raise ValueError(f"cache format {meta.get('format_version')!r}")
        pixels = f.get_tensor("pixels")
        labels = f.get_tensor("labels") if "labels" in f.keys() else None
    skipped = [SkippedFile(**item) for item in json.loads(meta["skipped"])]
    return DecodedFolder(pixels, labels, json.loads(meta["class_names"]), skipped)


def _write_atomic(path: Path, decoded: DecodedFolder, source: str) -> None:
    tensors = {"pixels": np.ascontiguousarray(decoded.pixels)}
    if decoded.labels is not None:
        tensors["labels"] = np.ascontiguousarray(decoded.labels, dtype=np.int64)
    metadata = {
        "format_version": str(CACHE_FORMAT_VERSION),
        "source": source,
        "class_names": json.dumps(decoded.class_names),
        "skipped": json.dumps([asdict(s) for s in decoded.skipped]),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
