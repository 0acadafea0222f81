"""The run folder: everything one training run leaves behind, readable while it is written.

::

    <run>/config.toml                 the Config (Config.save)
    <run>/metrics.jsonl               one JSON object per line: step, loss, lr, ... (flushed appends)
    <run>/events.jsonl                optional: start, resume, stop, errors
    <run>/previews/step-000250.png    sample grids, with an optional step-000250.json of statistics
    <run>/checkpoints/step-000500/    checkpoint folders (engine/checkpoint.py)
    <run>/checkpoints/latest          the name of the newest complete checkpoint, one line
    <run>/abandoned/<time>/           checkpoints and previews past the step a run was resumed from

Every file is written atomically except the ``.jsonl`` logs, which are appended to; a line torn by
a crash is skipped on read and a later append starts on a fresh line.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from diffstudio.engine.atomic import as_os_error, atomic_write, atomic_write_text
from diffstudio.engine.checkpoint import (
    CHECKPOINTS,
    LATEST,
    STATE_FILE,
    complete_checkpoints,
    latest_checkpoint,
    remove_dir,
    save_checkpoint,
)

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
EVENTS_FILE = "events.jsonl"
PREVIEWS = "previews"
ABANDONED = "abandoned"
_PREVIEW = re.compile(r"^step-(\d+)\.png$")


class RunDirError(ValueError):
    """A folder is not a run folder, or a run-folder operation cannot be done."""


def creation_problem(folder: str | os.PathLike, name: str = "") -> str | None:
    """Why a new folder (``folder/name``, or one inside ``folder`` when ``name`` is empty) cannot be
    made, ``folder`` being created with its parents when missing; None when it can: "cannot create /proc/x: /proc does not accept new folders (No such file or
    directory)", "cannot create /data/runs: Permission denied", "cannot create a/b: a is a file,
    not a folder". Found by making and removing one empty folder in the nearest folder that exists
    (``tempfile.mkdtemp``), so it writes nothing that stays; checked before any data load, for
    ``run.out_dir`` / ``--out`` and the dry run. Never raises."""
    target = Path(folder) / name if name else Path(folder)
    here = Path(folder)
    while not here.exists() and here != here.parent:  # the nearest part of the path that exists
        here = here.parent
    if not here.is_dir():
        return f"cannot create {target}: {here} is a file, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".create-check.", dir=here))
    except OSError as e:
        reason = e.strerror or type(e).__name__
        if isinstance(e, FileNotFoundError):  # the folder exists, so it is this file system's refusal
            reason = f"{here} does not accept new folders ({reason})"
        return f"cannot create {target}: {reason}"
    return None


def run_folder_problem(run_dir: str | os.PathLike | None, out_dir: str | os.PathLike, resume: Any) -> str | None:
    """Why the folder a run will write cannot be created (:func:`creation_problem`), None when it
    can or when the run continues in place. ``run_dir``: the run folder asked for (``--out``), else
    the run gets a new folder under ``out_dir`` (``run.out_dir``); ``resume``: the checkpoint or run
    resumed (a resumed run without ``run_dir`` continues in its own folder). Never raises."""
    if run_dir:
        path = Path(run_dir)
        if resume and RunDir.is_run_dir(path):
            return None  # continued in place (its writability is checked when it is opened)
        return creation_problem(path.parent, path.name)
    return None if resume else creation_problem(out_dir)


def step_name(step: int) -> str:
    """``step-000250``: zero-padded so that names sort like steps. Raises ``ValueError`` for a
    negative step."""
    if int(step) < 0:
        raise ValueError(f"step: must be >= 0, got {step}")
    return f"step-{int(step):06d}"


class RunDir:
    """A run folder. ``RunDir.create(out_dir, name)`` makes a new one; ``RunDir(path)`` opens one."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.is_run_dir(self.path):
            why = "does not exist" if not self.path.exists() else "is not a run folder (no config.toml, metrics or checkpoints)"
            raise RunDirError(f"{self.path} {why}")
        self._offsets: dict[str, tuple[int, int, int]] = {}  # log file -> (inode, line, byte offset) read up to
        self.requested = self.path  # the folder asked for (create() may have had to pick another)

    # -- creating and opening ----------------------------------------------------------------

    @staticmethod
    def is_run_dir(path: str | os.PathLike) -> bool:
        """True when ``path`` is a folder holding a run's config.toml, metrics log or checkpoints/."""
        p = Path(path)
        return p.is_dir() and ((p / CONFIG_FILE).is_file() or (p / METRICS_FILE).is_file() or (p / CHECKPOINTS).is_dir())

    @classmethod
    def create(cls, out_dir: str | os.PathLike, name: str = "", config: Any = None) -> "RunDir":
        """A new run folder ``out_dir/<run_folder_name(name)>`` (``-2``, ``-3``... appended when
        taken; an empty name gets ``run-<date>-<time>``), with its sub-folders and, when given,
        its config. Raises RunDirError (a file system that refuses the folder, as
        :func:`creation_problem`) or OSError (read-only, no permission). Its ``requested`` is the folder asked for: when that was taken, ``requested
        != path`` and the caller should say where the run went (:meth:`moved_note`)."""
        out = Path(out_dir)
        base = run_folder_name(name) or time.strftime("run-%Y%m%d-%H%M%S")
        try:
            out.mkdir(parents=True, exist_ok=True)
            for i in itertools.count(1):
                path = out / (base if i == 1 else f"{base}-{i}")
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    continue
        except FileNotFoundError as e:  # a folder that refuses new ones (/proc): not "does not exist"
            raise RunDirError(creation_problem(out, base) or f"cannot create {out / base}: {e.strerror}") from e
        run = cls._lay_out(path, config)
        run.requested = out / base
        return run

    def moved_note(self) -> str:
        """"runs/qs exists: writing this run to runs/qs-2" when :meth:`create` could not use the folder
        asked for; "" when it did."""
        if self.requested == self.path:
            return ""
        return f"{self.requested} exists: writing this run to {self.path}"

    @classmethod
    def open_or_create(cls, path: str | os.PathLike, config: Any = None) -> "RunDir":
        """The run folder at exactly ``path``: opened when it is one, laid out when it is missing
        or empty. ``config`` is written only into a new folder. Raises ``RunDirError`` when
        ``path`` is a file or a non-empty folder that is not a run folder, ``OSError`` when it
        cannot be created."""
        p = Path(path)
        if cls.is_run_dir(p):
            return cls(p)
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise RunDirError(f"{p} exists and is not a run folder; choose an empty or new folder")
        p.mkdir(parents=True, exist_ok=True)
        return cls._lay_out(p, config)

    @classmethod
    def _lay_out(cls, path: Path, config: Any) -> "RunDir":
        (path / PREVIEWS).mkdir(exist_ok=True)
        (path / CHECKPOINTS).mkdir(exist_ok=True)
        run = cls(path)
        if config is not None:
            run.save_config(config)
        return run

    @property
    def name(self) -> str:
        """The run folder's name (its last path component)."""
        return self.path.name

    def check_writable(self) -> None:
        """Raise ``OSError`` (EROFS, EACCES, ENOSPC ...) naming the folder unless a file can be
        created in the run folder and in ``checkpoints/``: a run about to train finds out before
        it spends any time, not at its first log line or checkpoint."""
        for folder in (self.path, self.path / CHECKPOINTS):
            try:
                folder.mkdir(exist_ok=True)
                fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
                os.close(fd)
                os.unlink(probe)
            except OSError as e:
                raise (as_os_error(e, folder) or e) from e

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and self.path.resolve() == other.path.resolve()

    def __hash__(self) -> int:
        return hash(self.path.resolve())

    # -- config ------------------------------------------------------------------------------

    def config(self):
        """The run's :class:`~diffstudio.engine.config.Config` (ConfigError when missing or invalid)."""
        from diffstudio.engine.config import Config

        return Config.load(self.path / CONFIG_FILE)

    def save_config(self, cfg: Any) -> Path:
        """Write ``config.toml`` (a non-UTF-8 dataset folder as its ``file:`` URI: Config.save)."""
        return cfg.save(self.path / CONFIG_FILE)

    # -- metrics and events --------------------------------------------------------------------

    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Append rows (``step``, ``loss`` and any numbers) to ``metrics.jsonl`` and flush."""
        self._append_jsonl(METRICS_FILE, rows)

    def read_metrics(self, since_line: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Rows from complete line ``since_line`` on, and the line to ask for next time.

        Only newline-terminated lines count: a line still being written is left for the next
        call; a torn or unparsable line (a crash) is counted but skipped. A returned line number
        below ``since_line`` means the file was rewritten shorter (:meth:`truncate_metrics`)."""
        return self._read_jsonl(METRICS_FILE, since_line)

    def truncate_metrics(self, after_step: int) -> None:
        """Drop rows with ``step > after_step`` (a run resumed from an earlier checkpoint)."""
        rows, _ = self.read_metrics()
        kept = [r for r in rows if not isinstance(r.get("step"), (int, float)) or r["step"] <= after_step]
        atomic_write_text(self.path / METRICS_FILE, "".join(_json_line(r) for r in kept))
        self._offsets.pop(METRICS_FILE, None)

    def append_event(self, kind: str, **data: Any) -> None:
        """Append ``{"time": ..., "event": kind, **data}`` to ``events.jsonl``."""
        self._append_jsonl(EVENTS_FILE, [{"time": time.time(), "event": kind, **data}])

    def read_events(self, since_line: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The events appended after line ``since_line`` of ``events.jsonl`` and the next line to
        read from (as :meth:`read_metrics`)."""
        return self._read_jsonl(EVENTS_FILE, since_line)

    def _append_jsonl(self, name: str, rows: list[dict[str, Any]]) -> None:
        if isinstance(rows, dict):
            rows = [rows]
        text = "".join(_json_line(r) for r in rows).encode("utf-8")
        if not text:
            return
        try:
            with open(self.path / name, "a+b") as f:
                if f.tell() > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":  # a torn line from a crash: start afresh
                        text = b"\n" + text
                f.write(text)
                f.flush()
        except OSError as e:  # a write error carries no file name: name the log
            raise (as_os_error(e, self.path / name) or e) from e

    def _read_jsonl(self, name: str, since_line: int) -> tuple[list[dict[str, Any]], int]:
        path = self.path / name
        if not path.is_file():
            return [], since_line
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            inode, line, offset = self._offsets.get(name, (st.st_ino, 0, 0))
            if inode != st.st_ino or line > since_line or offset > st.st_size:  # replaced, shrank, or rewound
                line, offset = 0, 0
            f.seek(offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        rows: list[dict[str, Any]] = []
        for raw in complete.splitlines(keepends=True):
            if line >= since_line:
                row = _parse(raw)
                if row is not None:
                    rows.append(row)
            line += 1
            offset += len(raw)
        self._offsets[name] = (st.st_ino, line, offset)
        return rows, line

    # -- previews ------------------------------------------------------------------------------

    def save_preview(self, step: int, grid: np.ndarray, stats: dict[str, Any] | None = None) -> Path:
        """Write ``previews/step-NNNNNN.png`` from a uint8 grid (H, W) or (H, W, C), C in 1, 3, 4,
        and its statistics to ``step-NNNNNN.json`` first, so a listed preview has its stats.
        Raises ``ValueError`` for a grid of another dtype or shape, ``OSError`` when it cannot be
        written."""
        from PIL import Image

        grid = np.asarray(grid)
        if grid.dtype != np.uint8:
            raise ValueError(f"preview grid: expected uint8, got {grid.dtype}")
        if grid.ndim == 3 and grid.shape[2] == 1:
            grid = grid[:, :, 0]
        if not (grid.ndim == 2 or (grid.ndim == 3 and grid.shape[2] in (3, 4))):
            raise ValueError(f"preview grid: expected (H, W) or (H, W, 1|3|4), got {grid.shape}")
        folder = self.path / PREVIEWS
        if stats is not None:
            atomic_write_text(folder / f"{step_name(step)}.json", json.dumps(stats, default=_json_default))
        image = Image.fromarray(np.ascontiguousarray(grid))
        return atomic_write(folder / f"{step_name(step)}.png", lambda tmp: image.save(tmp, format="PNG"))

    def previews(self) -> list[tuple[int, Path]]:
        """``[(step, png path)]`` in step order."""
        return _numbered(self.path / PREVIEWS, _PREVIEW, lambda p: p.is_file())

    def preview_stats(self, step: int) -> dict[str, Any] | None:
        """The statistics saved with a preview, or None."""
        try:
            return json.loads((self.path / PREVIEWS / f"{step_name(step)}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoint_dir(self, step: int) -> Path:
        """``checkpoints/step-NNNNNN`` of this run (whether or not it exists)."""
        return self.path / CHECKPOINTS / step_name(step)

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints ``[(step, folder)]`` in step order (partial writes are invisible)."""
        return complete_checkpoints(self.path / CHECKPOINTS)

    def latest_checkpoint(self) -> Path | None:
        """The folder ``checkpoints/latest`` names, or (should it be missing or stale) the
        complete checkpoint with the highest step; None when there is none."""
        return latest_checkpoint(self.path / CHECKPOINTS)

    def mark_latest(self, step: int) -> Path:
        """Point ``checkpoints/latest`` at a complete checkpoint (written atomically). Raises
        ``RunDirError`` when the checkpoint of ``step`` is not complete."""
        folder = self.checkpoint_dir(step)
        if not (folder / STATE_FILE).is_file():
            raise RunDirError(f"{folder} is not a complete checkpoint; cannot mark it latest")
        return atomic_write_text(self.path / CHECKPOINTS / LATEST, folder.name + "\n")

    def save_checkpoint(self, step: int, *, keep: int | None = None, **parts: Any) -> Path:
        """:func:`~diffstudio.engine.checkpoint.save_checkpoint` into ``checkpoint_dir(step)``, then
        :meth:`mark_latest`, then (with ``keep``) :meth:`prune_checkpoints`. ``parts``: model,
        ema, optimizer, meta, rng."""
        path = save_checkpoint(self.checkpoint_dir(step), **parts)
        self.mark_latest(step)
        if keep:
            self.prune_checkpoints(keep)
        return path

    def prune_checkpoints(self, keep: int) -> list[Path]:
        """Delete all but the ``keep`` newest checkpoints, never the latest; returns what went.
        Raises ``ValueError`` when ``keep`` < 1."""
        if keep < 1:
            raise ValueError(f"keep: must be at least 1, got {keep}")
        latest = self.latest_checkpoint()
        doomed = [p for _, p in self.checkpoints()[:-keep] if p != latest]
        for p in doomed:
            remove_dir(p)
        self.clean_partial()
        return doomed

    def set_aside_after(self, step: int) -> list[Path]:
        """Resuming from ``step`` abandons what came after it: move later checkpoints and previews
        into ``abandoned/<time>-from-step-N/``, keep a copy of the metrics log there and drop the
        later rows from the live one (nothing is deleted), and point ``latest`` at ``step`` when it
        is a checkpoint of this run. Returns what was put aside (empty when nothing was later)."""
        later = [p for s, p in self.checkpoints() if s > step]
        later += [p for s, png in self.previews() if s > step for p in (png, png.with_suffix(".json")) if p.exists()]
        rows, _ = self.read_metrics()
        dropped = [r for r in rows if isinstance(r.get("step"), (int, float)) and r["step"] > step]
        if not later and not dropped:
            return []
        folder = self.path / ABANDONED / f"{time.strftime('%Y%m%d-%H%M%S')}-from-{step_name(step)}"
        folder.mkdir(parents=True, exist_ok=True)
        if dropped:  # the whole log as it was, then the live one without the later rows
            shutil.copy2(self.path / METRICS_FILE, folder / METRICS_FILE)
            self.truncate_metrics(step)
        for p in later:
            target = folder / p.parent.name / p.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, target)
        if (self.checkpoint_dir(step) / STATE_FILE).is_file():
            self.mark_latest(step)
        return later + ([folder / METRICS_FILE] if dropped else [])

    def clean_partial(self, min_age_s: float = 600.0) -> list[Path]:
        """Remove hidden leftovers of interrupted writes (``.name.*.tmp`` files and folders,
        ``.name.*.old`` folders being deleted) older than ``min_age_s``: a younger one may belong
        to a writer still at work."""
        removed = []
        now = time.time()
        for folder in (self.path, self.path / PREVIEWS, self.path / CHECKPOINTS):
            for p in folder.iterdir() if folder.is_dir() else ():
                if not (p.name.startswith(".") and p.name.endswith((".tmp", ".old"))):
                    continue
                try:
                    if now - p.lstat().st_mtime < min_age_s:
                        continue
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p)
                    else:
                        p.unlink()
                except OSError:
                    continue
                removed.append(p)
        return removed


