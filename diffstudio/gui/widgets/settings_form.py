"""Editors generated from the one description of every setting (:mod:`diffstudio.engine.settings`).

:func:`make_editor` turns a :class:`~diffstudio.engine.settings.SettingInfo` into a plain Qt widget
whose ``objectName`` is the dotted setting name and whose tooltip is the description's help,
range, unit and "applies live / next run": bool -> QCheckBox, int -> QSpinBox (a digits-only line
edit past 32 bits), float -> :class:`~diffstudio.gui.widgets.field.NumberBox` (accepts ``2e-3``),
a registry of choices -> QComboBox with each choice's label and help, optional -> a "default"
first entry or an empty text meaning ``None``, points -> JSON text. :func:`editor_value`,
:func:`set_editor_value` and :func:`edited_signal` read, show and watch any of them (and any
hand-built editor in the panels), so :class:`SettingsForm` and the tests treat them alike.

:class:`SettingsForm` lays out a list of settings by their group, the ``advanced`` ones under a
collapsible "Advanced" section, and binds them to an :class:`~diffstudio.gui.state.AppState`:
an edit updates the config, a config change updates the editors, problems mark their editor.

Why not magicgui: it builds its own widget layer (ValueWidget containers, psygnal, superqt,
qtpy) from type annotations, while our editors must be plain Qt widgets named by dotted setting
names, mixed into hand-built panels, marked by :class:`~diffstudio.gui.widgets.field.FieldMarker`
and fed through the app's undo stack; the description already holds what magicgui would infer."""

from __future__ import annotations

import json
import math
from typing import Any

from PySide6.QtCore import QRegularExpression, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from diffstudio.engine.settings import SettingInfo, by_name
from diffstudio.gui.widgets.field import FieldMarker, NumberBox, set_tooltip

INT32_MAX = 2**31 - 1
DEFAULT_TEXT = "default"
FOCUS_STYLE = "QToolButton:focus { border: 2px solid #1f5fa8; border-radius: 3px; }"
"""Flat tool buttons show no focus of their own: a Tab stop must always be visible."""


def info(name: str) -> SettingInfo:
    """The description of the setting called ``name`` (KeyError when there is none)."""
    return by_name()[name]


def tooltip_text(setting: SettingInfo) -> str:
    """The editor's tooltip: label, help, range and unit, choices, what None means, when it
    applies, and the dotted name (for config files and ``--set``)."""
    s = setting.spec
    parts = [f"<b>{_esc(s.label)}</b> — {_esc(s.help)}"]
    rng = setting.range_text()
    if rng or s.unit:
        parts.append(f"Range: {_esc(rng or 'any')}{' ' + _esc(s.unit) if s.unit else ''}")
    if setting.optional and s.none_label:
        parts.append(f"Empty / {DEFAULT_TEXT}: {_esc(s.none_label)}")
    parts.append("Applies at once (plots and oracle)" if s.live else "Applies to the next run")
    parts.append(f"<code>{setting.name}</code>")
    return "<br>".join(parts)


def describe_editor(widget: QWidget, name: str) -> QWidget:
    """Give a hand-built editor the setting's objectName and the description's tooltip."""
    widget.setObjectName(name)
    set_tooltip(widget, tooltip_text(info(name)))
    return widget


# ================================================================= editors
class IntLineEdit(QLineEdit):
    """A whole number beyond QSpinBox's 32 bits (seeds): digits only, committed on Enter / focus out."""

    valueEdited = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setValidator(QRegularExpressionValidator(QRegularExpression(r"-?[0-9]{0,20}"), self))
        self.editingFinished.connect(lambda: self.valueEdited.emit(self.settingValue()))

    def settingValue(self) -> Any:  # noqa: N802 - reads like the Qt API around it
        """The typed integer, or the text itself when it is none (validation then names the field)."""
        text = self.text().strip()
        try:
            return int(text)
        except ValueError:
            return text

    def textFor(self, value: Any) -> str:  # noqa: N802
        """How ``value`` is shown ('' for None)."""
        return "" if value is None else str(value)

    def setSettingValue(self, value: Any) -> None:  # noqa: N802
        """Show ``value`` (no edit is reported)."""
        self.setText(self.textFor(value))


