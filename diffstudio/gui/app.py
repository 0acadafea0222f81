"""Start the desktop app: ``run_app(argv) -> exit code`` (``diffstudio`` with no sub-command).

A splash appears at once; the window is shown as soon as it is built, and work that is not needed
to draw it waits until the event loop runs: creating the Dataset panel, which loads the default
dataset on a background thread (or loading it here when that panel is missing), and probing CUDA
for the status bar. Nothing imports diffusers at start-up. PyTorch itself is imported before the
window (the config is built on the core math), which is most of the start-up time.
Set ``DIFFSTUDIO_STARTUP_TIMING=1`` to print the time until the window is on screen."""

from __future__ import annotations

import os
import sys
import time

from diffstudio.gui.singletons import protect_singletons  # noqa: F401 - also re-exported here

_T0 = time.perf_counter()


def _timing(label: str, since: float = _T0) -> None:
    if os.environ.get("DIFFSTUDIO_STARTUP_TIMING"):
        print(f"[startup] {label}: {time.perf_counter() - since:.3f} s", file=sys.stderr, flush=True)


def create_app(argv: list[str] | None = None):
    """The QApplication, named for QSettings (organisation and application 'diffstudio')."""
    protect_singletons()
    from PySide6.QtWidgets import QApplication

    from diffstudio.gui.help import APP_NAME, ORG_NAME

    app = QApplication.instance()
    if app is None:
        app = QApplication(["diffstudio", *(argv or [])])
    app.setOrganizationName(ORG_NAME)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName("diffstudio")
    app.setStyle("Fusion")
    return app


def show_splash(app):
    """A splash drawn at once (before PyTorch is imported, which takes seconds on a cold start)."""
    from PySide6.QtCore import QRect, Qt
    from PySide6.QtGui import QColor, QFont, QPainter, QPixmap
    from PySide6.QtWidgets import QLabel

    pixmap = QPixmap(480, 160)
    pixmap.fill(QColor("#1f2a38"))
    painter = QPainter(pixmap)
    painter.setPen(QColor("#ffffff"))
    font = QFont()
    font.setPointSize(24)
    font.setBold(True)
    painter.setFont(font)
    painter.drawText(QRect(28, 24, 440, 50), Qt.AlignmentFlag.AlignLeft, "diffstudio")
    font.setPointSize(10)
    font.setBold(False)
    painter.setFont(font)
    painter.setPen(QColor("#b8c4d4"))
    painter.drawText(QRect(28, 80, 440, 60), Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextWordWrap,
                     "See why a training choice works.\nLoading PyTorch…")
    painter.end()
    # a plain frameless label: QSplashScreen.show() waits up to a second for the window manager
    splash = QLabel()
    splash.setWindowFlags(Qt.WindowType.SplashScreen | Qt.WindowType.FramelessWindowHint)
    splash.setPixmap(pixmap)
    splash.resize(pixmap.size())
    screen = app.primaryScreen()
    if screen is not None:
        splash.move(screen.availableGeometry().center() - splash.rect().center())
    splash.show()
    app.processEvents()
    return splash


def run_app(argv: list[str] | None = None) -> int:
    """Show the main window and run the event loop; returns the exit code."""
    start = time.perf_counter()
    app = create_app(list(argv or []))
    splash = show_splash(app)
    _timing("splash shown (from run_app)", start)
    import torch

    # The UI's own computations (curves, oracle previews) are tiny: one intra-op thread keeps
    # them fast and leaves the cores to training, whose thread sets its own count.
    torch.set_num_threads(1)
    from diffstudio.gui.main_window import MainWindow, start_after_show

    window = MainWindow(defer_dataset=True)
    window.show_for_screen()  # maximized on a screen smaller than the default layout
    splash.close()
    _timing("window shown (from run_app)", start)

    def visible() -> None:
        _timing("window on screen (from run_app)", start)
        _timing("window on screen (from importing diffstudio.gui.app)")

    from PySide6.QtCore import QTimer

    QTimer.singleShot(0, visible)
    start_after_show(window)
    if window._dataset_cls is None:
        QTimer.singleShot(0, lambda: _load_default_dataset(window))
    app.aboutToQuit.connect(window.save_layout)
    exit_now(int(app.exec()))
    return 0  # not reached


def exit_now(code: int) -> None:
    """End the process once the event loop has returned, skipping the interpreter's teardown.

    By then everything that must survive is written: the window saved its layout (QSettings are
    synced), every background thread was stopped and joined on ``aboutToQuit`` (worker.stop_all_tasks),
    run folders are written with flushed appends and atomic replaces. What is left is tearing down
    PyTorch, Qt and some 10^5 Python objects, which keeps nothing and took 1.5-3 s on the build
    machine (benchmarks/close_mid_run.py): the process would linger, unseen, after its window has
    gone. Log handlers and standard streams are flushed first."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _load_default_dataset(window) -> None:
    """Fallback when the Dataset panel is unavailable: load ``config.data`` in the background."""
    from diffstudio.gui.worker import TaskThread

    data = window.state.config.data

    def load(progress, cancelled):
        from diffstudio.data.registry import load_dataset, source_kind
        from diffstudio.data.training_data import open_folder

        if source_kind(data.source) == "folder":  # the memory map of its uint8 cache, as the panel does
            return open_folder(data.source, resolution=data.resolution, channels=data.channels,
                               labels=data.labels, progress=progress, should_cancel=cancelled)
        return load_dataset(data.source, data.resolution, data.channels, data.labels, data.num_points,
                            progress=progress, should_cancel=cancelled)

    thread = TaskThread(load)
    thread.succeeded.connect(window.state.set_dataset)
    thread.failed.connect(lambda message, _exc: window.statusBar().showMessage(f"Dataset: {message}", 10000))
    window._dataset_thread = thread
    thread.start()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_app(sys.argv[1:]))
