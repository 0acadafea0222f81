"""One error boundary for every front end: what a failure means to the user, in one line.

:func:`describe_error` is the only translator from an exception to words; the CLI prints its
message and exits with its code, the app shows the same message in a dialog. An exception it does
not know (a bug) gets its traceback written to a log file (:func:`write_error_log`) whose path
the message names, so nothing is lost and nothing is dumped on the user.

Exit codes follow the CLI's rule: 2 for bad input (arguments, settings, an unavailable device),
1 for everything that failed at run time (data, files, full disks, permissions, training).
Imports here stay light: the CLI loads this module before torch."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path


class UsageError(Exception):
    """Bad input from the command line: reported on one line, exit code 2."""


@dataclass(frozen=True)
class ErrorReport:
    """What to tell the user about an exception.

    ``message``: one line without a traceback; ``code``: the process exit code (2 usage,
    1 run time); ``known``: False for an unexpected exception (a bug), whose traceback belongs in
    a log file."""

    message: str
    code: int
    known: bool = True


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}


def _one_line(text: str) -> str:
    """Newlines folded so the message stays one line (lists of skipped files use several)."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    return "; ".join(parts)


def _named(module: str, name: str) -> type | None:
    """The exception class ``module.name`` if that module is already imported (if it is not,
    nothing could have raised it), else None. Keeps this module free of heavy imports."""
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return cls if isinstance(cls, type) else None


def _usage_classes() -> tuple[type, ...]:
    found = [UsageError]
    for module, name in (("diffstudio.engine.config", "ConfigError"), ("diffstudio.core.schedules", "ScheduleError")):
        cls = _named(module, name)
        if cls is not None:
            found.append(cls)
    return tuple(found)


def _runtime_classes() -> tuple[type, ...]:
    found = []
    for module, name in (("diffstudio.engine.trainer", "TrainingError"), ("diffstudio.data.errors", "DatasetError"),
                         ("diffstudio.engine.checkpoint", "CheckpointError"), ("diffstudio.engine.export", "ExportError"),
                         ("diffstudio.engine.run_dir", "RunDirError"),
                         ("diffstudio.core.parameterization", "SingularPredictionError")):
        cls = _named(module, name)
        if cls is not None:
            found.append(cls)
    return tuple(found)


def describe_os_error(e: OSError) -> str:
    """``disk full while writing PATH`` / ``no permission to write PATH`` / ``PATH: reason``."""
    path = e.filename if e.filename is not None else ""
    where = f" {os.fsdecode(path)!s}" if path != "" else ""
    if e.errno in _DISK_FULL:
        return (f"the disk is full (no space left on device) while writing{where}; free some space, then "
                f"resume from the last complete checkpoint (a failed write never damages one)")
    if e.errno == errno.EROFS:
        return f"cannot write{where}: the file system is read-only; choose another folder (--out)"
    if e.errno in _NO_PERMISSION:
        return f"no permission to write{where}; choose a folder you can write to (--out) or fix its permissions"
    if isinstance(e, FileNotFoundError) and where:
        return f"{where.strip()} does not exist"
    reason = e.strerror or str(e) or type(e).__name__
    return f"{where.strip()}: {reason}" if where else reason


def _is_out_of_memory(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    cls = _named("torch", "OutOfMemoryError")
    return (cls is not None and isinstance(e, cls)) or "out of memory" in str(e).lower()


def describe_error(e: BaseException) -> ErrorReport:
    """The one-line message and exit code for any exception (the CLI and the app both use this).

    Known failures (settings, data, files, devices, full disks, permissions, checkpoints,
    training) are reported with the path or field they concern; an unknown one as
    ``unexpected <Type>: <text>`` with ``known=False``. Never raises."""
    try:
        return _describe(e)
    except Exception:  # the boundary must not fail itself
        return ErrorReport(f"unexpected {type(e).__name__}", 1, known=False)


def _describe(e: BaseException) -> ErrorReport:
    if isinstance(e, KeyboardInterrupt):
        return ErrorReport("interrupted", 130)
    if isinstance(e, _usage_classes()):
        return ErrorReport(_one_line(str(e)) or type(e).__name__, 2)
    if isinstance(e, _runtime_classes()):
        return ErrorReport(_one_line(str(e)) or type(e).__name__, 1)
    if _is_out_of_memory(e):
        return ErrorReport(f"out of memory: the model or batch does not fit on this device; try a smaller "
                           f"batch size, model preset or resolution ({_one_line(str(e))[:200]})", 1)
    if isinstance(e, OSError) and (e.errno is not None or e.filename is not None):
        return ErrorReport(_one_line(describe_os_error(e)), 1)
    text = _one_line(str(e))
    return ErrorReport(f"unexpected {type(e).__name__}" + (f": {text}" if text else ""), 1, known=False)


def state_dir() -> Path:
    """Where diffstudio keeps its logs: ``$XDG_STATE_HOME/diffstudio`` (default
    ``~/.local/state/diffstudio``), ``%LOCALAPPDATA%\\diffstudio`` on Windows,
    ``~/Library/Logs/diffstudio`` on macOS."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "diffstudio"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Logs" / "diffstudio"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "diffstudio"


def write_error_log(e: BaseException, run_dir: str | os.PathLike | None = None) -> Path | None:
    """Write ``e``'s traceback to a new log file and return its path (None if nowhere was writable).

    Tried in order: ``run_dir`` (when given), :func:`state_dir`/logs, the temporary folder; the
    first that takes the file wins. The file is named ``error-<date>-<time>-<pid>.log``."""
    name = f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    header = f"diffstudio error log, {time.strftime('%Y-%m-%d %H:%M:%S %z')}\nargv: {sys.argv!r}\n\n"
    folders = ([Path(run_dir)] if run_dir else []) + [state_dir() / "logs", Path(tempfile.gettempdir())]
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(header + text, encoding="utf-8", errors="backslashreplace")
            return path
        except OSError:
            continue
    return None


def report_error(e: BaseException, run_dir: str | os.PathLike | None = None) -> ErrorReport:
    """:func:`describe_error`, and for an unexpected exception also :func:`write_error_log`, the
    log's path appended to the message. ``run_dir`` defaults to the run folder the Trainer tagged
    the exception with (``e.run_dir``), if any."""
    report = describe_error(e)
    if report.known:
        return report
    path = write_error_log(e, run_dir or getattr(e, "run_dir", None))
    tail = f"; the traceback is in {path}" if path else "; the traceback could not be written anywhere"
    return ErrorReport(report.message + tail + " (please report it)", report.code, known=False)


__all__ = ["ErrorReport", "UsageError", "describe_error", "describe_os_error", "report_error", "state_dir",
           "write_error_log"]
