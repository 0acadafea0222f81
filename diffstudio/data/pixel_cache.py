"""The training cache of an image folder: its decoded pixels as one uint8 file, memory-mapped.

An entry is a folder ``$DIFFSTUDIO_CACHE/datasets/pixels-<key>/`` keyed like the in-memory folder
cache (:func:`diffstudio.data.folder_cache.cache_key`: absolute path, decoding options and the
listing of (relative path, size, mtime), so any touched file gives a new key):

- ``pixels.u8``: raw uint8 (N, C, H, W), C-order, read with :class:`numpy.memmap`;
- ``building.json`` while it is built: how many files are done and which were skipped. The pixels
  are flushed before this file is replaced (atomically), so a build that is cancelled or killed
  (``kill -9`` included, at any point up to ``meta.json``) resumes from its last recorded chunk,
  at most :data:`CHUNK` files back, and ends byte-identical to an uninterrupted build;
- ``.pixels-<key>.lock`` beside the entry: an advisory lock held while building, so two
  processes (the app and a CLI run, say) never build one entry at once;
- ``meta.json`` once complete (written last, atomically): count, shape, labels, class names,
  skipped files. Only an entry with a valid ``meta.json`` and a pixel file of exactly the size it
  states is ever opened; anything else is rebuilt. Loading reads JSON and raw bytes only.

uint8 holds 8-bit sources exactly; 16-bit sources are rounded to 8 bits (``round(u / 257)``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffstudio.data.dataset import SkippedFile
from diffstudio.data.decode import decode_image, pillow_pixel_limit
from diffstudio.data.errors import DatasetError, ImageDecodeError, LoadCancelled
from diffstudio.data.folder_cache import cache_dir, cache_key
from diffstudio.data.folder_scan import ImageFile, class_names_of
from diffstudio.data.pixels import uint16_to_uint8

PIXEL_CACHE_VERSION = 1
PIXELS, META, BUILDING = "pixels.u8", "meta.json", "building.json"
CHUNK = 256
"""Files decoded between two progress records: at most this much work is redone after a kill."""

Progress = Callable[[int, int], None]
ShouldCancel = Callable[[], bool]

log = logging.getLogger(__name__)


@dataclass
class PixelCache:
    """A complete cache entry: ``path`` (its folder), N images of (channels, resolution, resolution)
    uint8, labels int64 (N,) or None, class names and the files skipped while building."""

    path: Path
    count: int
    channels: int
    resolution: int
    labels: np.ndarray | None
    class_names: list[str]
    skipped: list[SkippedFile]

    @property
    def image_bytes(self) -> int:
        """Bytes per image (C * H * W)."""
        return self.channels * self.resolution * self.resolution

    @property
    def nbytes(self) -> int:
        """Bytes of all pixels (N * C * H * W)."""
        return self.count * self.image_bytes

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, C, H, W) of the cached pixels (H = W = the resolution, in pixels)."""
        return (self.count, self.channels, self.resolution, self.resolution)

    def memmap(self, count: int | None = None) -> np.ndarray:
        """The first ``count`` (default all) images as a read-only uint8 memmap (N, C, H, W)."""
        n = self.count if count is None else min(count, self.count)
        return np.memmap(self.path / PIXELS, dtype=np.uint8, mode="r", shape=(n, *self.shape[1:]))

    def read(self, count: int | None = None) -> np.ndarray:
        """The first ``count`` (default all) images read into a private uint8 array (N, C, H, W).

        Plain reads, not the memory map, so the process holds the pixels once (a copy through the
        map would count the mapped pages too). Raises ``DatasetError`` when the pixel file is
        shorter than the metadata says, ``OSError`` when it cannot be read."""
        n = self.count if count is None else min(count, self.count)
        out = np.empty((n, *self.shape[1:]), dtype=np.uint8)
        with open(self.path / PIXELS, "rb") as f:
            view, done = memoryview(out.reshape(-1)), 0
            while done < out.nbytes:
                got = f.readinto(view[done:done + (64 << 20)])
                if not got:
                    raise DatasetError(f"dataset cache {self.path} is shorter than its metadata says")
                done += got
        return out


def pixel_cache_key(root: Path, files: list[ImageFile], options: dict[str, Any]) -> str:
    """The entry's key: the folder cache's key of the same folder and options, marked uint8."""
    return cache_key(root, files, {**options, "store": f"uint8-memmap-v{PIXEL_CACHE_VERSION}"})


