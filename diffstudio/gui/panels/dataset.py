"""The Dataset panel: choose a built-in dataset or a folder, see real samples and what was skipped.

Loading runs on a :class:`~diffstudio.gui.worker.TaskThread` with a progress bar and Cancel; the
window never freezes. A folder is opened through its on-disk uint8 pixel cache (built once, with
progress, resumable, and the same entry a training run uses): the panel holds the memory map, never
a float copy of the images, and its statistics (the brightness histogram) are read in chunks on the
loading thread. Built-in datasets are generated in memory as before. While loading, ``state.dataset`` is None (so Train is disabled); on success
the panel calls ``state.set_dataset(ds)`` and writes the choice into ``state.config.data``; on
failure it shows the reason inline, marks the source field and leaves ``state.dataset`` None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from diffstudio.core.units import format_bytes
from diffstudio.data.registry import list_builtin, load_dataset, source_kind
from diffstudio.data.stats import image_stats
from diffstudio.data.training_data import open_folder
from diffstudio.gui.runs_image import GridImageView, PointsView
from diffstudio.gui.widgets.field import FieldMarker
from diffstudio.engine.settings import describe
from diffstudio.gui.widgets.settings_form import SettingsForm, describe_editor, set_editor_value
from diffstudio.gui.worker import TaskThread

THUMBNAILS = 64
ERROR_STYLE = "color: #b00020;"
INVALID_FIELD_STYLE = "border: 1px solid #d62728; border-radius: 2px;"
RELOAD_DELAY_MS = 400
NARROW_WIDTH = 460  # below this width (or taller than wide) the samples go under the settings


@dataclass(frozen=True)
class LoadKey:
    """The settings that decide which tensor is loaded (flip is applied while training)."""

    source: str
    resolution: int | None
    channels: int | None
    labels: bool
    num_points: int | None
    seed: int  # generated datasets only (the Trainer draws them with run.seed); 0 for folders

    @classmethod
    def of(cls, config, builtin_names) -> "LoadKey":
        """The key of what ``config`` would load; the run seed counts only for the generated datasets
        named in ``builtin_names``."""
        data = config.data
        seed = config.run.seed if data.source in builtin_names else 0
        return cls(data.source, data.resolution, data.channels, data.labels, data.num_points, seed)


HAND_BUILT = ("data.source", "data.resolution", "data.channels", "data.labels", "data.hflip")
"""The data settings this panel edits with its own widgets; the others get generated editors."""
SKIPPED_ROWS_SHOWN = 8
"""The skipped-files table shows this many rows without scrolling inside it."""


class SourceEditor(QFrame):
    """``data.source`` as one editor: a built-in dataset (radio + list) or a folder (radio, path,
    Browse). The panel loads what it says; the config follows when the load succeeds."""

    def __init__(self, panel: "DatasetPanel"):
        super().__init__()
        self.panel = panel
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(panel.builtin_radio, 0, 0)
        grid.addWidget(panel.builtin_combo, 0, 1, 1, 2)
        grid.addWidget(panel.folder_radio, 1, 0)
        grid.addWidget(panel.folder_edit, 1, 1)
        grid.addWidget(panel.browse_button, 1, 2)
        grid.setColumnStretch(1, 1)

    def _children(self):
        p = self.panel
        return (p.builtin_radio, p.folder_radio, p.builtin_combo, p.folder_edit)

    def settingValue(self):  # noqa: N802 - the settings editors' protocol (settings_form.py)
        """``data.source`` as the panel shows it: the built-in's name, or the folder path typed."""
        p = self.panel
        return p.builtin_combo.currentData() if p.builtin_radio.isChecked() else p.folder_edit.text().strip()

    def setSettingValue(self, value) -> None:  # noqa: N802
        """Show ``value`` (no load)."""
        p = self.panel
        blocked = [w.blockSignals(True) for w in self._children()]
        try:
            if value in p._builtin:
                p.builtin_radio.setChecked(True)
                p.builtin_combo.setCurrentIndex(p.builtin_combo.findData(value))
            else:
                p.folder_radio.setChecked(True)
                p.folder_edit.setText(str(value))
        finally:
            for w, b in zip(self._children(), blocked):
                w.blockSignals(b)
        p._update_enabled()

    def editSettingValue(self, value) -> None:  # noqa: N802
        """Choose ``value`` as the person does, and load it."""
        if value in self.panel._builtin:
            self.panel.set_builtin(value)
        else:
            self.panel.set_folder(value)


