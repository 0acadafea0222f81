"""Background threads for the GUI: the training run, and short tasks (dataset loading, export).

The Trainer is plain Python with hooks; :class:`TrainingThread` only turns those hooks into Qt
signals and the buttons into flags. Signals carry numbers, numpy arrays and engine ``Preview``
objects, never widgets; the UI thread never waits on training except in :meth:`join`, which the
app calls once, when it closes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from types import MappingProxyType
from typing import Any, Callable

from PySide6.QtCore import QCoreApplication, QThread, Signal

from diffstudio.engine.errors import report_error

log = logging.getLogger(__name__)

METRICS_INTERVAL_S = 0.05
"""Metrics are batched and emitted at most this often (20 emits per second)."""

PROGRESS_INTERVAL_S = 0.05


def training_threads(cores: int | None = None) -> int:
    """Torch intra-op threads for training: leave one core to the UI.

    Measured on 2 cores (benchmarks/gui_responsiveness.py): 1 thread trains moons-flow at
    ~230 steps/s with the UI timer's lateness p50 0.2 ms / p99 ~20 ms; 2 threads trained 5-10x
    slower (OpenMP workers fighting the UI and other processes for the cores). The count is
    per thread (OpenMP), so it does not change the UI thread's own count."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores - 1)


class _Throttle:
    """True at most once per ``interval`` seconds."""

    def __init__(self, interval: float):
        self.interval = interval
        self.last = 0.0

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            return True
        return False