def entry_path(key: str) -> Path:
    """The folder of a cache entry."""
    return cache_dir() / f"pixels-{key}"


def open_pixel_cache(key: str) -> PixelCache | None:
    """The complete entry for ``key``; None when absent, partial or inconsistent (then rebuilt).
    Never raises: a damaged entry is logged as a warning and reported as None."""
    path = entry_path(key)
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        if meta.get("version") != PIXEL_CACHE_VERSION or meta.get("key") != key:
            return None
        labels = None if meta["labels"] is None else np.asarray(meta["labels"], dtype=np.int64)
        cache = PixelCache(path, int(meta["count"]), int(meta["channels"]), int(meta["resolution"]),
                           labels, list(meta["class_names"]), [SkippedFile(**s) for s in meta["skipped"]])
        if (path / PIXELS).stat().st_size != cache.nbytes or (labels is not None and len(labels) != cache.count):
            raise ValueError("pixel file size or label count does not match meta.json")
        return cache
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged entry is rebuilt, never used
        log.warning("ignoring damaged dataset cache %s: %s", path, exc)
        return None


def build_pixel_cache(
    key: str,
    files: list[ImageFile],
    options: dict[str, Any],
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
    workers: int | None = None,
    decoded: Callable[[int], np.ndarray | SkippedFile] | None = None,
) -> PixelCache:
    """Decode ``files`` into the entry for ``key`` (resuming a partial build) and return it.

    ``options``: resolution, channels, labels, background, max_pixels (as for
    :func:`diffstudio.data.image_folder.load_image_folder`). ``progress(done, total)`` is called on
    this thread after each file; ``should_cancel()`` returning True raises LoadCancelled and leaves
    the partial entry to be resumed. Files that cannot be decoded are skipped with a reason.
    ``decoded(i)``, when given, supplies file i's uint16 decode (or SkippedFile) from an existing
    decode (:func:`diffstudio.data.folder_cache.cached_rows`) instead of decoding the file. Raises DatasetError when no file is usable or the cache folder cannot be written.
    """
    cached = open_pixel_cache(key)
    if cached is None:
        with _build_lock(key, should_cancel):  # another process building the same entry goes first
            cached = open_pixel_cache(key)
            if cached is None:
                return _build(key, files, options, progress, should_cancel, workers, decoded)
    if progress is not None:
        progress(len(files), len(files))
    return cached


def _build(key: str, files: list[ImageFile], options: dict[str, Any], progress: Progress | None,
           should_cancel: ShouldCancel | None, workers: int | None,
           decoded: Callable[[int], np.ndarray | SkippedFile] | None) -> PixelCache:
    res, ch = options["resolution"], options["channels"]
    path = entry_path(key)
    state = _resume_state(path, key, len(files), ch * res * res)
    # plain writes, not a writable memory map: mapped pages would count in this process's memory
    with open(path / PIXELS, "r+b") as pixels:
        _decode_into(pixels, files, options, state, path, progress, should_cancel, workers, decoded)
    return _finish(path, key, files, options, state)


@contextmanager
def _build_lock(key: str, should_cancel: ShouldCancel | None) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) on ``.pixels-<key>.lock`` beside the entries, so two
    processes never build one entry at once; waiting honours ``should_cancel``. Without ``fcntl``
    (Windows) there is no lock."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f".pixels-{key}.lock", "a+b") as f:
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if should_cancel is not None and should_cancel():
                    raise LoadCancelled("Cancelled while another process was building the same dataset cache") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _resume_state(path: Path, key: str, total: int, image_bytes: int) -> dict[str, Any]:
    """The recorded state of a partial build of ``key``, or a fresh entry (folder recreated).

    The pixel file is ``total`` images long while building, and already cut to the ``kept`` ones
    when the build was killed in :func:`_finish` before ``meta.json`` (then only that is left)."""
    try:
        state = json.loads((path / BUILDING).read_text(encoding="utf-8"))
        size = (path / PIXELS).stat().st_size
        sizes = {max(1, total) * image_bytes} | ({state["kept"] * image_bytes} if state["done"] == total else set())
        if (state.get("key") == key and state.get("total") == total and size in sizes
                and 0 <= state["kept"] <= state["done"] <= total):
            state["skipped"] = [SkippedFile(**s) for s in state["skipped"]]
            return state
    except Exception:  # no partial build, or one that cannot be trusted: start again
        pass
    shutil.rmtree(path, ignore_errors=True)
    try:
        path.mkdir(parents=True)
        with open(path / PIXELS, "wb") as f:
            f.truncate(max(1, total) * image_bytes)  # sparse until written
    except OSError as exc:
        raise DatasetError(f"cannot write the dataset cache {path}: {exc.strerror or exc}") from exc
    return {"key": key, "total": total, "done": 0, "kept": 0, "kept_files": [], "skipped": []}


