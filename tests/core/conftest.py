"""Shared fixtures of the core suite. ``diffusers`` is slow to import, so it is imported once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def diffusers():
    import diffusers as _diffusers  # noqa: PLC0415 - deliberately lazy (about 2 s)

    return _diffusers
