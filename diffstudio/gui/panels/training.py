"""The Training panel: Start / Pause / Stop, progress, the live loss curve, checkpoints and export.

Training runs on a :class:`~diffstudio.gui.worker.TrainingThread`; the buttons only set flags on
it, so the UI thread never waits on training. :meth:`TrainingPanel.shutdown` is the one place that
joins the thread (the main window calls it when it closes).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QSizePolicy,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from diffstudio.core.units import format_duration
from diffstudio.engine.dry_run import format_size
from diffstudio.gui.runs_curve import LossCurve, loss_rows
from diffstudio.gui.widgets.val_curve import ValidationView
from diffstudio.gui.runs_data import (
    checkpoint_step,
    list_checkpoints,
    read_all_metrics,
    run_config,
    run_data_kind,
)
from diffstudio.gui.widgets.field import FieldMarker
from diffstudio.gui.widgets.settings_form import describe_editor, set_editor_value
from diffstudio.gui.worker import TaskThread, TrainingThread

ERROR_STYLE = "color: #b00020;"
ALERT_STYLE = "color: #8a3b00; background: #fff3cd; border: 1px solid #e0b252; padding: 3px; font-weight: bold;"
WARNING_STYLE = "color: #a05a00;"
NOTE_STYLE = "color: #555;"
EXPORT_FORMATS = (("diffusers folder", "diffusers"), ("safetensors file", "safetensors"))
PROBE_STEPS = 3  # the dry run's timing probe (as `diffstudio train --dry-run`)


def estimate_lines(e, total_steps: int) -> list[str]:
    """A :class:`~diffstudio.engine.dry_run.Estimate` in three short lines for the panel (the full
    text of ``format_estimate`` is the tooltip)."""
    lines = [f"{e.num_params:,} parameters · data: {e.data_text()}, {format_size(e.data_bytes)} "
             f"{e.data_where}",
             f"peak memory ~{format_size(e.peak_bytes)} of {format_size(e.available_bytes)} available on "
             f"{e.device} ({e.precision})"]
    if e.seconds_per_step is not None:
        lines.append(f"~{e.seconds_per_step * 1000:,.0f} ms per step, "
                     f"~{format_duration(e.seconds_per_step * total_steps)} for {total_steps:,} steps")
    return lines


def _estimate_task(config, dataset, available_bytes):
    """The background task of Estimate: the engine's dry run (``engine/dry_run.estimate``) with
    the training thread's torch thread count, stopping early when cancelled (data loading)."""

    def task(_progress, cancelled):
        from diffstudio.engine.dry_run import estimate
        from diffstudio.engine.trainer import TrainerHooks
        from diffstudio.gui.worker import training_threads

        class Hooks(TrainerHooks):
            def should_stop(self) -> bool:
                return cancelled()

        torch.set_num_threads(training_threads())
        return estimate(config, probe_steps=PROBE_STEPS, available_bytes=available_bytes, dataset=dataset,
                        hooks=Hooks())

    return task


