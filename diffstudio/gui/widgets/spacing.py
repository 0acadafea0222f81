"""The timestep-spacing choice, shared by the Schedule and Sampling panels."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox

from diffstudio.core.grids import CONTINUOUS_SPACINGS, DISCRETE_SPACINGS
from diffstudio.core.schedules import DISCRETE_FAMILIES
from diffstudio.gui import help as H


def spacings_for(family: str) -> tuple[str, ...]:
    """The spacings a schedule family offers (diffusers' three for beta schedules)."""
    return DISCRETE_SPACINGS if family in DISCRETE_FAMILIES else CONTINUOUS_SPACINGS


def fill_spacing_combo(combo: QComboBox, family: str, current: str) -> None:
    """Offer ``family``'s spacings (each with its explanation as a tooltip) and select ``current``;
    a spacing that is invalid for the family (from a file) is shown, marked, for the validator to
    explain. The caller blocks the combo's signals."""
    options = spacings_for(family)
    if [combo.itemData(i) for i in range(combo.count())] != list(options):
        combo.clear()
        for name in options:
            combo.addItem(name, name)
            combo.setItemData(combo.count() - 1, H.SPACING_TIPS.get(name, ""), Qt.ItemDataRole.ToolTipRole)
    index = combo.findData(current)
    if index < 0:
        combo.addItem(f"{current} (invalid here)", current)
        index = combo.count() - 1
    combo.setCurrentIndex(index)
