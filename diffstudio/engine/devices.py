"""Device names from the user (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) checked once, at the
edge, so that an unavailable device is a one-line settings error rather than a traceback later."""

from __future__ import annotations

import torch

from diffstudio.engine.config import ConfigError

DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str, field: str = "run.device") -> torch.device:
    """The ``torch.device`` for ``name``; ``auto`` picks CUDA when present, else the CPU.

    Raises :class:`~diffstudio.engine.config.ConfigError` naming ``field`` when ``name`` is not
    a device string torch knows, names a device type diffstudio does not run on, or names a device
    this machine does not have (CUDA without CUDA, ``cuda:3`` on a one-GPU machine, MPS off macOS)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError([(field, f"expected a device name ({DEVICE_HELP}), got {name!r}")])
    name = name.strip()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError([(field, f"unknown device {name!r}; use {DEVICE_HELP}")]) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError([(field, f"CUDA was asked for ({name}), but no CUDA device is available; "
                                       f"use cpu or auto")])
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError([(field, f"{name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")])
        return device
    if device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError([(field, "MPS (Apple GPU) was asked for, but it is not available here; use cpu or auto")])
        return device
    raise ConfigError([(field, f"diffstudio does not run on {device.type!r} devices; use {DEVICE_HELP}")])


__all__ = ["DEVICE_HELP", "resolve_device"]