def _decode_into(pixels, files: list[ImageFile], options: dict[str, Any], state: dict[str, Any],
                 path: Path, progress: Progress | None, should_cancel: ShouldCancel | None,
                 workers: int | None, decoded: Callable[[int], np.ndarray | SkippedFile] | None) -> None:
    total = len(files)
    if progress is not None:
        progress(state["done"], total)
    workers = workers or min(4, os.cpu_count() or 1)
    with pillow_pixel_limit(options["max_pixels"]), ThreadPoolExecutor(workers) as pool:
        while state["done"] < total:
            start = state["done"]
            chunk = files[start:start + CHUNK]
            kept, kept_files, skipped = state["kept"], list(state["kept_files"]), list(state["skipped"])
            if decoded is not None:
                results = map(decoded, range(start, start + len(chunk)))
            else:
                results = pool.map(lambda f: _decode_or_skip(f, options), chunk)
            for offset, result in enumerate(results):
                if should_cancel is not None and should_cancel():
                    raise LoadCancelled(f"Building the dataset cache cancelled after {start + offset} of "
                                        f"{total} images; it resumes from there next time")
                if isinstance(result, SkippedFile):
                    skipped.append(result)
                else:
                    image = uint16_to_uint8(result)
                    pixels.seek(kept * image.nbytes)
                    pixels.write(image.tobytes())
                    kept_files.append(start + offset)
                    kept += 1
                if progress is not None:
                    progress(start + offset + 1, total)
            _sync(pixels)  # the pixels are on disk before the record says so
            state.update(done=start + len(chunk), kept=kept, kept_files=kept_files, skipped=skipped)
            _write_json(path / BUILDING, {**state, "skipped": [asdict(s) for s in skipped]})


def _sync(f) -> None:
    f.flush()
    getattr(os, "fdatasync", os.fsync)(f.fileno())


def _decode_or_skip(file: ImageFile, options: dict[str, Any]) -> np.ndarray | SkippedFile:
    try:
        return decode_image(file.path, options["resolution"], options["channels"],
                            tuple(options["background"]), options["max_pixels"])
    except ImageDecodeError as exc:
        return SkippedFile(str(file.path), str(exc))


def _finish(path: Path, key: str, files: list[ImageFile], options: dict[str, Any],
            state: dict[str, Any]) -> PixelCache:
    count = state["kept"]
    if count == 0:
        shutil.rmtree(path, ignore_errors=True)
        reasons = "".join(f"\n  {s.file}: {s.reason}" for s in state["skipped"][:3])
        raise DatasetError(f"No usable image: all {len(files)} image file(s) were skipped{reasons}",
                           state["skipped"])
    res, ch = options["resolution"], options["channels"]
    with open(path / PIXELS, "r+b") as f:
        f.truncate(count * ch * res * res)
        os.fsync(f.fileno())
    labels = None
    class_names: list[str] = []
    if options["labels"]:
        class_names = class_names_of(files)
        index = {name: i for i, name in enumerate(class_names)}
        labels = [index[files[i].class_name] for i in state["kept_files"]]
    meta = {"version": PIXEL_CACHE_VERSION, "key": key, "count": count, "channels": ch, "resolution": res,
            "labels": labels, "class_names": class_names, "skipped": [asdict(s) for s in state["skipped"]]}
    _write_json(path / META, meta)
    (path / BUILDING).unlink(missing_ok=True)
    _remove_stale(key)
    cache = open_pixel_cache(key)
    if cache is None:
        raise DatasetError(f"the dataset cache {path} could not be read back after writing it")
    return cache


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove_stale(key: str) -> None:
    """Entries of the same folder-and-options slot with an older listing (complete or partial)."""
    slot = key.split("-", 1)[0]
    for old in cache_dir().glob(f"pixels-{slot}-*"):
        if old.name != entry_path(key).name:
            shutil.rmtree(old, ignore_errors=True)
            (cache_dir() / f".{old.name}.lock").unlink(missing_ok=True)
