"""Sizes and durations as people read them, the same everywhere (CLI lines, the dry run, the app)."""

from __future__ import annotations

import math


def format_bytes(n: int | float | None) -> str:
    """``n`` bytes as '22.0 KiB' below 1 MiB, '3.4 MiB' below 1 GiB, '1.25 GiB' above; 'unknown' for None.
    Binary units (KiB = 1024 bytes), thousands separated by commas."""
    if n is None:
        return "unknown"
    if n < 2**20:
        return f"{n / 2**10:,.1f} KiB"
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"


def format_duration(seconds: float) -> str:
    """``seconds`` (a duration in seconds, rounded to whole ones) as '0:42', '12:05', '1:02:03'
    (m:ss below an hour, h:mm:ss above); '–' when unknown (None, NaN, infinite or negative)."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


__all__ = ["format_bytes", "format_duration"]
