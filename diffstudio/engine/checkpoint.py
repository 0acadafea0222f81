"""Checkpoints: safetensors for tensors, JSON for everything else, never pickle.

A checkpoint is a folder::

    model.safetensors      the model's state_dict
    ema.safetensors        the EMA weights (absent when EMA is off)
    optimizer.safetensors  the optimizer's state tensors, named ``state.<param_index>.<key>``
    rng.safetensors        RNG states (ByteTensors) under the caller's names
    state.json             meta (config dict, step, ...), the optimizer's non-tensor structure
                           (param_groups, scalars) and the size of every file; written last

It is filled in a hidden temporary folder beside its final place and renamed into place in one
step, so a process killed at any moment leaves either no checkpoint or a whole one.

What the engine puts in ``meta`` is its own business; export reads ``meta["config"]`` (a
``Config.to_dict()``), ``meta["model_spec"]`` (the model's ``.spec``) and ``meta["step"]``.

Loading never executes code from a file: ``.pt/.pth/.ckpt/.bin`` files go through
``torch.load(weights_only=True)``, which refuses any pickled object other than tensors and plain
containers *before* building it.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffstudio.engine.atomic import atomic_replace_dir

Tensor = torch.Tensor

FORMAT = "diffstudio-checkpoint"
VERSION = 1
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
CHECKPOINTS = "checkpoints"
"""The sub-folder of a run folder that holds its checkpoints (``step-000250`` ...)."""
LATEST = "latest"
"""The text file in ``checkpoints/`` naming the latest checkpoint folder."""
STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(ValueError):
    """A path is not a usable checkpoint; the message says what is wrong with it."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns. ``optimizer`` is ready for
    ``optimizer.load_state_dict`` (None when none was saved); tensors are on the CPU."""

    model: dict[str, Tensor]
    ema: dict[str, Tensor] | None = None
    optimizer: dict[str, Any] | None = None
    rng: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path = Path()

    @property
    def step(self) -> int | None:
        """The training step the checkpoint was saved at (None when its meta has none)."""
        return self.meta.get("step")

    def weights(self, prefer_ema: bool = True) -> dict[str, Tensor]:
        """The EMA weights when present (and wanted), else the raw model weights."""
        return self.ema if (prefer_ema and self.ema) else self.model

    def config(self):
        """The run's :class:`~diffstudio.engine.config.Config`, when ``meta["config"]`` holds one.
        Raises :class:`CheckpointError` when it holds none, ConfigError when it is invalid."""
        from diffstudio.engine.config import Config

        if not isinstance(self.meta.get("config"), dict):
            raise CheckpointError(f"{self.path}: the checkpoint carries no run configuration")
        return Config.from_dict(self.meta["config"])


# ---------------------------------------------------------------------------------------------
# saving


def save_checkpoint(
    path_dir: str | os.PathLike,
    *,
    model: dict[str, Tensor],
    ema: dict[str, Tensor] | None = None,
    optimizer: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    rng: dict[str, Tensor] | None = None,
) -> Path:
    """Write a checkpoint folder at ``path_dir`` atomically and return its path.

    An existing checkpoint at ``path_dir`` is replaced; between the two renames that takes, the
    folder is briefly absent (never half-written).
    Raises TypeError when ``meta`` is not JSON-serialisable (before anything is written) and
    OSError naming ``path_dir`` when the disk is full or the folder not writable."""
    target = Path(path_dir)
    meta_json = _json_text(meta or {}, "meta")  # fail before touching the disk
    opt_tensors: dict[str, Tensor] = {}
    opt_skeleton = None if optimizer is None else _encode(optimizer, "", opt_tensors)
    parts = {MODEL_FILE: model, EMA_FILE: ema, OPTIMIZER_FILE: opt_tensors if optimizer is not None else None,
             RNG_FILE: rng or {}}

    def fill(tmp: Path) -> None:
        sizes = {}
        for name, tensors in parts.items():
            if tensors is not None:
                sizes[name] = _write_safetensors(tmp / name, tensors)
        state = {"format": FORMAT, "version": VERSION, "files": sizes, "optimizer": opt_skeleton,
                 "meta": json.loads(meta_json)}
        _write_synced(tmp / STATE_FILE, json.dumps(state, indent=1).encode("utf-8"))
        os.chmod(tmp, 0o755)  # mkdtemp made it private
        _fsync_dir(tmp)
        if target.exists():  # last moment: move the old one aside so the rename can land
            trash.append(_set_aside(target))

    trash: list[Path] = []
    try:
        atomic_replace_dir(fill, target)
    except BaseException:
        if trash and not target.exists():  # put the old checkpoint back
            os.replace(trash[0] / target.name, target)
        raise
    finally:
        for t in trash:
            shutil.rmtree(t, ignore_errors=True)
    _fsync_dir(target.parent)
    return target


def _write_safetensors(path: Path, tensors: dict[str, Tensor]) -> int:
    from safetensors.torch import save_file

    save_file(_prepare(tensors), str(path), metadata={"format": "pt"})
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    return path.stat().st_size


def _prepare(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous CPU tensors that share no memory (safetensors refuses aliases)."""
    out, seen = {}, set()
    for name, t in tensors.items():
        if not isinstance(name, str) or not isinstance(t, Tensor):
            raise TypeError(f"checkpoint: {name!r} must be a str naming a tensor, got {type(t).__name__}")
        t = t.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or t.untyped_storage().nbytes() != t.nbytes:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _set_aside(path: Path) -> Path:
    """Move a folder into a hidden trash folder beside it in one rename; returns the trash folder."""
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.replace(path, trash / path.name)
    return trash