class TrainingThread(QThread):
    """Runs ``Trainer(config, hooks, run_dir, resume).run()`` on its own thread.

    Signals (all queued to the receiver's thread):
    ``started_run(Mapping)`` on_start's info (a read-only copy); ``progress(Progress)``; ``metrics(tuple[StepMetrics])``
    batched, at most 20 per second; ``preview(Preview)`` (messages are frozen dataclasses of
    :mod:`diffstudio.engine.messages` and :mod:`diffstudio.engine.preview`);
    ``checkpoint(step, path)``; ``message(level, text)``; ``validation(ValidationResult)``;
    ``quality(step, {measure: value})``; ``pausedChanged(bool)`` once the
    training loop has actually stopped (True) or gone on (False); ``succeeded(TrainResult)``
    (None after :meth:`abort`); ``failed(str)`` with a readable message. Exactly one of
    succeeded / failed is emitted, before ``finished``.
    """

    started_run = Signal(object)
    progress = Signal(object)
    metrics = Signal(object)
    preview = Signal(object)
    checkpoint = Signal(int, str)
    message = Signal(str, str)
    pausedChanged = Signal(bool)
    validation = Signal(object)  # an engine ValidationResult (frozen dataclass)
    quality = Signal(int, object)  # step, {measure: value}
    succeeded = Signal(object)
    failed = Signal(str)

    def __init__(self, config, resume: str | None = None, run_dir: str | None = None,
                 dataset=None, num_threads: int | None = None, parent=None):
        super().__init__(parent)
        self.config = config
        self.resume_from = resume
        self.run_dir = run_dir
        self.dataset = _in_memory(dataset)
        self.num_threads = num_threads or training_threads()
        self._stop = threading.Event()
        self._abort = threading.Event()  # stop without the final checkpoint
        self._running = threading.Event()  # cleared while paused
        self._running.set()
        self._lock = threading.Lock()
        self._pending: list = []  # StepMetrics not yet emitted
        self._throttle = _Throttle(METRICS_INTERVAL_S)
        self.total_steps = int(config.run.steps)
        self.last_step = 0
        _register(self)

    # ---- buttons -> flags (called on the UI thread; never block) ----
    def request_stop(self) -> None:
        """Ask the run to stop before its next step (it saves a final checkpoint); wakes a paused run."""
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    def abort(self) -> None:
        """Stop at the next step without saving a checkpoint (closing the app: "don't save")."""
        self._abort.set()
        self.request_stop()

    def pause(self) -> None:
        """Hold the run before its next step (ignored once a stop was asked)."""
        if not self._stop.is_set():
            self._running.clear()

    def unpause(self) -> None:
        """Let a paused run go on."""
        self._running.set()

    @property
    def paused(self) -> bool:
        """The run is held before its next step."""
        return not self._running.is_set()

    @property
    def stopping(self) -> bool:
        """A stop was asked for."""
        return self._stop.is_set()

    def join(self, timeout_ms: int | None = None) -> bool:
        """Ask the run to stop and wait for the thread to end; True when it has ended."""
        self.request_stop()
        return self.wait() if timeout_ms is None else self.wait(timeout_ms)

    # ---- the training thread ----
    def run(self) -> None:  # noqa: D102 - QThread entry point
        try:
            import torch

            torch.set_num_threads(self.num_threads)
            from diffstudio.engine.trainer import Trainer

            trainer = Trainer(self.config, hooks=self._make_hooks(), run_dir=self.run_dir,
                              resume=self.resume_from, dataset=self.dataset)
            result = trainer.run()
        except _Aborted:
            self._flush_metrics()
            self.message.emit("info", f"training aborted at step {self.last_step}; no checkpoint saved")
            self.succeeded.emit(None)
            return
        except BaseException as exc:  # everything must reach the UI, never kill the app
            report = report_error(exc)
            if report.known:  # a reason for the user (a setting, a folder, memory): one line, no traceback
                log.info("training failed: %s", report.message)
            else:
                log.exception("training failed")
            self._flush_metrics()
            self.failed.emit(f"Training failed: {report.message}")
            return
        self._flush_metrics()
        self.succeeded.emit(result)

    def _make_hooks(self):
        from diffstudio.engine.trainer import TrainerHooks

        thread = self

        class QtHooks(TrainerHooks):
            def on_start(self, info: dict) -> None:
                thread.total_steps = int(info.get("total_steps", thread.total_steps))
                thread.last_step = int(info.get("start_step", 0))
                thread.started_run.emit(MappingProxyType(dict(info)))  # read-only copy

            def on_metrics(self, step: int, metrics: dict) -> None:
                thread._add_metrics(step, metrics)

            def on_preview(self, step: int, preview: Any) -> None:
                thread._flush_metrics()
                thread.preview.emit(preview)

            def on_checkpoint(self, step: int, path: str) -> None:
                thread._flush_metrics()
                thread.checkpoint.emit(int(step), str(path))

            def on_message(self, level: str, text: str) -> None:
                thread.message.emit(str(level), str(text))

            def on_validation(self, step: int, result: Any) -> None:
                thread._flush_metrics()
                thread.validation.emit(result)

            def on_quality(self, step: int, quality: dict) -> None:
                thread.quality.emit(int(step), {k: float(v) for k, v in quality.items()})

            def should_stop(self) -> bool:
                thread._check_abort()
                return thread._stop.is_set()

            def wait_if_paused(self) -> None:
                thread._wait_if_paused()
                thread._check_abort()

        return QtHooks()

    def _add_metrics(self, step: int, metrics: dict) -> None:
        from diffstudio.engine.messages import StepMetrics

        self.last_step = int(step)
        message = StepMetrics(int(step), {k: _plain(v) for k, v in metrics.items()})
        with self._lock:
            self._pending.append(message)
        if self._throttle.ready():
            self._flush_metrics()

    def _flush_metrics(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        from diffstudio.engine.messages import Progress

        last = batch[-1]
        self.metrics.emit(tuple(batch))
        self.progress.emit(Progress(last.step, self.total_steps, float(last.get("steps_per_s", 0.0) or 0.0),
                                    float(last.get("eta_s", float("nan")) or 0.0)))

    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise _Aborted()

    def _wait_if_paused(self) -> None:
        if self._running.is_set():
            return
        self._flush_metrics()
        self.pausedChanged.emit(True)
        while not self._running.wait(0.1):
            pass
        self.pausedChanged.emit(False)


def _in_memory(dataset):
    """The dataset the Trainer may take as it is: an already generated InMemoryDataset matching
    ``config.data`` (built-ins, toys). Anything else (the app's memory map of a folder's pixel
    cache) gives None, so the Trainer loads the data its own way (``load_training_data``: uint8 on
    the device within ``data.memory_budget_mb``, else streamed from the same cache)."""
    from diffstudio.data.dataset import InMemoryDataset

    return dataset if isinstance(dataset, InMemoryDataset) else None


class _Aborted(BaseException):
    """Raised from a hook to leave the training loop without its final checkpoint."""


def _plain(value: Any) -> Any:
    """Numbers as Python floats (tensors and numpy scalars become float)."""
    if isinstance(value, (int, float, str)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


class TaskThread(QThread):
    """Runs ``fn(progress, should_cancel)`` once, off the UI thread.

    ``progress(done, total)`` may be called from the task as often as it likes: it reaches the UI
    as ``progressed(done, total)`` at most 20 times a second (and always at the end).
    ``succeeded(result)`` or ``failed(message, exception)`` follows; a cancelled task reports its
    exception through ``failed`` too, and ``cancelled`` is True.
    """

    progressed = Signal(int, int)
    succeeded = Signal(object)
    failed = Signal(str, object)

    def __init__(self, fn: Callable[[Callable[[int, int], None], Callable[[], bool]], Any],
                 parent=None, describe: Callable[[BaseException], str] | None = None):
        super().__init__(parent)
        self._fn = fn
        self._cancel = threading.Event()
        self._throttle = _Throttle(PROGRESS_INTERVAL_S)
        self._describe = describe or (lambda e: report_error(e).message)  # the CLI's words
        _register(self)

    def cancel(self) -> None:
        """Ask the job to stop: its ``should_cancel()`` turns True (the job decides when to look)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """:meth:`cancel` was called."""
        return self._cancel.is_set()

    def run(self) -> None:  # noqa: D102 - QThread entry point
        try:
            result = self._fn(self._progress, self._cancel.is_set)
        except BaseException as exc:
            if not self.cancelled:
                log.info("background task failed", exc_info=True)
            self.failed.emit(self._describe(exc), exc)
            return
        self.succeeded.emit(result)

    def _progress(self, done: int, total: int) -> None:
        if done >= total or self._throttle.ready():
            self.progressed.emit(int(done), int(total))


# Every background thread is kept alive until it ends, and all are cancelled and joined when the
# application quits: a QThread destroyed while running aborts the process.
_LIVE: set[QThread] = set()
_hooked_quit = False


def _register(thread: QThread) -> None:
    """Hold ``thread`` until it has finished (pruned here, on the UI thread, never from the
    thread itself: dropping the last reference there would destroy a running QThread)."""
    global _hooked_quit
    for done in [t for t in _LIVE if t.isFinished()]:
        _LIVE.discard(done)
    _LIVE.add(thread)
    app = QCoreApplication.instance()
    if app is not None and not _hooked_quit:
        app.aboutToQuit.connect(stop_all_tasks)
        _hooked_quit = True


def stop_all_tasks(timeout_ms: int = 60000) -> None:
    """Cancel every running background thread (training included) and wait for each to end."""
    for thread in list(_LIVE):
        if isinstance(thread, TaskThread):
            thread.cancel()
        elif isinstance(thread, TrainingThread):
            thread.request_stop()
    for thread in list(_LIVE):
        if thread.wait(timeout_ms):
            _LIVE.discard(thread)
