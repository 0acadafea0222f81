"""The application's shared state: the config being edited, the loaded dataset, whether a run
is training. Panels read and write it; it emits signals so every view stays in step."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, Signal

from diffstudio.engine.config import Config


class AppState(QObject):
    configChanged = Signal(str)  # the section that changed ("schedule", "objective", ..., or "all")
    validityChanged = Signal(list)  # [(dotted.field, message)]; empty when Train may start
    datasetChanged = Signal(object)  # an InMemoryDataset, or None while loading / on failure
    trainingChanged = Signal(bool)  # a run is training (the edited config applies to the next run)
    flipTimeChanged = Signal(bool)  # display time in the seed's direction (t=0 noise, t=1 data)

    def __init__(self, config: Config | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.config = config or Config()
        self.dataset = None
        self.training = False
        self.flip_time = False
        self.errors: list[tuple[str, str]] = self.config.validate()

    def update(self, section: str, **values: Any) -> None:
        """Replace some fields of one section, revalidate, and tell everyone."""
        current = getattr(self.config, section)
        if all(getattr(current, k) == v for k, v in values.items()):
            return
        self.config = replace(self.config, **{section: replace(current, **values)})
        self._changed(section)

    def set_config(self, config: Config) -> None:
        self.config = config
        self._changed("all")

    def _changed(self, section: str) -> None:
        self.errors = self.config.validate()
        self.configChanged.emit(section)
        self.validityChanged.emit(self.errors)

    def errors_for(self, prefix: str) -> list[tuple[str, str]]:
        return [(f, m) for f, m in self.errors if f.startswith(prefix)]

    def set_dataset(self, dataset) -> None:
        self.dataset = dataset
        self.datasetChanged.emit(dataset)

    def set_training(self, training: bool) -> None:
        self.training = training
        self.trainingChanged.emit(training)

    def set_flip_time(self, flip: bool) -> None:
        self.flip_time = flip
        self.flipTimeChanged.emit(flip)
