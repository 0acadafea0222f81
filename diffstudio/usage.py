"""The command line's one error type for bad input (below both ``cli`` and ``commands``, which
both raise it, so neither imports the other to reach it)."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the command line: reported on one line, exit code 2."""
