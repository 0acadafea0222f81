"""Messages a training run sends out while it runs (from its thread to whoever watches: the app's
UI thread, a benchmark). Frozen, so the receiver can never change what the sender still holds.
The preview message is :class:`diffstudio.engine.preview.Preview`."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping


@dataclass(frozen=True)
class StepMetrics:
    """The logged values of one training step (loss, lr, grad_norm, steps_per_s, ...): numbers
    as Python floats, read-only."""

    step: int
    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    def get(self, key: str, default: Any = None) -> Any:
        """``values[key]``, or ``default`` when the step did not log it."""
        return self.values.get(key, default)


@dataclass(frozen=True)
class Progress:
    """Where a run is: ``step`` of ``total``, its speed (steps per second) and the estimated
    seconds left (NaN when unknown)."""

    step: int
    total: int
    steps_per_s: float = 0.0
    eta_s: float = float("nan")