class TextEdit(QLineEdit):
    """Text (optional: empty means None) or JSON ``points``; committed on Enter / focus out, and
    only when the text changed."""

    valueEdited = Signal(object)

    def __init__(self, kind: str, optional: bool, placeholder: str = "", parent=None):
        super().__init__(parent)
        self._kind, self._optional = kind, optional
        self.setPlaceholderText(placeholder)
        self._shown = ""
        self.editingFinished.connect(self._commit)

    def _commit(self) -> None:
        if self.text() != self._shown:
            self._shown = self.text()
            self.valueEdited.emit(self.settingValue())

    def settingValue(self) -> Any:  # noqa: N802
        """The text as the config stores it: None when empty and optional; for "points" the parsed JSON
        list (the raw text when it does not parse, so validation names the field)."""
        text = self.text().strip()
        if self._optional and not text:
            return None
        if self._kind == "points":
            try:
                return json.loads(text)
            except ValueError:
                return text  # the check then names the problem
        return self.text()

    def textFor(self, value: Any) -> str:  # noqa: N802
        """How ``value`` is shown: JSON for points, '' for None."""
        if value is None:
            return ""
        return json.dumps(value) if self._kind == "points" else str(value)

    def setSettingValue(self, value: Any) -> None:  # noqa: N802
        """Show ``value`` (no edit is reported)."""
        self._shown = self.textFor(value)
        self.setText(self._shown)


class OptionalNumber(TextEdit):
    """An optional float: a number in any notation, empty for None (the placeholder says what
    None means)."""

    def __init__(self, placeholder: str = "", parent=None):
        super().__init__("float", True, placeholder, parent)

    def settingValue(self) -> Any:  # noqa: N802
        """The typed float, None when empty, or the text itself when it is no number."""
        text = self.text().strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return text

    def textFor(self, value: Any) -> str:  # noqa: N802
        """How ``value`` is shown: 6 significant digits for floats, '' for None."""
        return "" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))


def _bounds(setting: SettingInfo) -> tuple[float, float]:
    s = setting.spec
    lo = s.ge if s.ge is not None else (s.gt if s.gt is not None else -1e12)
    hi = s.le if s.le is not None else (s.lt if s.lt is not None else 1e12)
    return float(lo), float(hi)


def make_editor(setting: SettingInfo) -> QWidget:
    """A plain Qt editor for ``setting``, named by its dotted name, with the description's tooltip."""
    s = setting.spec
    if setting.choices:
        w: QWidget = QComboBox()
        if setting.optional:
            w.addItem(f"{DEFAULT_TEXT} ({s.none_label})" if s.none_label else DEFAULT_TEXT, None)
        for c in setting.choices:
            w.addItem(c.label, c.value)
            w.setItemData(w.count() - 1, c.help, Qt.ItemDataRole.ToolTipRole)
    elif setting.type == "bool":
        w = QCheckBox()
    elif setting.type == "int":
        lo, hi = _bounds(setting)
        if s.gt is not None:
            lo += 1
        if hi > INT32_MAX:
            w = IntLineEdit()
        else:
            w = QSpinBox()
            w.setRange(int(lo) - (1 if setting.optional else 0), int(hi))
            if setting.optional:
                w.setSpecialValueText(DEFAULT_TEXT)
            w.setGroupSeparatorShown(hi >= 10_000)
            if s.unit:
                w.setSuffix(f" {s.unit}")
    elif setting.type == "float" and not setting.optional:
        lo, hi = _bounds(setting)
        w = NumberBox(lo, hi)
    elif setting.type == "float":
        w = OptionalNumber(s.none_label)
    else:
        w = TextEdit(setting.type, setting.optional, s.none_label if setting.optional else "")
    w.setObjectName(setting.name)
    w._spec_range = _bounds(setting) if setting.type in ("int", "float") else None
    set_tooltip(w, tooltip_text(setting))
    return w