def device_choices() -> list[tuple[str, str]]:
    """(label, run.device value): Auto and CPU always, each CUDA device when there is one."""
    choices = [("Auto (CUDA if available)", "auto"), ("CPU", "cpu")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            choices.append((f"CUDA {i}: {torch.cuda.get_device_name(i)}", f"cuda:{i}"))
    return choices


def export_target(parent, fmt: str, checkpoint: str, start_dir: str | None = None) -> str | None:
    """Ask where to export ``checkpoint``: a save-file dialog for a ``.safetensors`` file, and a
    save dialog that takes a new folder's name for a diffusers folder (the export creates it; an
    existing folder must be empty or a previous export). None when cancelled."""
    ckpt = Path(checkpoint)
    run_name = ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.name
    base = f"{run_name}-{ckpt.name}" if ckpt.name.startswith("step-") else run_name
    start = Path(start_dir) if start_dir else (ckpt.parent.parent.parent if ckpt.parent.name == "checkpoints"
                                              else ckpt.parent)
    if fmt == "safetensors":
        path, _ = QFileDialog.getSaveFileName(parent, "Export as a safetensors file",
                                              str(start / f"{base}.safetensors"), "safetensors (*.safetensors)")
        if path and not path.endswith(".safetensors"):
            path += ".safetensors"
        return path or None
    path, _ = QFileDialog.getSaveFileName(parent, "Export as a diffusers folder (type a new folder's name)",
                                          str(start / f"{base}-diffusers"), "diffusers pipeline folder (*)",
                                          options=QFileDialog.Option.DontConfirmOverwrite)
    return path or None


class TrainingPanel(QWidget):
    """Controls, progress, loss curve and checkpoints of the run being trained."""

    previewReady = Signal(object)  # an engine Preview, each time the run makes one
    statusChanged = Signal(dict)  # {"state", "device", "step", "total", "steps_per_s", "eta_s"}
    runStarted = Signal(str)  # the run folder
    runFinished = Signal(object)  # TrainResult, or None when it failed or was aborted
    exportFinished = Signal(str)  # the exported path, or "" on failure

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.thread: TrainingThread | None = None
        self.run_dir: str | None = None
        self.run_config = None  # the config of the run being trained (or last trained)
        self.last_preview = None
        self.last_metrics: dict = {}
        self.run_warnings: list[str] = []  # the engine's advice for the current run (engine/advice.py)
        self._export_threads: list[TaskThread] = []
        self.estimate_thread: TaskThread | None = None
        self.estimate_available_bytes: int | None = None  # None: what the device has (tests inject less)
        self.last_estimate = None  # (config, Estimate, dataset) of the estimate shown
        self._estimate_shown_for = None  # (config, dataset) of the estimate or failure shown
        self._estimate_again = False  # the settings changed while estimating: estimate again after
        self._status = {"state": "idle", "device": "", "step": 0, "total": state.config.run.steps,
                        "steps_per_s": 0.0, "eta_s": float("nan")}
        self._build()
        self._show_config()
        state.configChanged.connect(self._on_config_changed)
        state.validityChanged.connect(self._update_buttons)
        state.validityChanged.connect(self.marker.apply)
        self.marker.apply(state.errors)
        state.datasetChanged.connect(self._update_buttons)
        state.datasetChanged.connect(self._estimate_settings_changed)
        self._update_buttons()

    # ---------------------------------------------------------------- widgets
    def _build(self) -> None:
        # the shortcuts in the tooltips belong to the main window (they work while this panel is
        # tabbed away; a button's own shortcut would not)
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train with the current settings in a new run folder (Ctrl+Enter)")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause or resume the run (Ctrl+Shift+P)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Save a checkpoint and stop (Ctrl+.)")
        self.estimate_button = QPushButton("Estimate")
        self.estimate_button.setObjectName("estimate_button")
        self.estimate_button.setToolTip("Before any work: parameters, data footprint, peak memory against what the "
                                        f"device has, and time per step from a {PROBE_STEPS}-step probe "
                                        "(as diffstudio train --dry-run)")
        self._estimate_tip = self.estimate_button.toolTip()
        self.estimate_label = _text_label("estimate_label", NOTE_STYLE)
        self.estimate_label.hide()
        self.estimate_warning = _text_label("estimate_warning", ALERT_STYLE)
        self.estimate_warning.hide()
        self.init_label = _text_label("init_from_label")
        self.scratch_button = QPushButton("Train from scratch")
        self.scratch_button.setObjectName("train_from_scratch")
        self.scratch_button.setToolTip("Clear model.init_from: the next run starts from random weights "
                                       "(Model size applies again)")
        self.device_combo = QComboBox()
        for label, value in device_choices():
            self.device_combo.addItem(label, value)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 10_000_000)
        self.steps_spin.setSingleStep(100)
        self.steps_spin.setGroupSeparatorShown(True)

        controls = QHBoxLayout()  # two rows fit a narrow dock (Start is also in the toolbar)
        for w in (self.start_button, self.pause_button, self.stop_button):
            controls.addWidget(w)
        controls.addSpacing(12)
        controls.addWidget(self.estimate_button)
        controls.addStretch(1)
        init_row = QHBoxLayout()
        init_row.setContentsMargins(0, 0, 0, 0)
        init_row.addWidget(self.scratch_button, 0, Qt.AlignmentFlag.AlignTop)  # first: in view in a narrow dock
        init_row.addWidget(self.init_label, 1)
        self.init_row = QWidget()
        self.init_row.setLayout(init_row)
        run_row = QHBoxLayout()
        run_row.addWidget(QLabel("Device"))
        run_row.addWidget(self.device_combo, 4)
        run_row.addWidget(QLabel("Total steps"))
        run_row.addWidget(self.steps_spin)
        run_row.addStretch(1)
        self.device_combo.setMinimumContentsLength(12)
        self.device_combo.setMaximumWidth(360)  # takes the row's spare width, up to a readable size
        self.device_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)

        self.reason_label = QLabel()
        self.reason_label.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("step %v / %m")
        self.rate_label = QLabel("")
        self.rate_label.setMinimumWidth(220)
        progress = QHBoxLayout()
        progress.addWidget(self.progress_bar, 1)
        progress.addWidget(self.rate_label)
        self.message_label = _text_label()
        self.run_label = _text_label(style=NOTE_STYLE, wrap=False)

        self.curve = LossCurve()
        self.validation_view = ValidationView()

        self.checkpoint_list = QListWidget()
        self.format_combo = QComboBox()
        for label, value in EXPORT_FORMATS:
            self.format_combo.addItem(label, value)
        self.export_button = QPushButton("Export…")
        self.resume_button = QPushButton("Resume from here")
        self.resume_button.setToolTip("Continue training from this checkpoint (up to Total steps)")
        self.export_label = _text_label()
        ckpt_box = QGroupBox("Checkpoints of this run")
        ckpt_layout = QVBoxLayout(ckpt_box)
        ckpt_layout.addWidget(self.checkpoint_list, 1)
        row = QHBoxLayout()
        row.addWidget(self.format_combo, 1)
        row.addWidget(self.export_button)
        ckpt_layout.addLayout(row)
        ckpt_layout.addWidget(self.resume_button)
        ckpt_layout.addWidget(self.export_label)

        curves = QSplitter(Qt.Orientation.Vertical)  # training loss above, loss by noise level below
        curves.addWidget(self.curve)
        curves.addWidget(self.validation_view)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(curves)
        splitter.addWidget(ckpt_box)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addLayout(run_row)
        layout.addWidget(self.init_row)
        layout.addWidget(self.estimate_label)
        layout.addWidget(self.estimate_warning)
        layout.addWidget(self.reason_label)
        layout.addLayout(progress)
        layout.addWidget(self.message_label)
        # the curves and checkpoints need more width than a narrow dock has: they scroll sideways on
        # their own, so the controls, the model line and the estimate above wrap to the dock instead
        self.curves_area = QScrollArea()
        self.curves_area.setWidget(splitter)
        self.curves_area.setWidgetResizable(True)
        self.curves_area.setFrameShape(QFrame.Shape.NoFrame)
        self.curves_area.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.curves_area.setMinimumHeight(splitter.minimumSizeHint().height()
                                          + self.curves_area.horizontalScrollBar().sizeHint().height())
        self.curves_area.setMinimumWidth(200)
        layout.addWidget(self.curves_area, 1)
        layout.addWidget(self.run_label)

        describe_editor(self.device_combo, "run.device")
        describe_editor(self.steps_spin, "run.steps")
        self.marker = FieldMarker()
        self.marker.add("run.device", self.device_combo)
        self.marker.add("run.steps", self.steps_spin)
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        self.device_combo.currentIndexChanged.connect(self._on_device_edited)
        self.steps_spin.valueChanged.connect(self._on_steps_edited)
        self.checkpoint_list.currentItemChanged.connect(self._on_checkpoint_selected)
        self.export_button.clicked.connect(self._export_clicked)
        self.resume_button.clicked.connect(self._resume_clicked)
        self.estimate_button.clicked.connect(self._estimate_clicked)
        self.scratch_button.clicked.connect(self.train_from_scratch)
        for label in (self.init_label, self.estimate_label, self.estimate_warning):
            # wrapped text takes the width the dock has and never widens the panel (no clipping)
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.setMinimumWidth(120)

    # ------------------------------------------------------------ config sync
    def _show_config(self) -> None:
        run = self.state.config.run
        for w in (self.device_combo, self.steps_spin):
            w.blockSignals(True)
        index = self.device_combo.findData(run.device)
        if index < 0:  # e.g. "cuda" or a device this machine lacks: show it as asked
            self.device_combo.addItem(str(run.device), run.device)
            index = self.device_combo.count() - 1
        self.device_combo.setCurrentIndex(index)
        set_editor_value(self.steps_spin, run.steps)  # a bad value from a file stays visible, marked
        for w in (self.device_combo, self.steps_spin):
            w.blockSignals(False)
        self._show_init_from()

    def _show_init_from(self) -> None:
        """The model the next run starts from (model.init_from), with Train from scratch."""
        path = self.state.config.model.init_from
        self.init_row.setVisible(bool(path))
        parts = Path(path).parts if path else ()
        short = str(Path(*parts[-2:])) if len(parts) > 2 else str(path)
        self.init_label.setText(f"Next run starts from {'…/' if len(parts) > 2 else ''}{short}" if path else "")
        self.init_label.setToolTip(f"model.init_from = {path}\nThe run takes this model's architecture and weights "
                                   "(Model size is ignored); set it with File ▸ Start from a model…")

    def train_from_scratch(self) -> None:
        """Clear model.init_from (one undo step)."""
        self.state.update("model", init_from="")

    def _on_device_edited(self, _index: int) -> None:
        self.state.update("run", device=self.device_combo.currentData())

    def _on_steps_edited(self, value: int) -> None:
        self.state.update("run", steps=int(value))

    def _on_config_changed(self, section: str) -> None:
        if section in ("run", "all"):
            self._show_config()
        if section in ("model", "all"):
            self._show_init_from()
        self._estimate_settings_changed()
        self._update_buttons()

    # ---------------------------------------------------------------- actions
    @property
    def training(self) -> bool:
        """A training thread is running."""
        return self.thread is not None and self.thread.isRunning()

    def start_reason(self) -> str:
        """Why Start is disabled; '' when a run may start."""
        if self.thread is not None:
            return "Training — edits apply to the next run."
        if self.state.errors:
            field, message = self.state.errors[0]
            more = f" (and {len(self.state.errors) - 1} more)" if len(self.state.errors) > 1 else ""
            return f"Fix the settings first: {field}: {message}{more}"
        if self.state.dataset is None:
            return "No dataset loaded yet: choose one on the Dataset panel (or wait for it to load)."
        return ""

    def start(self) -> bool:
        """Start a new run with the current settings; False (and the reason shown) if it cannot."""
        reason = self.start_reason()
        if reason:
            self._update_buttons()
            return False
        self._cancel_estimate(again=False)  # it would share the cores with the run (and time them)
        self.curve.clear()
        self.validation_view.clear()
        self.checkpoint_list.clear()
        self.run_dir = None
        self._launch(self.state.config, resume=None, dataset=self.state.dataset)
        return True

    def resume_from(self, checkpoint: str) -> bool:
        """Continue the run that ``checkpoint`` belongs to, up to the Total steps set here."""
        if self.thread is not None:
            return False
        step = checkpoint_step(checkpoint)
        run_path = Path(checkpoint).parent.parent
        try:
            config = run_config(run_path)
        except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
            self._show_message(f"Cannot resume: the run's config cannot be read ({exc})", ERROR_STYLE)
            return False
        steps = self.state.config.run.steps
        if step is not None and steps <= step:
            self._show_message(f"Cannot resume: the checkpoint is at step {step}; set Total steps above "
                               f"{step} to continue.", ERROR_STYLE)
            return False
        config = config.updated(run={"steps": steps, "device": self.state.config.run.device})
        self.curve.clear()
        self.validation_view.clear()
        self.load_history(run_path, up_to=step)
        self.run_dir = str(run_path)
        self._launch(config, resume=str(checkpoint), dataset=None)
        return True

    def _launch(self, config, resume: str | None, dataset) -> None:
        self.last_metrics = {}
        self.run_warnings = []
        self.run_config = config
        self._show_message("", "")
        thread = TrainingThread(config, resume=resume, dataset=dataset)
        thread.started_run.connect(self._on_started)
        thread.progress.connect(self._on_progress)
        thread.metrics.connect(self._on_metrics)
        thread.preview.connect(self._on_preview)
        thread.checkpoint.connect(self._on_checkpoint)
        thread.message.connect(self._on_message)
        thread.pausedChanged.connect(self._on_paused)
        thread.validation.connect(self.validation_view.add_result)
        thread.quality.connect(self.validation_view.add_quality)
        thread.succeeded.connect(self._on_succeeded)
        thread.failed.connect(self._on_failed)
        thread.finished.connect(self._on_thread_finished)
        self.thread = thread
        total = int(config.run.steps)
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(0)
        self.rate_label.setText("starting…")
        self._set_status(state="starting", step=0, total=total, steps_per_s=0.0, eta_s=float("nan"))
        self.state.set_training(True)
        thread.start()
        self._update_buttons()

    def toggle_pause(self) -> None:
        """Pause the run before its next step, or resume a paused one (nothing while stopping)."""
        t = self.thread
        if t is None or t.stopping:
            return
        if t.paused:
            t.unpause()
            self._set_status(state="training")
        else:
            t.pause()
            self.rate_label.setText("pausing…")
        self._update_buttons()

    def stop(self) -> None:
        """Ask the run to save a checkpoint and stop (returns at once)."""
        if self.thread is None or self.thread.stopping:
            return
        self.thread.request_stop()
        self.rate_label.setText("stopping — saving a checkpoint…")
        self._set_status(state="stopping")
        self._update_buttons()

    def ask_to_stop(self) -> bool | None:
        """Ask "Save a checkpoint and stop training?": True (Yes: save), False (No: stop without
        one; the run folder keeps its config, metrics and earlier checkpoints), None (Cancel)."""
        answer = QMessageBox.question(
            self, "Training is running", "Save a checkpoint and stop training?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
            | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes)
        if answer == QMessageBox.StandardButton.Cancel:
            return None
        return answer == QMessageBox.StandardButton.Yes

    def stop_for_close(self, save: bool) -> None:
        """Ask the run to stop (with its final checkpoint when ``save``) without waiting: the
        window stays up, says so, and closes when ``thread.finished`` arrives."""
        thread = self.thread
        if thread is None:
            return
        if save:
            self.stop()
        else:
            thread.abort()
            self.rate_label.setText("stopping without a checkpoint…")
            self._set_status(state="stopping")
            self._update_buttons()

    def shutdown(self, ask: bool = True) -> bool:
        """Stop and join every thread of this panel; False when the user cancels.

        ask=True while training: "Save a checkpoint and stop?" Yes: stop with a checkpoint;
        No: stop without one; Cancel: keep training and return False.
        """
        thread = self.thread
        save = True
        if thread is not None and thread.isRunning() and ask:
            answer = self.ask_to_stop()
            if answer is None:
                return False
            save = answer
        if thread is not None:
            if not save:
                thread.abort()
            thread.join()
        for export in self._export_threads:
            export.wait()
        self._export_threads.clear()
        estimate, self.estimate_thread = self.estimate_thread, None
        if estimate is not None:  # its result is no longer wanted; the probe ends within a few steps
            estimate.cancel()
            estimate.wait()
        return True

    # --------------------------------------------------------------- estimate
    def estimate_reason(self) -> str:
        """Why Estimate is disabled; '' when it may run."""
        if self.thread is not None:
            return "Training: estimate before a run, not during one."
        if self.state.errors:
            return "Fix the settings first (see Problems)."
        if self.state.dataset is None:
            return "No dataset loaded yet."
        return ""

    def _estimate_clicked(self) -> None:
        if self.estimate_thread is not None:
            self._cancel_estimate(again=False)
        else:
            self.estimate()

    def estimate(self) -> bool:
        """Estimate the current settings' cost on a background thread (``engine/dry_run.py``);
        False when it cannot start now (see :meth:`estimate_reason`) or one is still running."""
        if self.estimate_reason() or self.estimate_thread is not None:
            return False
        config = self.state.config
        thread = TaskThread(_estimate_task(config, self.state.dataset, self.estimate_available_bytes),
                            describe=lambda e: f"Estimate failed: {_report(e)}")
        thread.config, thread.dataset = config, self.state.dataset
        thread.succeeded.connect(self._on_estimated)
        thread.failed.connect(self._on_estimate_failed)
        thread.finished.connect(self._on_estimate_finished)
        self.estimate_thread = thread
        self._estimate_again = False
        self._estimate_shown_for = None
        self.estimate_label.setStyleSheet(NOTE_STYLE)
        self.estimate_label.setText(f"Estimating… (setting up the run and timing {PROBE_STEPS} steps)")
        self.estimate_label.show()
        self.estimate_warning.hide()
        thread.start()
        self._update_buttons()
        return True

    def _cancel_estimate(self, again: bool) -> None:
        """Ignore the running estimate's result; with ``again``, estimate anew once it has ended
        (the settings changed under it)."""
        thread = self.estimate_thread
        if thread is None or thread.cancelled:
            self._estimate_again = self._estimate_again and again
            return
        thread.cancel()
        self._estimate_again = again
        self.estimate_label.setText("Settings changed: estimating again…" if again else "Estimate cancelled.")
        self._update_buttons()

    def _estimate_settings_changed(self, *_changed) -> None:
        """The settings or the dataset changed: a running estimate starts again, a shown one is
        marked as being for earlier settings."""
        current = (self.state.config, self.state.dataset)
        thread = self.estimate_thread
        if thread is not None:
            if current[0] != thread.config or current[1] is not thread.dataset:
                self._cancel_estimate(again=True)
            return
        shown = self._estimate_shown_for  # an estimate or a failure: either is for those settings only
        if shown is not None and (shown[0] != current[0] or shown[1] is not current[1]) \
                and self.estimate_label.isVisible():
            self.estimate_label.setStyleSheet(NOTE_STYLE + " font-style: italic;")
            if not self.estimate_label.text().startswith("(for earlier settings"):
                self.estimate_label.setText("(for earlier settings: press Estimate again) "
                                            + self.estimate_label.text())

    def _is_current_estimate(self) -> bool:
        thread = self.sender()
        return thread is self.estimate_thread and not thread.cancelled

    def _on_estimated(self, e) -> None:
        if not self._is_current_estimate():
            return
        from diffstudio.engine.dry_run import format_estimate

        config = self.estimate_thread.config
        self.last_estimate = (config, e, self.estimate_thread.dataset)
        self._estimate_shown_for = (config, self.estimate_thread.dataset)
        self.estimate_label.setStyleSheet(NOTE_STYLE)
        self.estimate_label.setText("\n".join(estimate_lines(e, int(config.run.steps))))
        self.estimate_label.setToolTip(format_estimate(e, int(config.run.steps)))
        self.estimate_warning.setText("\n".join(f"⚠ {w}" for w in e.warnings))
        self.estimate_warning.setVisible(bool(e.warnings))

    def _on_estimate_failed(self, message: str, _exc) -> None:
        if not self._is_current_estimate():
            return
        self.last_estimate = None
        self._estimate_shown_for = (self.estimate_thread.config, self.estimate_thread.dataset)
        self.estimate_label.setStyleSheet(ERROR_STYLE)
        self.estimate_label.setText(message)
        self.estimate_warning.hide()

    def _on_estimate_finished(self) -> None:
        if self.sender() is not self.estimate_thread:
            return
        self.estimate_thread = None
        again, self._estimate_again = self._estimate_again, False
        self._update_buttons()
        if again and not self.estimate():
            self.estimate_label.setText(f"Settings changed; not estimated: {self.estimate_reason()}")

    # ------------------------------------------------------- training signals
    def _on_started(self, info: dict) -> None:
        self.run_dir = info.get("run_dir") or self.run_dir
        total = int(info.get("total_steps", self.progress_bar.maximum()))
        start = int(info.get("start_step", 0))
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(start)
        params = info.get("num_params")
        precision = info.get("precision")
        self.run_label.setText(f"Run folder: {self.run_dir}   ·   device {info.get('device', '?')}"
                               + (f" in {precision}" if precision else "")
                               + (f"   ·   {params:,} parameters" if isinstance(params, int) else ""))
        self.run_label.setToolTip(f"Precision: {info.get('precision_reason', '')}" if precision else "")
        self._set_status(state="training", device=str(info.get("device", "")), step=start, total=total,
                         precision=str(precision or ""), precision_reason=str(info.get("precision_reason", "")))
        self.refresh_checkpoints()
        if self.run_dir:
            self.runStarted.emit(self.run_dir)

    def _on_progress(self, progress) -> None:
        """A :class:`~diffstudio.engine.messages.Progress`: the bar and the status bar show its step."""
        total = progress.total
        self.progress_bar.setMaximum(max(1, total))
        self.progress_bar.setValue(min(progress.step, total))
        if not (self.thread is not None and (self.thread.stopping or self.thread.paused)):
            self.rate_label.setText(f"{progress.steps_per_s:,.1f} steps/s · ETA {format_duration(progress.eta_s)}")
        self._set_status(step=progress.step, total=total, steps_per_s=progress.steps_per_s, eta_s=progress.eta_s)

    def _on_metrics(self, batch) -> None:
        """A tuple of :class:`~diffstudio.engine.messages.StepMetrics`."""
        steps, losses = loss_rows({"step": m.step, **m.values} for m in batch)
        self.curve.add(steps, losses)
        self.last_metrics = dict(batch[-1].values)

    def _on_preview(self, preview) -> None:
        self.last_preview = preview
        for warning in getattr(preview, "warnings", []) or []:
            self._show_message(f"Preview: {warning}", WARNING_STYLE)
        self.previewReady.emit(preview)

    def _on_checkpoint(self, step: int, path: str) -> None:
        self.refresh_checkpoints()

    def _on_message(self, level: str, text: str) -> None:
        if level == "warning":  # warnings of a run stay together, so a second does not hide the first
            warnings = self.run_warnings
            warnings.append(text)
            self._show_message("\n".join(f"⚠ {w}" for w in warnings), WARNING_STYLE)
            return
        style = {"error": ERROR_STYLE}.get(level, NOTE_STYLE)
        self._show_message(text, style)

    def _on_paused(self, paused: bool) -> None:
        if paused:
            self.rate_label.setText("paused")
        self._set_status(state="paused" if paused else "training")
        self._update_buttons()

    def _on_succeeded(self, result) -> None:
        if result is None:
            self._show_message("Training aborted; no checkpoint saved.", NOTE_STYLE)
        else:
            how = "Stopped" if result.stopped else "Finished"
            loss = f", final loss {result.final_loss:.4g}" if math.isfinite(result.final_loss) else ""
            self._show_message(f"{how} at step {result.steps}{loss}. Checkpoint saved in {result.run_dir}",
                               NOTE_STYLE)
            self.progress_bar.setValue(min(result.steps, self.progress_bar.maximum()))
            self._set_status(step=int(result.steps))  # the status bar and the bar say the same step
        self.runFinished.emit(result)

    def _on_failed(self, message: str) -> None:
        self._show_message(message, ERROR_STYLE)
        self.runFinished.emit(None)

    def _on_thread_finished(self) -> None:
        if self.sender() is not self.thread:
            return
        self.thread = None
        self.curve.redraw()
        self.refresh_checkpoints()
        self.state.set_training(False)
        self.rate_label.setText("")
        self._set_status(state="idle", steps_per_s=0.0, eta_s=float("nan"))
        self._update_buttons()

    # ------------------------------------------------------------ run folder
    def load_run(self, path: str) -> None:
        """Show a run folder's loss history and checkpoints (to resume or export them)."""
        if self.thread is not None:
            return
        self.run_dir = str(path)
        self.curve.clear()
        self.validation_view.clear()
        self.load_history(path)
        self.run_label.setText(f"Run folder: {path}")
        self.refresh_checkpoints()

    def load_history(self, path, up_to: int | None = None) -> None:
        """Add the loss history of ``metrics.jsonl`` (up to step ``up_to``) to the curve."""
        try:
            rows = read_all_metrics(path)
        except Exception:  # noqa: BLE001 - a missing or partial log just shows no history
            return
        rows = [r for r in rows if up_to is None or r.get("step", 0) <= up_to]
        steps, losses = loss_rows(rows)
        self.curve.add(steps, losses)
        self.validation_view.add_rows(rows)
        self.curve.redraw()

    def refresh_checkpoints(self) -> None:
        """List the run's checkpoints; the selection follows the newest unless an older one was picked."""
        current = self.selected_checkpoint()
        if self.checkpoint_list.currentRow() == self.checkpoint_list.count() - 1:
            current = None  # the newest was selected: select the new newest
        self.checkpoint_list.blockSignals(True)
        self.checkpoint_list.clear()
        for step, path in list_checkpoints(self.run_dir) if self.run_dir else []:
            item = QListWidgetItem(f"step {step:,}" if step is not None else Path(path).name)
            item.setData(Qt.ItemDataRole.UserRole, str(path))
            item.setToolTip(str(path))
            self.checkpoint_list.addItem(item)
            if str(path) == current:
                self.checkpoint_list.setCurrentItem(item)
        if self.checkpoint_list.currentItem() is None and self.checkpoint_list.count():
            self.checkpoint_list.setCurrentRow(self.checkpoint_list.count() - 1)
        self.checkpoint_list.blockSignals(False)
        self._on_checkpoint_selected()

    def _on_checkpoint_selected(self, *_items) -> None:
        self._update_export_formats()
        self._update_buttons()

    def selected_checkpoint(self) -> str | None:
        """The path of the checkpoint selected in the list, or None."""
        item = self.checkpoint_list.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    # ----------------------------------------------------------------- export
    def _export_clicked(self) -> None:
        checkpoint = self.selected_checkpoint()
        if checkpoint is None:
            return
        fmt = self.format_combo.currentData()
        target = export_target(self, fmt, checkpoint)
        if target:
            self.export_checkpoint(checkpoint, fmt, target)

    def export_checkpoint(self, checkpoint: str, fmt: str, out_dir: str) -> None:
        """Export in the background; the result (or the reason it failed) is shown inline."""
        from diffstudio.engine.export import export

        self.export_label.setStyleSheet(NOTE_STYLE)
        self.export_label.setText(f"Exporting {fmt}…")
        thread = TaskThread(lambda _progress, _cancel: export(checkpoint, fmt, out_dir),
                            describe=lambda e: f"Export failed: {e}")
        thread.succeeded.connect(self._on_exported)
        thread.failed.connect(self._on_export_failed)
        thread.finished.connect(self._forget_export)
        self._export_threads.append(thread)
        self._update_buttons()
        thread.start()

    def _on_exported(self, path) -> None:
        self.export_label.setStyleSheet(NOTE_STYLE)
        self.export_label.setText(f"Exported to {path}")
        self.exportFinished.emit(str(path))

    def _on_export_failed(self, message: str, _exc) -> None:
        self.export_label.setStyleSheet(ERROR_STYLE)
        self.export_label.setText(message)
        self.exportFinished.emit("")

    def _forget_export(self) -> None:
        thread = self.sender()
        if thread in self._export_threads:
            self._export_threads.remove(thread)
        self._update_buttons()

    def _resume_clicked(self) -> None:
        checkpoint = self.selected_checkpoint()
        if checkpoint is None:
            return
        later = self._later_checkpoints(checkpoint)
        if later:
            answer = QMessageBox.question(
                self, "Resume from an earlier checkpoint?",
                f"Resuming from {Path(checkpoint).name} starts a new branch: the {later} later checkpoint(s), "
                f"their previews and loss history move to the run's 'abandoned' folder (nothing is deleted).",
                QMessageBox.StandardButton.Ok | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Ok)
            if answer != QMessageBox.StandardButton.Ok:
                return
        self.resume_from(checkpoint)

    @staticmethod
    def _later_checkpoints(checkpoint: str) -> int:
        """How many checkpoints of the same run come after ``checkpoint``."""
        from diffstudio.engine.run_dir import RunDir, RunDirError

        step = checkpoint_step(checkpoint)
        try:
            run = RunDir(Path(checkpoint).parent.parent)
        except RunDirError:
            return 0
        return sum(1 for s, _ in run.checkpoints() if step is not None and s > step)

    # ------------------------------------------------------------------ state
    def _update_buttons(self, *_changed) -> None:
        running = self.thread is not None
        stopping = running and self.thread.stopping
        reason = self.start_reason()
        self.start_button.setEnabled(not reason)
        self.pause_button.setEnabled(running and not stopping)
        self.pause_button.setText("Resume" if running and self.thread.paused else "Pause")
        self.stop_button.setEnabled(running and not stopping)
        has_ckpt = self.selected_checkpoint() is not None
        self.export_button.setEnabled(has_ckpt and not self._export_threads)
        self.resume_button.setEnabled(has_ckpt and not running)
        estimating = self.estimate_thread is not None
        why_not = self.estimate_reason()
        self.estimate_button.setText("Cancel estimate" if estimating else "Estimate")
        self.estimate_button.setEnabled((estimating and not self.estimate_thread.cancelled)
                                        or (not estimating and not why_not))
        self.estimate_button.setToolTip(why_not if why_not and not estimating else self._estimate_tip)
        self.reason_label.setText(reason)
        self.reason_label.setStyleSheet(NOTE_STYLE if running or not reason else ERROR_STYLE)

    def _update_export_formats(self) -> None:
        """The 2-D MLP has no diffusers format: offer safetensors only for a points run."""
        checkpoint = self.selected_checkpoint()
        points = checkpoint is not None and run_data_kind(Path(checkpoint).parent.parent) == "points"
        item = self.format_combo.model().item(self.format_combo.findData("diffusers"))
        item.setEnabled(not points)
        item.setToolTip("2-D point models have no diffusers format" if points else "")
        if points and self.format_combo.currentData() == "diffusers":
            self.format_combo.setCurrentIndex(self.format_combo.findData("safetensors"))

    def _show_message(self, text: str, style: str) -> None:
        self.message_label.setStyleSheet(style)
        self.message_label.setText(text)

    def _set_status(self, **changes) -> None:
        self._status.update(changes)
        self.statusChanged.emit(dict(self._status))

    @property
    def status(self) -> dict:
        """A copy of the run's status: state, device, step, total, steps_per_s and eta_s (seconds; NaN when unknown)."""
        return dict(self._status)


def _text_label(name: str = "", style: str = "", wrap: bool = True) -> QLabel:
    """An empty label for messages the user may select and copy (wrapped unless ``wrap`` is False),
    with an object name and a style sheet when given."""
    label = QLabel("")
    if name:
        label.setObjectName(name)
    if style:
        label.setStyleSheet(style)
    label.setWordWrap(wrap)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _report(exc: BaseException) -> str:
    from diffstudio.engine.errors import report_error

    return report_error(exc).message
