"""Form fields that show problems in place: a red border and a tooltip with the message.

No dialogs: :func:`mark_error` marks one widget, :class:`FieldMarker` maps the dotted field names
of ``AppState.errors`` ("schedule.beta_end") onto the widgets that edit them."""

from __future__ import annotations

import math
from collections.abc import Iterable

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox, QWidget

ERROR_COLOR = "#d62728"
_BASE_TIP = "_diffstudio_base_tooltip"


def mark_error(widget: QWidget, message: str | None) -> None:
    """Give ``widget`` a red border and ``message`` as its tooltip; ``None`` clears both.

    The widget's own (teaching) tooltip is kept and shown below the problem."""
    if widget.property(_BASE_TIP) is None:
        widget.setProperty(_BASE_TIP, widget.toolTip())
    base = widget.property(_BASE_TIP) or ""
    if message:
        widget.setProperty("error", True)
        widget.setProperty("error_message", message)
        # a property selector: the border goes on this widget only, not on its children
        widget.setStyleSheet(f'*[error="true"] {{ border: 2px solid {ERROR_COLOR}; border-radius: 3px; }}')
        tip = f"<b style='color:{ERROR_COLOR}'>{_escape(message)}</b>"
        widget.setToolTip(tip + (f"<br><br>{base}" if base else ""))
    else:
        if widget.property("error"):
            widget.setStyleSheet("")
        widget.setProperty("error", False)
        widget.setProperty("error_message", "")
        widget.setToolTip(base)


def set_tooltip(widget: QWidget, text: str) -> None:
    """Set the teaching tooltip (kept under any error message)."""
    widget.setProperty(_BASE_TIP, text)
    widget.setToolTip(text)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class FieldMarker:
    """Marks the widgets of the fields that have errors and clears the others.

    ``add("schedule.beta_end", spin)``; ``apply(state.errors)``. A field may map to several widgets
    and a widget may belong to several fields (its messages are joined)."""

    def __init__(self) -> None:
        self._fields: dict[str, list[QWidget]] = {}

    def add(self, field: str, *widgets: QWidget) -> None:
        """Mark ``widgets`` when the dotted ``field`` has an error (each widget once per field)."""
        known = self._fields.setdefault(field, [])
        known.extend(w for w in widgets if all(w is not k for k in known))

    def add_named(self, root: QWidget) -> None:
        """Register every editor under ``root`` whose objectName is a dotted setting name
        (editors of a nested form that marks its own, ``ownMarker``, are left to it)."""
        from diffstudio.engine.settings import by_name

        names = by_name()
        for w in root.findChildren(QWidget):
            if w.objectName() in names and not _in_own_form(w, root):
                self.add(w.objectName(), w)

    def widgets(self) -> list[QWidget]:
        """Every widget known, each once."""
        seen: dict[int, QWidget] = {}
        for ws in self._fields.values():
            for w in ws:
                seen[id(w)] = w
        return list(seen.values())

    def apply(self, errors: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Mark; return the errors of known fields (for a summary line)."""
        messages: dict[int, list[str]] = {}
        mine = []
        for field, message in errors:
            if field in self._fields:
                mine.append((field, message))
                for w in self._fields[field]:
                    messages.setdefault(id(w), []).append(message)
        for w in self.widgets():
            mark_error(w, "\n".join(dict.fromkeys(messages.get(id(w), []))) or None)
        return mine


def _in_own_form(widget: QWidget, root: QWidget) -> bool:
    w = widget.parentWidget()
    while w is not None and w is not root:
        if w.property("ownMarker"):
            return True
        w = w.parentWidget()
    return False


class NumberBox(QDoubleSpinBox):
    """A float spin box that shows and accepts any notation (``0.00085``, ``8.5e-4``) and steps by
    a tenth of the value's decade (0.0001 near 0.00085, 1 near 80)."""

    def __init__(self, minimum: float = -1e12, maximum: float = 1e12, digits: int = 6, parent=None):
        super().__init__(parent)
        self._digits = digits
        self.setDecimals(12)
        self.setRange(minimum, maximum)
        self.setKeyboardTracking(True)
        self.setAccelerated(True)

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt API
        return f"{value:.{self._digits}g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt API
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):  # noqa: D102 - Qt API
        """Qt's validator: any float notation in range is Acceptable, a number being typed ('-',
        '1e') or out of range Intermediate, anything else (and inf, NaN) Invalid."""
        s = text.strip()
        try:
            v = float(s)
        except ValueError:
            if s in ("", "-", "+", ".", "-.", "+.") or s.lower().endswith(("e", "e-", "e+")):
                return QValidator.State.Intermediate, text, pos
            return QValidator.State.Invalid, text, pos
        if not math.isfinite(v):
            return QValidator.State.Invalid, text, pos
        ok = self.minimum() <= v <= self.maximum()
        return (QValidator.State.Acceptable if ok else QValidator.State.Intermediate), text, pos

    def fixup(self, text: str) -> str:  # noqa: D102 - Qt API
        return self.textFromValue(self.value())

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt API
        """Qt's arrow step: ``steps`` tenths of the value's decade; a positive-only box drops a decade
        instead of reaching 0 or below."""
        v = self.value()
        decade = 10 ** math.floor(math.log10(abs(v))) if v else 0.1
        step = decade / 10
        target = v + steps * step
        if target <= 0 < v and self.minimum() > 0:  # stay positive: drop a decade instead
            target = v - steps * step / 10
        self.setValue(round(target / step) * step if step >= 1e-12 else target)
