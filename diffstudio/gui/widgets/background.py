"""Run short computations off the UI thread, newest request first.

:class:`LatestRunner` keeps at most one computation running and one waiting: while the user drags
a slider, only the newest request waits, and results of requests that were superseded before
they finished are dropped. Threads come from :class:`diffstudio.gui.worker.TaskThread`, which the
app stops and joins when it quits."""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QObject, Signal


class LatestRunner(QObject):
    """Runs one computation at a time off the UI thread, with at most the newest request waiting;
    ``finished(result)`` or ``failed(message)`` for the newest, ``busyChanged`` as it starts and ends."""
    finished = Signal(object)  # the result of the newest request
    failed = Signal(str)  # its error message
    busyChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._thread = None
        self._pending: Callable[[], Any] | None = None

    @property
    def busy(self) -> bool:
        """A computation is running."""
        return self._thread is not None

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` on a background thread (after the one running, replacing any waiting)."""
        if self._thread is not None:
            self._pending = fn
            return
        self._start(fn)

    def wait(self, timeout_ms: int = 60000) -> None:
        """Block until nothing runs or waits (tests and shutdown only)."""
        from PySide6.QtCore import QCoreApplication

        while self._thread is not None:
            thread = self._thread
            if not thread.wait(timeout_ms):
                return
            QCoreApplication.sendPostedEvents()
            QCoreApplication.processEvents()

    def shutdown(self) -> None:
        """Forget the waiting request and wait for the running one."""
        self._pending = None
        thread = self._thread
        if thread is not None:
            thread.wait()

    def _start(self, fn: Callable[[], Any]) -> None:
        from diffstudio.gui.worker import TaskThread

        thread = TaskThread(lambda _progress, _cancel: fn(), describe=_describe)
        thread.succeeded.connect(self._on_succeeded)
        thread.failed.connect(self._on_failed)
        thread.finished.connect(self._on_finished)
        self._thread = thread
        self.busyChanged.emit(True)
        thread.start()

    def _on_succeeded(self, result: Any) -> None:
        if self._pending is None:
            self.finished.emit(result)

    def _on_failed(self, message: str, _exc: Any) -> None:
        if self._pending is None:
            self.failed.emit(message)

    def _on_finished(self) -> None:
        self._thread = None
        fn, self._pending = self._pending, None
        if fn is not None:
            self._start(fn)
        else:
            self.busyChanged.emit(False)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