# ============================================================ reading / showing
def editor_value(w: QWidget) -> Any:
    """The value a (generated or hand-built) editor holds, as the config stores it.
    Raises TypeError for a widget that is no setting editor."""
    if hasattr(w, "settingValue"):
        return w.settingValue()
    if isinstance(w, QCheckBox):
        return w.isChecked()
    if isinstance(w, QComboBox):
        return w.currentData()
    if isinstance(w, QSpinBox):
        if w.specialValueText() and w.value() == w.minimum():
            return None
        return int(w.value())
    if isinstance(w, QDoubleSpinBox):
        return float(w.value())
    if isinstance(w, QLineEdit):
        return w.text()
    raise TypeError(f"{type(w).__name__} is not a setting editor")


def set_editor_value(w: QWidget, value: Any) -> None:
    """Show ``value`` without emitting edits. A value outside a number box's range widens the
    range (a bad value from a file stays visible, marked, and can be fixed in place); a value the
    editor cannot show (wrong type) leaves it as it is."""
    blocked = w.blockSignals(True)
    try:
        if hasattr(w, "setSettingValue"):
            w.setSettingValue(value)
        elif isinstance(w, QCheckBox):
            if isinstance(value, bool):
                w.setChecked(value)
        elif isinstance(w, QComboBox):
            index = w.findData(value)
            if index < 0 and value is not None:
                w.addItem(f"{value} (unknown)", value)
                index = w.count() - 1
            w.setCurrentIndex(max(index, 0))
        elif isinstance(w, QSpinBox):
            if value is None and w.specialValueText():
                w.setValue(w.minimum())
            elif isinstance(value, int) and not isinstance(value, bool):
                _fit_range(w, value)
                w.setValue(value)
        elif isinstance(w, QDoubleSpinBox):
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                _fit_range(w, value)
                if abs(w.value() - value) > 1e-15 * max(1.0, abs(value)):
                    w.setValue(value)
        elif isinstance(w, QLineEdit):
            w.setText("" if value is None else str(value))
    finally:
        w.blockSignals(blocked)


def _fit_range(w, value: float) -> None:
    spec = getattr(w, "_spec_range", None)
    lo, hi = (spec if spec else (w.minimum(), w.maximum()))
    if isinstance(w, QSpinBox):
        lo, hi = int(max(lo, -INT32_MAX)), int(min(hi, INT32_MAX))
        if w.specialValueText():
            lo = min(lo, w.minimum())
        value = max(-INT32_MAX, min(INT32_MAX, value))
    if spec is not None or not (w.minimum() <= value <= w.maximum()):
        w.setRange(min(lo, value), max(hi, value))


def edit_value(w: QWidget, value: Any) -> None:
    """Change the editor to ``value`` as a person would (the edit signals fire), e.g. in tests.
    Raises ValueError for a combo box choice it does not offer, TypeError for a widget that is no setting editor."""
    if hasattr(w, "editSettingValue"):
        w.editSettingValue(value)
    elif hasattr(w, "textFor"):
        w.setText(w.textFor(value))
        w.editingFinished.emit()
    elif isinstance(w, QCheckBox):
        w.setChecked(bool(value))
    elif isinstance(w, QComboBox):
        index = w.findData(value)
        if index < 0:
            raise ValueError(f"{w.objectName()}: {value!r} is not offered")
        w.setCurrentIndex(index)
    elif isinstance(w, QSpinBox):
        w.setValue(w.minimum() if value is None else int(value))
    elif isinstance(w, QDoubleSpinBox):
        w.setValue(float(value))
    elif isinstance(w, QLineEdit):
        w.setText(str(value))
        w.editingFinished.emit()
    else:
        raise TypeError(f"{type(w).__name__} is not a setting editor")


