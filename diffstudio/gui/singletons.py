"""A guard against a reference-count bug of shiboken 6.12 (its own module, so that the app and
the main window both reach it without importing each other)."""

from __future__ import annotations

import sys

_PADDED = False
_PAD = 1 << 40


def protect_singletons() -> bool:
    """Work around a reference-count bug of shiboken 6.12 on CPython < 3.12.

    Qt methods that return void or bool hand back ``None`` / ``True`` / ``False`` without a new
    reference, so every such call (``QLabel.setText``, ``setValue``, pyqtgraph's ``setData`` ...)
    drops one reference to a singleton. Python 3.12 made them immortal, which hides the bug; on 3.11
    the count of ``None`` falls by about a hundred per edit in this app, and CPython aborts
    ("Fatal Python error: none_dealloc" / "bool_dealloc") after a few hundred edits — seconds of
    dragging a control point — or at exit. Padding their counts by 2**40 keeps the process away
    from zero for good. Idempotent; True when the pads are in place."""
    global _PADDED
    if _PADDED:
        return True
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython" or hasattr(sys, "getobjects"):
        return False  # immortal singletons, another interpreter, or a trace-refs build (other layout)
    import ctypes

    for obj in (None, True, False):
        before = sys.getrefcount(obj)
        count = ctypes.c_ssize_t.from_address(id(obj))  # ob_refcnt is the first field of PyObject
        count.value += _PAD
        if sys.getrefcount(obj) - before != _PAD:  # not the layout we expected: undo, give up
            count.value -= _PAD
            return False
    _PADDED = True
    return True