def _numbered(folder: Path, pattern: re.Pattern, ok) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = pattern.match(p.name)
        if m and ok(p):
            found.append((int(m.group(1)), p))
    return sorted(found)


def run_folder_name(name: str) -> str:
    """The folder name a run called ``name`` gets: a dataset path gives its base name, sanitized.

    ``/tmp/photos/myimages/`` and ``file:///tmp/photos/myimages`` give ``myimages``; ``digits``
    stays ``digits``. The result is valid UTF-8 (bytes that are not become ``-xNN``, from their
    backslash escapes) without path separators, characters Windows forbids, control characters
    or leading dots. "" when nothing is left.
    """
    from diffstudio.data.paths import from_portable, printable

    text = from_portable(str(name))
    if _looks_like_path(text):
        text = os.path.basename(os.path.abspath(os.path.expanduser(text)))
    return _safe_name(printable(text))


def _looks_like_path(text: str) -> bool:
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(sep in text for sep in separators) or text.startswith("~") or text in (".", "..")


def _safe_name(name: str) -> str:
    """A folder name from free text: no path separators, control characters or leading dots."""
    return re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "-", str(name)).strip().lstrip(".").strip("-. ")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item") and tuple(getattr(o, "shape", (1,))) == ():  # numpy / torch scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"a {type(o).__name__} cannot be written to a run log")


def _json_line(row: dict[str, Any]) -> str:
    if not isinstance(row, dict):
        raise TypeError(f"a log row must be a dict, got {type(row).__name__}")
    return json.dumps(row, default=_json_default) + "\n"


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) else None


__all__ = ["RunDir", "RunDirError", "run_folder_name", "step_name"]
