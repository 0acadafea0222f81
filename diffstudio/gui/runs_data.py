"""Reading run folders for the GUI (thin, forgiving wrappers over ``engine.run_dir.RunDir``).

A run folder may be half written (a live run, a run copied from a cluster): every reader here
returns what it can and leaves the rest empty rather than raising into Qt.
"""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _run(path):
    from diffstudio.engine.run_dir import RunDir

    return RunDir(path)


def run_config(path):
    """The run's Config (raises when it cannot be read)."""
    return _run(path).config()


def run_data_kind(path) -> str | None:
    """"image" or "points" for the run's dataset; None when the config cannot be read."""
    from diffstudio.data.registry import list_builtin

    try:
        source = run_config(path).data.source
    except Exception:  # noqa: BLE001
        return None
    kinds = {name: kind for name, kind, _ in list_builtin()}
    return kinds.get(source, "image")  # a folder holds images


def list_checkpoints(path) -> list[tuple[int | None, str]]:
    """(step, folder) of the run's checkpoints, oldest first; [] when there are none."""
    try:
        return [(int(step), str(p)) for step, p in _run(path).checkpoints()]
    except Exception:  # noqa: BLE001 - a missing folder simply has no checkpoints
        return []


def checkpoint_step(path) -> int | None:
    """The step of a checkpoint folder (from its run's listing, else the digits of its name)."""
    path = Path(path)
    for step, p in list_checkpoints(path.parent.parent):
        if Path(p) == path:
            return step
    digits = re.findall(r"\d+", path.name)
    return int(digits[-1]) if digits else None


def read_all_metrics(path) -> list[dict]:
    """Every row of the run folder's metrics log, oldest first. Raises RunDirError when ``path`` is
    not a run folder."""
    rows, _ = _run(path).read_metrics(0)
    return rows


def list_previews(path_or_run) -> list[tuple[int, str]]:
    """(step, image file) of the run's saved preview grids, oldest first."""
    try:
        run = path_or_run if hasattr(path_or_run, "previews") else _run(path_or_run)
        return [(int(step), str(p)) for step, p in run.previews()]
    except Exception:  # noqa: BLE001
        return []


def load_image(path) -> np.ndarray | None:
    """A saved grid as uint8 (H, W, 3); None when it cannot be read (e.g. still being written)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception:  # noqa: BLE001
        return None


def flatten_config(config) -> dict[str, Any]:
    """{"schedule.family": "flow", ...} for a Config (or any dataclass tree / dict)."""
    out: dict[str, Any] = {}

    def walk(obj, prefix: str) -> None:
        if is_dataclass(obj):
            for f in fields(obj):
                walk(getattr(obj, f.name), f"{prefix}{f.name}.")
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix.rstrip(".")] = obj

    walk(config, "")
    return out


def diff_configs(a, b) -> list[tuple[str, Any, Any]]:
    """(dotted field, value in a, value in b) for every field that differs, in config order."""
    fa, fb = flatten_config(a), flatten_config(b)
    keys = list(fa) + [k for k in fb if k not in fa]
    missing = object()
    rows = []
    for k in keys:
        va, vb = fa.get(k, missing), fb.get(k, missing)
        if va != vb:
            rows.append((k, None if va is missing else va, None if vb is missing else vb))
    return rows