def remove_dir(path: Path) -> None:
    """Delete a folder so that it disappears in one rename (never seen half-deleted)."""
    shutil.rmtree(_set_aside(path), ignore_errors=True)


def _json_text(obj: Any, what: str) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        if hasattr(o, "item") and tuple(getattr(o, "shape", (1,))) == ():  # numpy / torch scalars
            return o.item()
        raise TypeError(f"{what}: a {type(o).__name__} is not JSON-serialisable (pass tensors as model, rng, ...)")

    return json.dumps(obj, default=default)


# The optimizer's state_dict: tensors go to safetensors under their dotted path, the rest to JSON
# with markers for what JSON cannot say (tuples, non-string keys, tensor placeholders).


def _encode(obj: Any, name: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, Tensor):
        if name in tensors:
            raise CheckpointError(f"optimizer state: two entries are both named {name!r}")
        tensors[name] = obj
        return {"__tensor__": name}
    if isinstance(obj, dict):
        plain = all(isinstance(k, str) and not k.startswith("__") for k in obj)
        items = [(k, _encode(v, _join(name, k), tensors)) for k, v in obj.items()]
        return dict(items) if plain else {"__items__": [[k, v] for k, v in items]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, _join(name, i), tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, _join(name, i), tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"optimizer state: {name or 'value'} is a {type(obj).__name__}, neither a tensor nor a JSON value")


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _decode(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        name = obj["__tensor__"]
        if name not in tensors:
            raise CheckpointError(f"optimizer state: tensor {name!r} is missing from {OPTIMIZER_FILE}")
        return tensors[name]
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {k: _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


# ---------------------------------------------------------------------------------------------
# loading


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint folder, a run folder (its latest checkpoint), an exported
    ``.safetensors`` file, or a weights-only ``.pt/.pth/.ckpt/.bin`` state_dict.

    Raises :class:`CheckpointError` for anything else, with a message that says why."""
    p = find_checkpoint(path)
    if p.is_file():
        return _load_safetensors_file(p) if p.suffix == ".safetensors" else _load_torch_file(p)
    return _load_folder(p)


def load_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` of the checkpoint ``path`` refers to (see :func:`load_checkpoint`), reading only
    its ``state.json`` where it has one (no tensors are loaded). Raises :class:`CheckpointError`."""
    p = find_checkpoint(path)
    if p.is_dir() and (p / STATE_FILE).is_file():
        meta = _read_state(p).get("meta")
        return meta if isinstance(meta, dict) else {}
    return load_checkpoint(p).meta


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint folder (or weights file) ``path`` refers to.
    Raises :class:`CheckpointError` when ``path`` does not exist, is a file of another kind, or is
    a run folder without a complete checkpoint yet."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p} does not exist")
    if p.is_file():
        if p.suffix not in PICKLE_SUFFIXES + (".safetensors",):
            raise CheckpointError(f"{p} is not a checkpoint: expected a checkpoint folder, a run folder, "
                                  f"a .safetensors file or a weights-only {'/'.join(PICKLE_SUFFIXES)} file")
        return p
    if (p / STATE_FILE).exists() or (p / MODEL_FILE).exists():
        return p
    run_path = p.parent if p.name == CHECKPOINTS else p
    if (run_path / CHECKPOINTS).is_dir():
        latest = latest_checkpoint(run_path / CHECKPOINTS)
        if latest is None:
            raise CheckpointError(f"{run_path} is a run folder without any complete checkpoint yet")
        return latest
    raise CheckpointError(f"{p} is neither a checkpoint folder (no {STATE_FILE}) nor a run folder")


def complete_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of the complete checkpoints (``step-N`` folders holding their
    ``state.json``) in a run's ``checkpoints/`` folder, in step order; partial writes are invisible."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), c) for c in folder.iterdir()
             if (m := STEP_DIR.match(c.name)) and (c / STATE_FILE).is_file()]
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint that ``folder/latest`` names (``folder`` is a run's ``checkpoints/``), or,
    should that file be missing or stale, the complete checkpoint with the highest step; None
    when there is none."""
    folder = Path(folder)
    try:
        name = (folder / LATEST).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        name = ""
    if STEP_DIR.match(name) and (folder / name / STATE_FILE).is_file():
        return folder / name
    found = complete_checkpoints(folder)
    return found[-1][1] if found else None


def _load_folder(p: Path) -> Checkpoint:
    state = _read_state(p)
    files = state.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files:
        raise CheckpointError(f"{p / STATE_FILE} lists no {MODEL_FILE}: not a complete checkpoint")
    for name, size in files.items():
        f = p / name
        if not f.is_file():
            raise CheckpointError(f"{p} is incomplete: {name} is missing")
        if f.stat().st_size != size:
            raise CheckpointError(f"{f} is damaged: {f.stat().st_size} bytes where {size} were written (truncated?)")
    tensors = {name: _read_tensors(p / name) for name in files if name.endswith(".safetensors")}
    skeleton = state.get("optimizer")
    optimizer = None if skeleton is None else _decode(skeleton, tensors.get(OPTIMIZER_FILE, {}))
    meta = state.get("meta") if isinstance(state.get("meta"), dict) else {}
    return Checkpoint(model=tensors[MODEL_FILE], ema=tensors.get(EMA_FILE), optimizer=optimizer,
                      rng=tensors.get(RNG_FILE, {}), meta=meta, path=p)


def _read_state(p: Path) -> dict[str, Any]:
    f = p / STATE_FILE
    if not f.is_file():
        raise CheckpointError(f"{p} is incomplete: {STATE_FILE} is missing")
    try:
        state = json.loads(f.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{f} is not valid JSON ({e}): the checkpoint is damaged") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{f} is not a diffstudio checkpoint description")
    if int(state.get("version", 0)) > VERSION:
        raise CheckpointError(f"{f} has format version {state.get('version')}; this diffstudio reads up to {VERSION}")
    return state


def _read_tensors(f: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(f), device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError, OSError, ...
        raise CheckpointError(f"{f} is not a readable safetensors file ({e})") from None


def _load_safetensors_file(p: Path) -> Checkpoint:
    """An exported single file: weights, and the config / spec from its metadata."""
    from safetensors import safe_open

    tensors = _read_tensors(p)
    with safe_open(str(p), framework="pt") as f:
        metadata = f.metadata() or {}
    meta: dict[str, Any] = {}
    for key, value in metadata.items():
        try:
            meta[key] = json.loads(value) if key in ("config", "model_spec", "data", "step") else value
        except json.JSONDecodeError:
            meta[key] = value
    return Checkpoint(model=tensors, meta=meta, path=p)


def _load_torch_file(p: Path) -> Checkpoint:
    """A state_dict saved with ``torch.save``; refused unless it holds only tensors and containers."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4 detected"
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _reason(e)
        what = ("it holds pickled Python objects, not just tensors, and loading it could run code"
                if "global" in reason.lower() else "it is damaged or not a weights-only PyTorch file")
        raise CheckpointError(f"{p} was refused: {what}. Only weights-only state_dicts are accepted; "
                              f"prefer .safetensors. ({reason})") from None
    except Exception as e:
        raise CheckpointError(f"{p} is not a readable PyTorch weights file ({_reason(e)})") from None
    model, ema = _state_dicts_in(obj)
    if model is None:
        raise CheckpointError(f"{p} holds no state_dict of named tensors")
    return Checkpoint(model=model, ema=ema, meta={"source": str(p)}, path=p)


def _state_dicts_in(obj: Any) -> tuple[dict[str, Tensor] | None, dict[str, Tensor] | None]:
    """``(model, ema)`` from a bare state_dict or a dict holding ``state_dict``/``model`` and ``ema``."""

    def is_state_dict(d: Any) -> bool:
        return isinstance(d, dict) and bool(d) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in d.items())

    if is_state_dict(obj):
        return dict(obj), None
    if not isinstance(obj, dict):
        return None, None
    ema = dict(obj["ema"]) if is_state_dict(obj.get("ema")) else None
    model = next((dict(obj[k]) for k in ("state_dict", "model") if is_state_dict(obj.get(k))), None)
    return (model, ema) if model is not None else (ema, None)


def _reason(e: BaseException) -> str:
    """The informative part of torch's long weights-only error (e.g. "Unsupported global: ...")."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0].split(" Please use")[0] if lines else type(e).__name__


__all__ = ["Checkpoint", "CheckpointError", "find_checkpoint", "load_checkpoint", "load_meta", "remove_dir", "save_checkpoint"]