def edited_signal(w: QWidget):
    """The signal an editor emits when the person changes it.
    Raises TypeError for a widget that is no setting editor."""
    if hasattr(w, "valueEdited"):
        return w.valueEdited
    if isinstance(w, QCheckBox):
        return w.toggled
    if isinstance(w, QComboBox):
        return w.currentIndexChanged
    if isinstance(w, (QSpinBox, QDoubleSpinBox)):
        return w.valueChanged
    if isinstance(w, QLineEdit):
        return w.editingFinished
    raise TypeError(f"{type(w).__name__} is not a setting editor")


# ===================================================================== form
class Collapsible(QWidget):
    """A header button (▸ / ▾) that shows or hides its content; collapsed at first."""

    def __init__(self, title: str, content: QWidget, parent=None):
        super().__init__(parent)
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setArrowType(Qt.ArrowType.RightArrow)
        self.button.setAutoRaise(True)
        self.button.setStyleSheet(FOCUS_STYLE)
        self.button.setToolTip("Settings that are rarely changed")
        self.content = content
        content.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.button)
        layout.addWidget(content)
        self.button.toggled.connect(self.set_expanded)

    def set_expanded(self, on: bool) -> None:
        """Show or hide the content (the arrow follows)."""
        if self.button.isChecked() != on:
            self.button.setChecked(on)  # comes back here through toggled
            return
        self.button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.content.setVisible(on)

    @property
    def expanded(self) -> bool:
        """The content is shown."""
        return self.button.isChecked()


class SettingsForm(QWidget):
    """Editors for ``names`` (dotted setting names), grouped by the description's group, the
    advanced ones under a collapsible "Advanced"; bound to ``state`` both ways."""

    def __init__(self, state, names: list[str], parent=None, *, advanced_title: str = "Advanced"):
        super().__init__(parent)
        self.state = state
        self.editors: dict[str, QWidget] = {}
        self._labels: list[QLabel] = []
        self.marker = FieldMarker()
        self.setProperty("ownMarker", True)  # a panel's marker leaves these editors to this form
        table = by_name()
        settings = [table[n] for n in names]
        self.sections = {s.section for s in settings}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        basic = [s for s in settings if not s.spec.advanced]
        advanced = [s for s in settings if s.spec.advanced]
        if basic:
            layout.addWidget(self._form(basic))
        self.advanced: Collapsible | None = None
        if advanced:
            self.advanced = Collapsible(advanced_title, self._form(advanced))
            self.advanced.setObjectName(f"advanced:{','.join(sorted(self.sections))}")
            layout.addWidget(self.advanced)
        width = max((label.sizeHint().width() for label in self._labels), default=0)
        for label in self._labels:  # one label column for the basic and the advanced part
            label.setMinimumWidth(width)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.sync()
        state.configChanged.connect(self._on_config_changed)
        state.validityChanged.connect(self.marker.apply)
        self.marker.apply(state.errors)

    def _form(self, settings: list[SettingInfo]) -> QWidget:
        box = QFrame()
        form = QFormLayout(box)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        group = None
        for s in settings:
            if s.spec.group != group and len(settings) > 2:
                group = s.spec.group
                header = QLabel(f"<b>{_esc(group)}</b>")
                form.addRow(header)
            editor = make_editor(s)
            label = QLabel(s.spec.label + (f" ({s.spec.unit})" if s.spec.unit and s.type == "float" else ""))
            label.setBuddy(editor)
            self._labels.append(label)
            label.setToolTip(editor.toolTip())
            form.addRow(label, editor)
            self.editors[s.name] = editor
            self.marker.add(s.name, editor)
            edited_signal(editor).connect(lambda *_a, n=s.name: self._edited(n))
        return box

    def _edited(self, name: str) -> None:
        section, key = name.split(".", 1)
        self.state.update(section, **{key: editor_value(self.editors[name])})

    def _on_config_changed(self, section: str) -> None:
        if section == "all" or section in self.sections:
            self.sync()

    def sync(self) -> None:
        """Show the config's values in the editors (without echoing them back as edits)."""
        cfg = self.state.config
        for name, editor in self.editors.items():
            section, key = name.split(".", 1)
            set_editor_value(editor, getattr(getattr(cfg, section), key))


def _esc(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
