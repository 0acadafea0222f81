"""An append-only log of tensor rows on disk, so that a long job killed at any moment (``kill -9``,
power loss) keeps what it wrote.

The log is a folder of numbered safetensors files, ``000000.safetensors``, ``000001.safetensors``
..., each holding the next rows (dim 0) of the same named tensors. Every shard is written
atomically (:func:`diffstudio.engine.atomic.atomic_write`) and records in its metadata the row it
starts at, its row count and a SHA-256 of its tensors' bytes. Reading keeps the longest run of
valid shards from ``000000``; the first missing, truncated, damaged or inconsistent shard and every
shard after it are deleted, so their rows are simply produced again. Loading reads safetensors
only (no code runs).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import torch

Tensor = torch.Tensor
SHARD_VERSION = "1"
_SHARD = re.compile(r"^(\d{6})\.safetensors$")


class ShardLog:
    """The shards in ``folder`` of the tensors ``names`` (each (rows, ...), any dtype).

    ``read()`` once, then ``append()`` the next rows as they are made; ``remove()`` when the
    complete result is stored elsewhere."""

    def __init__(self, folder: str | Path, names: tuple[str, ...]):
        self.folder, self.names = Path(folder), tuple(names)
        self.shards = 0  # valid shards on disk: the next one is numbered this
        self.rows = 0  # rows in them

    def _path(self, index: int) -> Path:
        return self.folder / f"{index:06d}.safetensors"

    def read(self) -> dict[str, Tensor] | None:
        """All rows of the valid shards, concatenated per name (on the CPU), or None when there are
        none. Shards from the first invalid one on are deleted (an ``OSError`` deleting them is
        ignored: they are checked again next time)."""
        kept: list[dict[str, Tensor]] = []
        self.shards = self.rows = 0
        while (shard := self._load(self._path(self.shards), kept[0] if kept else None)) is not None:
            kept.append(shard)
            self.shards += 1
            self.rows += len(shard[self.names[0]])
        self._drop_from(self.shards)
        if not kept:
            return None
        return {k: torch.cat([s[k] for s in kept]) for k in self.names}

    def _load(self, path: Path, first: dict[str, Tensor] | None) -> dict[str, Tensor] | None:
        """Shard ``path`` when it is complete, starts at the rows read so far and matches ``first``'s
        shapes and dtypes; else None."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in self.names}
            rows = {len(v) for v in t.values()}
            same = first is None or all(v.shape[1:] == first[k].shape[1:] and v.dtype == first[k].dtype
                                        for k, v in t.items())
        except Exception:  # absent, truncated, not safetensors or scalars
            return None
        if (not same or len(rows) != 1 or rows == {0} or meta.get("diffstudio-shard") != SHARD_VERSION
                or meta.get("start") != str(self.rows) or meta.get("rows") != str(rows.pop())
                or meta.get("sha256") != _digest(t, self.names)):
            return None
        return t

    def append(self, t: dict[str, Tensor]) -> Path:
        """Write the next rows (every name, equally long, at least one row) as the next shard and
        return its path. Raises ValueError for rows of unequal lengths or missing names, and
        ``OSError`` naming the shard when it cannot be written (nothing is half-written)."""
        from safetensors.torch import save_file

        from diffstudio.engine.atomic import atomic_write

        if set(t) != set(self.names) or len({len(v) for v in t.values()}) != 1 or not len(t[self.names[0]]):
            raise ValueError(f"a shard needs every one of {self.names}, equally long and not empty")
        t = {k: t[k].detach().cpu().contiguous() for k in self.names}
        meta = {"format": "pt", "diffstudio-shard": SHARD_VERSION, "start": str(self.rows),
                "rows": str(len(t[self.names[0]])), "sha256": _digest(t, self.names)}
        path = atomic_write(self._path(self.shards), lambda tmp: save_file(t, tmp, metadata=meta))
        self.shards += 1
        self.rows += len(t[self.names[0]])
        return path

    def remove(self) -> None:
        """Delete the folder and everything in it (left behind if that fails)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _drop_from(self, index: int) -> None:
        try:
            for p in self.folder.iterdir() if self.folder.is_dir() else ():
                m = _SHARD.match(p.name)
                if m and int(m.group(1)) >= index:
                    p.unlink(missing_ok=True)
        except OSError:  # read-only or gone: the same shards are found invalid next time
            pass


def _digest(t: dict[str, Tensor], names: tuple[str, ...]) -> str:
    """SHA-256 of each tensor's name, dtype, shape and bytes, in ``names`` order."""
    h = hashlib.sha256()
    for k in names:
        v = t[k].contiguous()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(memoryview(v.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()
