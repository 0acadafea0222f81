"""Errors raised by :mod:`diffstudio.data`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from diffstudio.data.dataset import SkippedFile


class DatasetError(Exception):
    """A dataset cannot be loaded: the message says which source and why.

    ``skipped`` lists the files that were tried and rejected (empty when the
    problem is not about individual files, e.g. a missing folder).
    """

    def __init__(self, message: str, skipped: Sequence[SkippedFile] = ()) -> None:
        super().__init__(message)
        self.skipped: list[SkippedFile] = list(skipped)


class LoadCancelled(DatasetError):
    """Loading stopped because ``should_cancel()`` returned True."""


class ImageDecodeError(Exception):
    """One image file cannot be used; ``str(error)`` is a human-readable reason."""
