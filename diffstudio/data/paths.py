"""File names that are not valid UTF-8: how to show them and how to write them into text files.

On Linux a file name is bytes. Python hands a name that is not valid UTF-8 (``b'caf\\xe9.png'``,
Latin-1) to us as a ``str`` holding a lone surrogate (``'caf\\udce9.png'``, PEP 383
"surrogateescape"). Such a string works with every ``os`` / ``pathlib`` call, but it cannot be
encoded to UTF-8: printing it to a strict UTF-8 stdout, writing it into TOML, or handing it to a
Rust library (safetensors metadata) raises ``UnicodeEncodeError``. Two conversions make it safe:

- :func:`printable` for people: the undecodable bytes become backslash escapes (``caf\\xe9.png``),
  as Python's ``backslashreplace`` error handler writes them; a valid name is unchanged.
- :func:`to_portable` / :func:`from_portable` for files that must give the exact name back: a
  name that cannot be encoded is written as an RFC 8089 ``file:`` URI with percent-encoded bytes
  (``file:///data/caf%E9``, what :meth:`pathlib.Path.as_uri` writes); a valid name is unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

FILE_URI_PREFIX = "file://"


def printable(name: str | os.PathLike[str]) -> str:
    """``name`` as valid Unicode text: undecodable bytes become ``\\xNN`` escapes.

    ``printable('caf\\udce9.png') == 'caf\\\\xe9.png'``; a name without surrogates is returned
    unchanged. Mirrors ``os.fsencode(name).decode('utf-8', 'backslashreplace')``.
    """
    text = os.fspath(name)
    if is_encodable(text):
        return text
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def is_encodable(text: str) -> bool:
    """True when ``text`` can be written as UTF-8 (holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def to_portable(source: str) -> str:
    """``source`` unchanged when it can be written as UTF-8, else its absolute ``file:`` URI.

    The URI percent-encodes the raw bytes of the name (RFC 8089 / RFC 3986, the form
    :meth:`pathlib.Path.as_uri` gives), so :func:`from_portable` returns the exact same name.
    """
    if is_encodable(source):
        return source
    return Path(os.path.abspath(os.path.expanduser(source))).as_uri()


def from_portable(source: str) -> str:
    """The file name a ``file:`` URI stands for (any other text is returned unchanged).

    ``from_portable('file:///data/caf%E9') == '/data/caf\\udce9'`` on Linux (raw bytes decoded
    with ``os.fsdecode``). Raises ValueError for a ``file:`` URI naming another host.
    """
    if not source.startswith(FILE_URI_PREFIX):
        return source
    parts = urlsplit(source)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file URI names another host ({parts.netloc}): {source}")
    return os.fsdecode(unquote_to_bytes(parts.path))
