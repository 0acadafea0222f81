"""Find the image files of a folder (recursively) and their class sub-folders.

Symbolic links are followed, to files and to folders alike (``dogs -> ../elsewhere/dogs`` is a
class like any other), with two protections, both reported as skipped entries with the reason:

- a link that leads back to a folder that contains it (a loop) is not entered;
- the same real folder or the same real file reached twice (by two links, or a link and the
  original) counts once: a path that is not itself a link is preferred, then the shallowest,
  then the first in sorted order; the others are skipped. Folders are listed breadth-first,
  so a link deep inside one class folder to another class folder never takes that class's
  files away from it.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from diffstudio.data.dataset import SkippedFile
from diffstudio.data.paths import printable

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
"""File name endings (case-insensitive) that are treated as images; other files are ignored."""

NOT_IN_CLASS_FOLDER = (
    "not inside a class sub-folder (labels come from first-level sub-folder names)"
)

_Identity = tuple[int, int]  # (st_dev, st_ino): what a path really is, through any links


@dataclass(frozen=True)
class ImageFile:
    """One candidate image: where it is, what it looked like (for the cache key), its class."""

    path: Path
    relpath: str  # POSIX-style, relative to the scanned root
    size: int
    mtime_ns: int
    class_name: str | None


def scan_folder(root: Path, labels: bool) -> tuple[list[ImageFile], list[SkippedFile]]:
    """Image files under ``root`` sorted by relative path, and the entries rejected while listing.

    Hidden files and folders (name starting with '.') are ignored, as are other extensions.
    Links are followed (see the module docstring for loops and duplicates). With ``labels`` the
    class is the first-level sub-folder; files directly in ``root`` are then skipped.
    ``SkippedFile.file`` is :func:`~diffstudio.data.paths.printable`.
    """
    found, skipped = _walk(root)
    files: list[ImageFile] = []
    first_of: dict[_Identity, str] = {}
    for relpath, path, st in sorted(found, key=_preference):
        identity = (st.st_dev, st.st_ino)
        if identity in first_of:
            why = f"same file as {printable(first_of[identity])} (a link or a second path to it; counted once)"
            skipped.append(SkippedFile(printable(path), why))
            continue
        first_of[identity] = relpath
        class_name = relpath.split("/", 1)[0] if "/" in relpath else None
        if labels and class_name is None:
            skipped.append(SkippedFile(printable(path), NOT_IN_CLASS_FOLDER))
            continue
        files.append(ImageFile(path, relpath, st.st_size, st.st_mtime_ns, class_name))
    return sorted(files, key=lambda f: f.relpath), skipped


def _preference(item: tuple[str, Path, os.stat_result]) -> tuple[bool, int, str]:
    """Which of several paths to one real file is used: not a link, then shallowest, then sorted."""
    relpath, path, _ = item
    return os.path.islink(path), relpath.count("/"), relpath


def class_names_of(files: list[ImageFile]) -> list[str]:
    """Sorted distinct class names; a class index is its position in this list."""
    return sorted({f.class_name for f in files if f.class_name is not None})


def class_folders(root: Path) -> list[str]:
    """Names of the first-level, non-hidden sub-folders of ``root`` (links followed), sorted."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    return sorted(e.name for e in entries if not e.name.startswith(".") and _is_dir(e))


def has_class_folders(root: Path) -> bool:
    """True when ``root`` holds no images itself and images sit in >= 2 first-level folders."""
    return folder_labels(root, True)[0]


def folder_labels(root: Path, wanted: bool) -> tuple[bool, str | None]:
    """Whether the images of ``root`` get class labels (``wanted``, i.e. ``data.labels``, and
    :func:`has_class_folders`), and a one-line note when labels were wanted and some images sit in
    sub-folders but the layout gives none (images directly in ``root`` beside them, or only one
    class folder), so the unlabelled run is not a silent surprise. A flat folder gets no note."""
    if not wanted:
        return False, None
    files, _ = scan_folder(root, labels=False)
    classes = class_names_of(files)
    loose = sum(1 for f in files if not f.class_name)
    if files and not loose and len(classes) >= 2:
        return True, None
    if not classes:
        return False, None
    why = (f"{loose} image(s) lie directly in the folder beside its sub-folders" if loose
           else f"every image is in the one sub-folder {printable(classes[0])!r}")
    return False, (f"no class labels: {why}; labels come from two or more first-level sub-folders that hold "
                   f"every image, so the data train unconditionally")


def _walk(root: Path) -> tuple[list[tuple[str, Path, os.stat_result]], list[SkippedFile]]:
    """Breadth-first listing that follows links: [(relpath, path, stat of the real file)], skipped."""
    walker = _Walker()
    try:
        walker.enter(root, "", frozenset())
    except OSError as exc:
        return [], [SkippedFile(printable(root), f"cannot open folder ({_strerror(exc)})")]
    while walker.queue:
        walker.visit(*walker.queue.popleft())
    return walker.found, walker.skipped


class _Walker:
    """State of one listing: folders waiting, real folders already seen, what was found/skipped."""

    def __init__(self) -> None:
        self.found: list[tuple[str, Path, os.stat_result]] = []
        self.skipped: list[SkippedFile] = []
        self.seen_dirs: dict[_Identity, Path] = {}
        self.queue: deque[tuple[Path, str, frozenset[_Identity]]] = deque()

    def visit(self, folder: Path, prefix: str, ancestors: frozenset[_Identity]) -> None:
        """List one folder: sub-folders are queued, image files recorded, hidden entries ignored."""
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            self._skip(folder, f"cannot list folder ({_strerror(exc)})")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path, relpath = folder / entry.name, prefix + entry.name
            if _is_dir(entry):
                self._enter_or_skip(path, relpath, ancestors)
            elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                self._add_file(path, relpath)

    def enter(self, path: Path, relpath: str, ancestors: frozenset[_Identity]) -> None:
        """Queue ``path`` unless it loops back to an ancestor or was seen; OSError if unreadable."""
        st = os.stat(path)
        identity = (st.st_dev, st.st_ino)
        if identity in ancestors:
            target = printable(os.path.realpath(path))
            self._skip(path, f"symbolic link loop: leads back to {target}, a folder that contains it "
                             "(not entered)")
        elif identity in self.seen_dirs:
            first = printable(self.seen_dirs[identity])
            self._skip(path, f"same folder as {first} (listed once; its files are counted there)")
        else:
            self.seen_dirs[identity] = path
            self.queue.append((path, relpath + "/" if relpath else "", ancestors | {identity}))

    def _enter_or_skip(self, path: Path, relpath: str, ancestors: frozenset[_Identity]) -> None:
        try:
            self.enter(path, relpath, ancestors)
        except OSError as exc:
            self._skip(path, f"cannot open folder ({_strerror(exc)})")

    def _add_file(self, path: Path, relpath: str) -> None:
        try:
            st = os.stat(path)
        except OSError as exc:
            broken = os.path.islink(path) and not os.path.exists(path)
            self._skip(path, "broken symbolic link (its target does not exist)" if broken
                       else f"cannot read file ({_strerror(exc)})")
            return
        if stat_mod.S_ISREG(st.st_mode):
            self.found.append((relpath, path, st))

    def _skip(self, path: Path, reason: str) -> None:
        self.skipped.append(SkippedFile(printable(path), reason))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _strerror(exc: OSError) -> str:
    return printable(exc.strerror or str(exc))