class WrappedLabel(QLabel):
    """A word-wrapped label whose minimum height is that of its text wrapped at its width: a short
    dock scrolls the panel instead of squeezing the text to fewer lines than it needs (a plain
    QLabel's minimum height ignores its wrapping, so its last lines were cut off)."""

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(text, parent)
        self.setWordWrap(True)

    def _fit(self) -> None:
        need = self.heightForWidth(self.width()) if self.width() > 0 and self.text() else 0
        if need != self.minimumHeight():
            self.setMinimumHeight(max(0, need))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit()  # the wrapped height changed with the width

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        super().setText(text)
        self._fit()


class DatasetPanel(QWidget):
    """Dataset choice, thumbnails / scatter, counts and skipped files; binds to ``state``."""

    validityChanged = Signal(bool)
    loadFinished = Signal(bool)  # True: a dataset was loaded; False: failed or cancelled

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self._builtin = {name: (kind, text) for name, kind, text in list_builtin()}
        self._thread: TaskThread | None = None
        self._loading_key: LoadKey | None = None
        self._loaded_key: LoadKey | None = None
        self._error = ""
        self._reload_timer = QTimer(self, singleShot=True, interval=RELOAD_DELAY_MS)
        self._reload_timer.timeout.connect(self.load)
        self._build()
        self._show_config(state.config.data)
        state.configChanged.connect(self._on_config_changed)
        state.trainingChanged.connect(self._on_training_changed)
        self.load()

    # ---------------------------------------------------------------- widgets
    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        """Samples beside the settings in a wide dock, under them in a narrow one."""
        super().resizeEvent(event)
        size = event.size()
        narrow = size.width() < NARROW_WIDTH or size.width() < size.height()
        wanted = Qt.Orientation.Vertical if narrow else Qt.Orientation.Horizontal
        if self.splitter.orientation() != wanted:
            self.splitter.setOrientation(wanted)

    def _build(self) -> None:
        self.builtin_radio = QRadioButton("Built-in")
        self.folder_radio = QRadioButton("Folder")
        group = QButtonGroup(self)
        group.addButton(self.builtin_radio)
        group.addButton(self.folder_radio)
        self.builtin_combo = QComboBox()
        for name, (kind, text) in self._builtin.items():
            self.builtin_combo.addItem(f"{name}  ({'2-D points' if kind == 'points' else 'images'})", name)
            self.builtin_combo.setItemData(self.builtin_combo.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("a folder of images (sub-folders = classes)")
        self.browse_button = QPushButton("Browse…")
        self.description = WrappedLabel()
        self.description.setStyleSheet("color: #555;")

        self.resolution_spin = QSpinBox()
        self.resolution_spin.setRange(0, 1024)
        self.resolution_spin.setSingleStep(8)
        self.resolution_spin.setSpecialValueText("native")
        self.resolution_spin.setSuffix(" px")
        self.resolution_spin.setToolTip("Images are centre-cropped and resized to this side; "
                                        "'native' keeps the dataset's own (folders: 64 px)")
        self.channels_combo = QComboBox()
        for text, value in (("native", None), ("1 (grey)", 1), ("3 (RGB)", 3)):
            self.channels_combo.addItem(text, value)
        self.flip_box = QCheckBox("random horizontal flip")
        self.labels_box = QCheckBox("use class labels")

        self.load_button = QPushButton("Load")
        self.load_button.setToolTip("Load the dataset with these settings (done automatically on a change)")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        source_box = QGroupBox("Source")
        grid = QFormLayout(source_box)
        self.source_editor = SourceEditor(self)
        grid.addRow(self.source_editor)
        grid.addRow(self.description)
        options = QHBoxLayout()
        options.addWidget(QLabel("Resolution"))
        options.addWidget(self.resolution_spin)
        options.addWidget(QLabel("Channels"))
        options.addWidget(self.channels_combo)
        options.addStretch(1)
        grid.addRow(options)
        toggles = QHBoxLayout()
        toggles.addWidget(self.flip_box)
        toggles.addWidget(self.labels_box)
        toggles.addStretch(1)
        grid.addRow(toggles)
        # every data setting without a hand-built editor above, generated from the description
        self.settings_form = SettingsForm(self.state, [s.name for s in describe() if s.section == "data"
                                                       and s.name not in HAND_BUILT])
        grid.addRow(self.settings_form)
        actions = QHBoxLayout()
        actions.addWidget(self.load_button)
        actions.addWidget(self.progress, 10)
        actions.addWidget(self.cancel_button)
        actions.addStretch(1)
        grid.addRow(actions)
        grid.addRow(self.status_label)

        self.image_view = GridImageView()
        self.points_view = PointsView()
        self.preview_stack = QStackedWidget()
        self.preview_stack.addWidget(self.image_view)
        self.preview_stack.addWidget(self.points_view)

        self.skipped_label = QLabel("Skipped files")
        self.skipped_table = QTableWidget(0, 2)
        self.skipped_table.setHorizontalHeaderLabels(["File", "Reason"])
        self.skipped_table.verticalHeader().setVisible(False)
        self.skipped_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.skipped_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.skipped_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        skipped = QWidget()
        skipped_layout = QVBoxLayout(skipped)
        skipped_layout.setContentsMargins(0, 0, 0, 0)
        skipped_layout.addWidget(self.skipped_label)
        skipped_layout.addWidget(self.skipped_table)

        # a wide, short dock: settings and skipped files on the left, the samples on the right
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(source_box)
        left_layout.addWidget(skipped, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.preview_stack)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        self.splitter = splitter

        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        self._set_loading(False)

        describe_editor(self.source_editor, "data.source")
        for name, widget in (("data.resolution", self.resolution_spin), ("data.channels", self.channels_combo),
                             ("data.hflip", self.flip_box), ("data.labels", self.labels_box)):
            describe_editor(widget, name)
        self.marker = FieldMarker()
        self.marker.add_named(self)
        self.state.validityChanged.connect(self.marker.apply)
        self.marker.apply(self.state.errors)

        self.builtin_radio.toggled.connect(self._on_mode_changed)
        self.builtin_combo.currentIndexChanged.connect(self._on_source_edited)
        self.folder_edit.editingFinished.connect(self._on_folder_edited)
        self.browse_button.clicked.connect(self._browse)
        self.resolution_spin.valueChanged.connect(self._schedule_reload)
        self.channels_combo.currentIndexChanged.connect(self._schedule_reload)
        self.labels_box.toggled.connect(self._schedule_reload)
        self.flip_box.toggled.connect(self._on_flip)
        self.load_button.clicked.connect(self.load)
        self.cancel_button.clicked.connect(self.cancel)

    # ------------------------------------------------------------- public API
    def isValid(self) -> bool:
        """A dataset is loaded and matches the settings."""
        return self.state.dataset is not None and not self.loading

    @property
    def loading(self) -> bool:
        """A dataset is being loaded (or decoded into its cache) now."""
        return self._thread is not None

    def error_text(self) -> str:
        """Why the last load failed, one line ('' when it did not)."""
        return self._error

    def set_folder(self, path: str) -> None:
        """Choose a folder (as the Browse button does) and load it."""
        self.folder_edit.setText(str(path))
        self.folder_radio.setChecked(True)
        self.load()

    def set_builtin(self, name: str) -> None:
        """Choose the built-in dataset ``name`` and load it."""
        self.builtin_radio.setChecked(True)
        self.builtin_combo.setCurrentIndex(self.builtin_combo.findData(name))
        self.load()

    def load(self) -> None:
        """Load what the widgets say, in the background (a load in progress is cancelled)."""
        self._reload_timer.stop()
        key = self._key_from_widgets()
        if key is None:
            self._fail("Choose a folder of images (Browse…) or a built-in dataset.", [])
            return
        self._start(key)

    def cancel(self) -> None:
        """Ask the load in flight to stop (a folder's cache keeps what was decoded)."""
        if self._thread is not None:
            self._thread.cancel()
            self.status_label.setText("Cancelling…")

    def shutdown(self) -> None:
        """Cancel a load in progress and wait for its thread to end."""
        self._reload_timer.stop()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.cancel()
            thread.wait()

    # ------------------------------------------------------------ config sync
    def _show_config(self, data) -> None:
        widgets = (self.builtin_radio, self.folder_radio, self.builtin_combo, self.folder_edit,
                   self.resolution_spin, self.channels_combo, self.flip_box, self.labels_box)
        for w in widgets:
            w.blockSignals(True)
        self.source_editor.setSettingValue(data.source)
        for widget, value in ((self.resolution_spin, data.resolution), (self.channels_combo, data.channels),
                              (self.flip_box, data.hflip), (self.labels_box, data.labels)):
            set_editor_value(widget, value)  # bad values from a file stay visible (and marked)
        for w in widgets:
            w.blockSignals(False)
        self._update_enabled()

    def _on_config_changed(self, section: str) -> None:
        if section not in ("data", "run", "all"):
            return
        data = self.state.config.data
        key = LoadKey.of(self.state.config, self._builtin)
        if key in (self._loaded_key, self._loading_key) and self._widgets_match(data):
            return
        self._show_config(data)
        if key not in (self._loaded_key, self._loading_key):
            self._start(key)

    def _widgets_match(self, data) -> bool:
        return (self._key_from_widgets() == LoadKey.of(self.state.config, self._builtin)
                and self.flip_box.isChecked() == data.hflip)

    def _key_from_widgets(self) -> LoadKey | None:
        if self.builtin_radio.isChecked():
            source = self.builtin_combo.currentData()
        else:
            source = self.folder_edit.text().strip()
        if not source:
            return None
        points = self._is_points(source)
        current = self.state.config.data
        return LoadKey(source, None if points else (self.resolution_spin.value() or None),
                       None if points else self.channels_combo.currentData(),
                       self.labels_box.isChecked(),
                       current.num_points if points and current.source == source else None,
                       self.state.config.run.seed if source in self._builtin else 0)

    def _is_points(self, source: str) -> bool:
        return self._builtin.get(source, ("image", ""))[0] == "points"

    def _update_enabled(self) -> None:
        builtin = self.builtin_radio.isChecked()
        self.builtin_combo.setEnabled(builtin)
        self.folder_edit.setEnabled(not builtin)
        self.browse_button.setEnabled(not builtin)
        source = self.builtin_combo.currentData() if builtin else None
        images = not (source and self._is_points(source))
        for w in (self.resolution_spin, self.channels_combo, self.flip_box):
            w.setEnabled(images)
        self.description.setText(self._builtin[source][1] if builtin and source in self._builtin
                                 else "Every image under the folder is used; files that cannot be "
                                      "read are listed below with the reason.")

    # ------------------------------------------------------------ user edits
    def _on_mode_changed(self) -> None:
        self._update_enabled()
        self._schedule_reload()

    def _on_source_edited(self) -> None:
        self._update_enabled()
        self._schedule_reload()

    def _on_folder_edited(self) -> None:
        if self.folder_radio.isChecked():
            self.load()

    def _on_flip(self, on: bool) -> None:
        self.state.update("data", hflip=bool(on))

    def _schedule_reload(self, *_) -> None:
        self._reload_timer.start()

    def _browse(self) -> None:
        """Choose a folder, starting where the last one was chosen (remembered in QSettings)."""
        settings = QSettings()
        start = self.folder_edit.text() or str(settings.value("paths/dataset_dir", "") or "")
        path = QFileDialog.getExistingDirectory(self, "Choose a folder of images", start)
        if path:
            settings.setValue("paths/dataset_dir", str(Path(path).parent))
            self.set_folder(path)

    def _on_training_changed(self, training: bool) -> None:
        self.load_button.setToolTip("Changes apply to the next run" if training else "")

    # ---------------------------------------------------------------- loading
    def _start(self, key: LoadKey) -> None:
        if self._thread is not None:
            self._thread.cancel()  # its late result is ignored (see _finish)
        self._loading_key = key
        self._error = ""
        self._mark_invalid(False)
        self.progress.setRange(0, 0)
        self.status_label.setStyleSheet("")
        self.status_label.setText(f"Loading {key.source}…")
        self.state.set_dataset(None)

        def job(progress, should_cancel):
            if key.source not in self._builtin and source_kind(key.source) == "folder":
                ds = open_folder(key.source, resolution=key.resolution, channels=key.channels,
                                 labels=key.labels, progress=progress, should_cancel=should_cancel)
            else:
                ds = load_dataset(key.source, resolution=key.resolution, channels=key.channels,
                                  labels=key.labels, n=key.num_points, seed=key.seed, progress=progress,
                                  should_cancel=should_cancel)
            return ds, (image_stats(ds) if ds.kind == "image" and len(ds) else None)

        thread = TaskThread(job)
        thread.key = key
        thread.progressed.connect(self._on_progress)
        thread.succeeded.connect(self._on_loaded)
        thread.failed.connect(self._on_load_failed)
        self._thread = thread
        self._set_loading(True)
        self.validityChanged.emit(False)
        thread.start()

    def _on_progress(self, done: int, total: int) -> None:
        if self._thread is None:
            return
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.progress.setFormat(f"{done} / {total} files")

    def _on_loaded(self, result) -> None:
        self._finish(self.sender(), result, None)

    def _on_load_failed(self, message: str, exc) -> None:
        self._finish(self.sender(), None, (message, exc))

    def _finish(self, thread: TaskThread, result, error) -> None:
        if thread is None or thread is not self._thread:
            return  # superseded by a newer load
        dataset, stats = result if result is not None else (None, None)
        key = thread.key
        self._thread = None
        self._loading_key = None
        self._set_loading(False)
        if error is not None:
            message, exc = error
            cancelled = thread.cancelled
            self._loaded_key = None
            self._fail("Loading cancelled — press Load to try again." if cancelled else message,
                       getattr(exc, "skipped", []), mark=not cancelled)
            self.loadFinished.emit(False)
            return
        try:
            self._show_dataset(dataset)
        except Exception as exc:  # never leave the panel half-updated
            self._loaded_key = None
            self._fail(f"Cannot show the dataset: {exc}", dataset.skipped)
            self.loadFinished.emit(False)
            return
        self._loaded_key = key
        self.state.set_dataset(dataset, stats)
        self.state.update("data", source=key.source, resolution=key.resolution, channels=key.channels,
                          labels=key.labels, num_points=key.num_points, hflip=self.flip_box.isChecked())
        self.validityChanged.emit(True)
        self.loadFinished.emit(True)

    def _set_loading(self, loading: bool) -> None:
        self.progress.setVisible(loading)
        self.cancel_button.setVisible(loading)
        self.load_button.setEnabled(not loading)

    def _fail(self, message: str, skipped, mark: bool = True) -> None:
        self._error = message
        self.status_label.setStyleSheet(ERROR_STYLE)
        self.status_label.setText(message)
        self._mark_invalid(mark)
        self._show_skipped(skipped)
        self.image_view.set_image(None, "")
        self.points_view.set_points(None, caption="")
        self.state.set_dataset(None)
        self.validityChanged.emit(False)

    def _mark_invalid(self, invalid: bool) -> None:
        field = self.folder_edit if self.folder_radio.isChecked() else self.builtin_combo
        for w in (self.folder_edit, self.builtin_combo):
            w.setStyleSheet(INVALID_FIELD_STYLE if invalid and w is field else "")

    # ---------------------------------------------------------------- display
    def _show_dataset(self, ds) -> None:
        self.status_label.setStyleSheet("")
        self.status_label.setText(describe_dataset(ds))
        self._show_skipped(ds.skipped)
        if ds.kind == "points":
            labels = None if ds.labels is None else ds.labels[:4000].numpy()
            self.points_view.set_points(ds.preview(4000).numpy(), labels,
                                        caption=f"first {min(len(ds), 4000)} of {len(ds)} points")
            self.preview_stack.setCurrentWidget(self.points_view)
        else:
            from diffstudio.engine.sampling import to_grid

            n = min(len(ds), THUMBNAILS if (ds.resolution or 0) <= 64 else 16)
            self.image_view.set_image(to_grid(ds.preview(n)), caption=f"first {n} of {len(ds)} images")
            self.preview_stack.setCurrentWidget(self.image_view)

    def _show_skipped(self, skipped) -> None:
        self.skipped_table.setRowCount(len(skipped))
        root = self.folder_edit.text().strip() if self.folder_radio.isChecked() else ""
        for row, item in enumerate(skipped):
            cell = QTableWidgetItem(_relative(str(item.file), root))
            cell.setToolTip(str(item.file))
            self.skipped_table.setItem(row, 0, cell)
            reason = QTableWidgetItem(str(item.reason))
            reason.setToolTip(str(item.reason))
            self.skipped_table.setItem(row, 1, reason)
        self.skipped_table.resizeColumnToContents(0)
        self.skipped_label.setText(f"Skipped files: {len(skipped)}" if skipped else "Skipped files: none")
        self._fit_skipped_table()

    def _fit_skipped_table(self) -> None:
        """Tall enough for every row up to SKIPPED_ROWS_SHOWN (the docked panel scrolls to show it
        all), scrolling inside beyond that: a short dock never squeezes the list to a row or two."""
        t = self.skipped_table
        rows = min(t.rowCount(), SKIPPED_ROWS_SHOWN)
        row_h = t.verticalHeader().defaultSectionSize()
        height = t.horizontalHeader().height() + max(1, rows) * row_h + 2 * t.frameWidth()
        if t.horizontalScrollBar().isVisible() or t.horizontalHeader().length() > t.viewport().width():
            height += t.horizontalScrollBar().sizeHint().height()
        t.setMinimumHeight(height)

    def skipped_rows(self) -> list[tuple[str, str]]:
        """(file, reason) rows of the skipped-files table (full paths)."""
        t = self.skipped_table
        return [(t.item(r, 0).toolTip(), t.item(r, 1).text()) for r in range(t.rowCount())]


def _relative(path: str, root: str) -> str:
    """``path`` relative to the folder ``root`` when inside it (shorter rows), else as is."""
    if root:
        try:
            rel = os.path.relpath(path, os.path.realpath(os.path.expanduser(root)))
        except ValueError:
            return path
        if not rel.startswith(".."):
            return rel
    return path


def describe_dataset(ds) -> str:
    """'1797 usable images · 8×8 px · grey · 10 classes · 2 files skipped' (a folder also gives the
    size of its uint8 cache)."""
    if ds.kind == "points":
        parts = [f"{len(ds)} points (2-D)"]
    else:
        colour = "grey" if ds.channels == 1 else "RGB"
        parts = [f"{len(ds)} usable images", f"{ds.resolution}×{ds.resolution} px", colour]
    if ds.num_classes:
        parts.append(f"{ds.num_classes} classes")
    if getattr(ds, "cache", None) is not None:  # a folder, read from its memory-mapped uint8 cache
        parts.append(f"{format_bytes(ds.nbytes)} uint8 cache on disk")
    if ds.skipped:
        parts.append(f"{len(ds.skipped)} file{'s' if len(ds.skipped) != 1 else ''} skipped (see below)")
    return " · ".join(parts)
