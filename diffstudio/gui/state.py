"""The application's shared state: the config being edited, the loaded dataset, whether a run
is training. Panels read and write it; it emits signals so every view stays in step.

Every settings edit goes through ``undo_stack`` (a QUndoStack): one command per edit, and
consecutive edits of one field (typing in a box, dragging a schedule point) merge into one.
The stack's clean state is "saved": File > New and Open ask before discarding other states."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from diffstudio.engine.config import Config


class AppState(QObject):
    """The config being edited (every edit an undo step), the loaded dataset and its statistics,
    whether a run trains and which way time is shown; its signals keep every panel in step."""
    configChanged = Signal(str)  # the section that changed ("schedule", "objective", ..., or "all")
    validityChanged = Signal(list)  # [(dotted.field, message)]; empty when Train may start
    datasetChanged = Signal(object)  # InMemoryDataset / StreamingDataset (folders), or None while loading / on failure
    trainingChanged = Signal(bool)  # a run is training (the edited config applies to the next run)
    flipTimeChanged = Signal(bool)  # display time in the seed's direction (t=0 noise, t=1 data)

    def __init__(self, config: Config | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.config = config or Config()
        self.dataset = None
        self.dataset_stats = None  # data.stats.ImageStats of an image dataset, computed off the UI thread
        self.training = False
        self.flip_time = False
        self.errors: list[tuple[str, str]] = self.config.validate()
        self.undo_stack = QUndoStack(self)

    def update(self, section: str, **values: Any) -> None:
        """Replace some fields of one section, revalidate, and tell everyone (one undo step;
        repeated edits of the same single field merge into it)."""
        current = getattr(self.config, section)
        if all(getattr(current, k) == v for k, v in values.items()):
            return
        new = replace(self.config, **{section: replace(current, **values)})
        fields = [f"{section}.{k}" for k in values]
        text = ", ".join(f.split(".", 1)[1] for f in fields)
        merge_key = fields[0] if len(fields) == 1 else None
        self.undo_stack.push(_ConfigEdit(self, self.config, new, section, f"Edit {text}", merge_key))

    def set_config(self, config: Config, text: str = "Change settings") -> None:
        """Replace the whole config (one undo step)."""
        if config == self.config:
            self._apply(config, "all")  # still refresh every view (e.g. File > Open of the same file)
            return
        self.undo_stack.push(_ConfigEdit(self, self.config, config, "all", text, None))

    @property
    def modified(self) -> bool:
        """The settings changed since the last :meth:`mark_saved` (File > Save, Open, New)."""
        return not self.undo_stack.isClean()

    def mark_saved(self) -> None:
        """The current config is what the file holds: the undo stack's clean state."""
        self.undo_stack.setClean()

    def _apply(self, config: Config, section: str) -> None:
        self.config = config
        self._changed(section)

    def _changed(self, section: str) -> None:
        self.errors = self.config.validate()
        self.configChanged.emit(section)
        self.validityChanged.emit(self.errors)

    def errors_for(self, prefix: str) -> list[tuple[str, str]]:
        """The validation problems ``(dotted field, message)`` of fields starting with ``prefix``."""
        return [(f, m) for f, m in self.errors if f.startswith(prefix)]

    def set_dataset(self, dataset, stats=None) -> None:
        """Show ``dataset`` everywhere: a built-in InMemoryDataset, or for a folder a memory-mapped
        StreamingDataset over its uint8 pixel cache (read in chunks; training loads its own way).
        ``stats``: its :class:`~diffstudio.data.stats.ImageStats` when already computed (views
        compute them on demand otherwise, see :meth:`image_stats`)."""
        self.dataset = dataset
        self.dataset_stats = stats
        self.datasetChanged.emit(dataset)

    def image_stats(self):
        """The loaded image dataset's ImageStats (computed once, in chunks, if not given); None
        without an image dataset."""
        ds = self.dataset
        if ds is None or getattr(ds, "kind", "") != "image" or len(ds) == 0:
            return None
        if self.dataset_stats is None:
            from diffstudio.data.stats import image_stats

            self.dataset_stats = image_stats(ds)
        return self.dataset_stats

    def set_training(self, training: bool) -> None:
        """Record whether a run is training and emit ``trainingChanged``."""
        self.training = training
        self.trainingChanged.emit(training)

    def set_flip_time(self, flip: bool) -> None:
        """Show time in the seed's direction (t = 0 noise) or not; emits ``flipTimeChanged``."""
        self.flip_time = flip
        self.flipTimeChanged.emit(flip)


_MERGE_IDS: dict[str, int] = {}


class _ConfigEdit(QUndoCommand):
    """One settings edit: the config before and after. Edits of the same single field merge."""

    def __init__(self, state: AppState, old: Config, new: Config, section: str, text: str,
                 merge_key: str | None):
        super().__init__(text)
        self.state, self.old, self.new, self.section = state, old, new, section
        self.merge_key = merge_key

    def id(self) -> int:  # noqa: A003 - Qt API
        if self.merge_key is None:
            return -1
        return _MERGE_IDS.setdefault(self.merge_key, len(_MERGE_IDS) + 1)

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt API
        if not isinstance(other, _ConfigEdit) or other.merge_key != self.merge_key:
            return False
        self.new = other.new
        if self.new == self.old:
            self.setObsolete(True)
        return True

    def redo(self) -> None:
        self.state._apply(self.new, self.section)

    def undo(self) -> None:
        self.state._apply(self.old, self.section)
