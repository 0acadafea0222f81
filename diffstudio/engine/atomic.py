"""Atomic file writes: write a temporary file beside the target, fsync, then ``os.replace``.

A process killed at any moment leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

_OS_ERROR_CODE = re.compile(r"\(os error (\d+)\)")


def as_os_error(e: BaseException, path: str | os.PathLike) -> OSError | None:
    """``e`` as an ``OSError`` naming ``path`` (the file the user knows, not a temporary one), or
    None when ``e`` is no I/O failure. Understands libraries that report the OS error only in
    their message, such as safetensors' ``SafetensorError("... (os error 28)")``."""
    if isinstance(e, OSError):
        code, reason = e.errno, e.strerror or str(e)
    else:
        m = _OS_ERROR_CODE.search(str(e))
        if m is None:
            return None
        code = int(m.group(1))
        reason = os.strerror(code)
    if code is None:
        return None
    return OSError(code, reason, os.fspath(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, then move it over ``path``.
    Raises OSError naming ``path`` (not the temporary file) when the disk is full or the folder
    not writable; anything ``write`` raises propagates after the temporary file is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise (as_os_error(e, path) or e) from e
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a run folder is meant to be shared
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        named = as_os_error(e, path) if isinstance(e, Exception) else None
        if named is not None:  # the target's name, not the hidden temporary file's
            raise named from e
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_write`; the same errors."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` through :func:`atomic_write`; the same errors."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_replace_dir(fill: Callable[[Path], None], target: str | os.PathLike) -> Path:
    """Fill a fresh temporary folder beside ``target``, then rename it to ``target``.

    ``target`` must not exist yet (a folder rename cannot atomically replace a full folder).
    Raises OSError naming ``target`` when the disk is full or the folder not writable (an
    existing ``target`` fails the rename); anything ``fill`` raises propagates after the temporary
    folder is removed."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as e:
        raise (as_os_error(e, target) or e) from e
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        fill(tmp)
        os.replace(tmp, target)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        named = as_os_error(e, target) if isinstance(e, Exception) else None
        if named is not None:  # a full disk or a read-only folder, named by the folder being written
            raise named from e
        raise
    return target
