"""Find the image files of a folder (recursively) and their class sub-folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from diffstudio.data.dataset import SkippedFile

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
"""File name endings (case-insensitive) that are treated as images; other files are ignored."""

NOT_IN_CLASS_FOLDER = (
    "not inside a class sub-folder (labels come from first-level sub-folder names)"
)


@dataclass(frozen=True)
class ImageFile:
    """One candidate image: where it is, what it looked like (for the cache key), its class."""

    path: Path
    relpath: str  # POSIX-style, relative to the scanned root
    size: int
    mtime_ns: int
    class_name: str | None


def scan_folder(root: Path, labels: bool) -> tuple[list[ImageFile], list[SkippedFile]]:
    """Image files under ``root`` sorted by relative path, and the files rejected while listing.

    Hidden files and folders (name starting with '.') are ignored, as are other extensions.
    With ``labels`` the class is the first-level sub-folder; files directly in ``root`` are
    then skipped.
    """
    files: list[ImageFile] = []
    skipped: list[SkippedFile] = []
    for path in _walk_image_paths(root, skipped):
        relpath = path.relative_to(root).as_posix()
        class_name = relpath.split("/", 1)[0] if "/" in relpath else None
        if labels and class_name is None:
            skipped.append(SkippedFile(str(path), NOT_IN_CLASS_FOLDER))
            continue
        try:
            stat = path.stat()
        except OSError as exc:
            skipped.append(SkippedFile(str(path), f"cannot read file ({exc.strerror or exc})"))
            continue
        files.append(ImageFile(path, relpath, stat.st_size, stat.st_mtime_ns, class_name))
    return files, skipped


def class_names_of(files: list[ImageFile]) -> list[str]:
    """Sorted distinct class names; a class index is its position in this list."""
    return sorted({f.class_name for f in files if f.class_name is not None})


def has_class_folders(root: Path) -> bool:
    """True when ``root`` holds no images itself and images sit in >= 2 first-level folders."""
    files, _ = scan_folder(root, labels=False)
    return bool(files) and all(f.class_name for f in files) and len(class_names_of(files)) >= 2


def _walk_image_paths(root: Path, skipped: list[SkippedFile]) -> list[Path]:
    def on_error(exc: OSError) -> None:
        reason = f"cannot list folder ({exc.strerror or exc})"
        skipped.append(SkippedFile(str(exc.filename), reason))

    paths: list[Path] = []
    for folder, dirs, names in os.walk(root, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if not name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(path)
    return sorted(paths, key=lambda p: p.relative_to(root).as_posix())
