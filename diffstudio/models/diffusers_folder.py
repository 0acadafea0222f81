"""Checks before loading a diffusers model folder: the right class, and weights in safetensors only
(a pickle can run code when it is loaded), so ``from_pretrained(use_safetensors=True)`` never falls
back to one. Shared by ``model.init_from`` (UNet2DModel) and ``data.vae`` (AutoencoderKL). Also the
one way this package takes a class from diffusers (:func:`diffusers_class`)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_IMPORT_LOCK = threading.Lock()


def diffusers_class(name: str) -> Any:
    """diffusers' public class ``name`` (``"UNet2DModel"``, ``"AutoencoderKL"``, a scheduler ...).

    diffusers resolves its names lazily (``diffusers.utils.import_utils._LazyModule``), which is not
    thread-safe: two threads asking at once can get "cannot import name 'AutoencoderKL'" (seen in the
    app, where training, the schedule panel's latent thumbnails and "Start from a model…" run on their
    own threads). Every import goes through one lock here. Raises AttributeError for an unknown name."""
    with _IMPORT_LOCK:
        import diffusers

        return getattr(diffusers, name)


def _article(name: str) -> str:
    """ "an AutoencoderKL", "a UNet2DModel" (a "U" read as "you")."""
    return "an" if name[:1] in ("A", "E", "I", "O") else "a"


def folder_problem(folder: Path, class_name: str, what: str, hint: dict[str | None, str] | None = None) -> str | None:
    """Why ``folder`` cannot be loaded as diffusers' ``class_name`` (one line), or None.

    ``what`` names the model in the messages ("model", "VAE"); ``hint`` maps the class found
    instead (None: none) to the advice that follows.
    Reads ``config.json``'s ``_class_name`` and looks for ``*.safetensors`` (or a sharded index)."""
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{folder / 'config.json'} is not readable JSON ({e})"
    hint = hint or {}
    name = raw.get("_class_name") if isinstance(raw, dict) else None
    if name != class_name:
        found = f"{_article(name)} {name}" if name else "an unknown model"
        return f"{folder} holds {found}, not {_article(class_name)} {class_name}{hint.get(name, '')}"
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.safetensors.index.json")):
        pickles = sorted(f.name for f in folder.iterdir() if f.suffix in PICKLE_SUFFIXES)
        found = f"only {', '.join(pickles)} (pickle files, which can run code when loaded)" if pickles else "no weights"
        return f"{folder} has {found}: convert the {what} to safetensors first"
    return None
