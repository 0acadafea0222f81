"""Every setting in the window, from the one description: one editor per dotted name, edits reach
the run config, files show in the editors, bad values are marked where they are, the window fits
small screens, and settings edits can be undone."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QComboBox, QMessageBox, QWidget

from diffstudio.engine.config import Config
from diffstudio.engine.settings import SettingInfo, by_name, describe
from diffstudio.gui.main_window import MIN_SCREEN, MainWindow
from diffstudio.gui.state import AppState
from diffstudio.gui.widgets.settings_form import edit_value, editor_value, make_editor

ASYNC = ("data.source", "data.resolution", "data.channels", "data.labels")  # the config follows a load
NAMES = [f"{section}.{key}" for section, fields in Config().to_dict().items() for key in fields]


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "diffstudio.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings):
    w = MainWindow(AppState(Config()), settings=settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close_without_asking()


def value_of(config: Config, name: str):
    section, key = name.split(".", 1)
    return getattr(getattr(config, section), key)


def another_value(info: SettingInfo, current):
    """A valid value of the setting that differs from ``current``."""
    special = {"data.source": "shapes", "data.resolution": 16, "run.device": "cpu",
               "schedule.points": [[0.0, 8.0], [0.5, 0.5], [1.0, -8.0]]}
    if info.name in special:
        return special[info.name]
    if info.choices:
        return next(c.value for c in info.choices if c.value != current)
    if info.type == "bool":
        return not current
    if info.type == "str":
        return (current or "run") + "2"
    s = info.spec
    lo = s.ge if s.ge is not None else s.gt
    hi = s.le if s.le is not None else s.lt

    def ok(v):
        return ((s.ge is None or v >= s.ge) and (s.gt is None or v > s.gt) and (s.le is None or v <= s.le)
                and (s.lt is None or v < s.lt) and v != current)

    if info.type == "int":
        base = current if current is not None else int(lo or 0) + 1
        return next(v for v in (base + 1, base - 1) if ok(v))
    base = current if current is not None else 0.5 * (lo + hi)
    return next(v for v in (base * 0.5, base * 2, base + 0.25, base - 0.25, base) if ok(v))


def offered_value(widget: QWidget, info: SettingInfo, current):
    """For a combo box: another entry it offers (its entries follow other settings, e.g. the
    spacings of the schedule family); else :func:`another_value`."""
    if isinstance(widget, QComboBox):
        model = widget.model()
        for i in range(widget.count()):
            data = widget.itemData(i)
            enabled = model.flags(model.index(i, 0)) & model.flags(model.index(i, 0)).ItemIsEnabled
            if data is not None and data != current and enabled and not widget.itemText(i).endswith("(unknown)"):
                return data
    return another_value(info, current)


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return a == b


def test_every_setting_has_exactly_one_editor_named_by_its_dotted_name(window):
    assert set(NAMES) == set(by_name())
    for name in NAMES:
        found = window.findChildren(QWidget, name)
        assert len(found) == 1, f"{name}: {len(found)} widgets"
        assert name in found[0].toolTip() and by_name()[name].spec.help[:20] in found[0].toolTip()


def test_editing_each_editor_changes_the_run_config(window, qtbot):
    table = by_name()
    for name in NAMES:
        widget = window.editor(name)
        value = offered_value(widget, table[name], value_of(window.state.config, name))
        edit_value(widget, value)
        if name in ASYNC:
            qtbot.waitUntil(lambda: same(value_of(window.state.config, name), value), timeout=20_000)
        assert same(value_of(window.state.config, name), value), name


def test_a_config_file_shows_its_values_in_the_editors(window, tmp_path, qtbot):
    table = by_name()
    values = {name: another_value(table[name], value_of(Config(), name)) for name in NAMES}
    values.update({"schedule.beta_start": 0.0002, "schedule.beta_end": 0.03, "sampling.spacing": "leading",
                   "data.num_points": 300, "data.vae": str(tmp_path)})  # data.vae must name a folder that exists
    cfg = Config()
    for name, value in values.items():
        section, key = name.split(".", 1)
        cfg = cfg.updated(**{section: {key: value}})
    assert cfg.validate() == []
    path = tmp_path / "every.toml"
    cfg.save(path)
    assert window.open_config(str(path))
    assert window.state.config == cfg
    for name in NAMES:
        assert same(editor_value(window.editor(name)), values[name]), name
    assert not window.state.modified  # what was opened is what is saved
    qtbot.waitUntil(lambda: not window.dataset_panel.loading, timeout=20_000)
    assert window.state.config == cfg  # the dataset load keeps the file's data settings


def test_three_bad_fields_are_marked_where_they_are_until_fixed(window, tmp_path, qtbot):
    qtbot.waitUntil(lambda: window.state.dataset is not None, timeout=20_000)
    assert window.action_start.isEnabled()
    path = tmp_path / "bad.toml"
    path.write_text("[optim]\nbatch_size = 0\nlr = -1.0\ngrad_accum = 0\n")
    assert window.open_config(str(path))
    bad = {"optim.batch_size", "optim.lr", "optim.grad_accum"}
    assert {name for name, _ in window.state.errors} == bad
    marked = {w.objectName() for w in window.findChildren(QWidget) if w.property("error")}
    assert marked == bad
    lr = window.editor("optim.lr")
    assert editor_value(lr) == -1.0 and "must be" in lr.toolTip()  # the bad value shows, with why
    assert not window.action_start.isEnabled() and not window.training_panel.start_button.isEnabled()
    assert window.problems_dock.isVisible() and window.problems_list.count() == 3

    # the problems list leads to the advanced field, hidden under a collapsed "Advanced"
    window.settings_panel.advanced.set_expanded(False)
    accum = window.editor("optim.grad_accum")
    assert not accum.isVisible()
    item = next(window.problems_list.item(i) for i in range(3)
                if window.problems_list.item(i).data(0x0100) == "optim.grad_accum")
    window.problems_list.itemClicked.emit(item)
    assert accum.isVisible() and window.settings_panel.advanced.expanded
    assert window.focusWidget() is accum or not window.isActiveWindow()

    edit_value(window.editor("optim.batch_size"), 32)
    edit_value(lr, 1e-3)
    assert not window.action_start.isEnabled()  # one left
    edit_value(accum, 2)
    assert window.state.errors == []
    assert not any(w.property("error") for w in window.findChildren(QWidget))
    qtbot.waitUntil(window.action_start.isEnabled, timeout=5_000)
    assert window.state.config.optim.batch_size == 32 and window.state.config.optim.lr == pytest.approx(1e-3)
    assert not window.problems_dock.isVisible()


def test_minimum_size_fits_a_1280x720_screen(window):
    from diffstudio.gui.main_window import should_maximize

    assert should_maximize((1366, 768)) and should_maximize((1920, 1080)) and not should_maximize((2560, 1440))
    hint = window.minimumSizeHint()
    assert hint.width() <= MIN_SCREEN[0] and hint.height() <= MIN_SCREEN[1]
    assert window.run_toolbar.isVisible() and not window.run_toolbar.toggleViewAction().isVisible()
    assert not window.run_toolbar.isMovable()


def test_undo_and_redo_restore_a_changed_schedule(window):
    state = window.state
    edit_value(window.editor("schedule.family"), "custom")
    for lam in (3.0, 2.0, 1.0):  # one drag: consecutive edits of the points merge into one step
        window.schedule_panel.move_control_point(1, 0.5, lam)
    dragged = state.config.schedule.points
    assert state.config.schedule.family == "custom" and dragged is not None and dragged[1][1] == pytest.approx(1.0)
    window.action_undo.trigger()
    assert state.config.schedule.family == "custom" and state.config.schedule.points is None
    assert window.editor("schedule.points").text() == ""
    window.action_undo.trigger()
    assert state.config.schedule.family == Config().schedule.family
    assert window.editor("schedule.family").currentData() == Config().schedule.family
    window.action_redo.trigger()
    window.action_redo.trigger()
    assert state.config.schedule.family == "custom" and state.config.schedule.points == dragged
    assert window.schedule_panel.current_points()[1][1] == pytest.approx(1.0)


def test_file_new_asks_only_when_there_are_changes(window, monkeypatch):
    answers = []

    def question(*_args, **_kw):
        answers.append(reply)
        return reply

    monkeypatch.setattr(QMessageBox, "question", question)
    reply = QMessageBox.StandardButton.Cancel
    assert window.new_config() and answers == []  # nothing changed: no question
    edit_value(window.editor("schedule.family"), "custom")
    window.schedule_panel.move_control_point(1, 0.4, 2.0)
    custom = window.state.config
    assert not window.new_config() and len(answers) == 1 and window.state.config == custom  # kept
    reply = QMessageBox.StandardButton.Discard
    assert window.new_config() and len(answers) == 2 and window.state.config.schedule.family != "custom"
    window.action_undo.trigger()  # even File > New can be undone
    assert window.state.config == custom


def test_the_last_settings_and_recent_files_are_remembered(qtbot, settings, tmp_path):
    first = MainWindow(settings=settings)
    qtbot.addWidget(first)
    path = tmp_path / "mine.toml"
    first.state.config.updated(optim={"lr": 4e-4}).save(path)
    assert first.open_config(str(path))
    first.state.update("schedule", family="custom", points=[[0.0, 9.0], [1.0, -9.0]])
    assert first.recent_files() == [str(path.resolve())]
    first.close_without_asking()
    second = MainWindow(settings=settings)
    qtbot.addWidget(second)
    try:
        cfg = second.state.config
        assert cfg.optim.lr == pytest.approx(4e-4) and cfg.schedule.points == [[0.0, 9.0], [1.0, -9.0]]
        assert [a.text() for a in second.recent_menu.actions()] == ["mine.toml"]
        assert second._last_dir() == str(tmp_path)
    finally:
        second.close_without_asking()


def test_generated_editors_follow_the_description(qtbot):
    table = by_name()
    lr = make_editor(table["optim.lr"])
    qtbot.addWidget(lr)
    lr.lineEdit().setText("3e-4")
    lr.interpretText()
    assert lr.value() == pytest.approx(3e-4) and lr.objectName() == "optim.lr"
    resolution = make_editor(table["data.resolution"])
    qtbot.addWidget(resolution)
    assert editor_value(resolution) is None and resolution.specialValueText()  # optional: "default"
    precision = make_editor(table["run.precision"])
    qtbot.addWidget(precision)
    assert [precision.itemData(i) for i in range(precision.count())] == [c.value for c in table["run.precision"].choices]
    assert precision.itemData(1, 3)  # each choice's help as its tooltip (Qt.ToolTipRole)
    seed = make_editor(table["run.seed"])
    qtbot.addWidget(seed)
    edit_value(seed, 2**40)
    assert editor_value(seed) == 2**40  # seeds beyond 32 bits
    assert len(describe()) == len(NAMES)


def test_tab_order_runs_from_start_through_the_panels_in_reading_order(window):
    start = window.run_toolbar.widgetForAction(window.action_start)
    order = ("schedule", "objective", "settings", "dataset", "training", "sampling")
    first_seen: dict[str, int] = {}
    w, steps = start, 0
    while steps < 2000:
        w = w.nextInFocusChain()
        steps += 1
        if w is start:
            break
        for key in order:
            if key not in first_seen and window.docks[key].widget().isAncestorOf(w):
                first_seen[key] = steps
    assert list(sorted(first_seen, key=first_seen.get)) == list(order)
    assert first_seen["schedule"] < 10  # Start is a few Tab presses from the schedule


def test_bad_values_of_settings_not_in_use_stay_visible_to_be_fixed(window, tmp_path):
    path = tmp_path / "unused.toml"  # eta is unused by plain DDIM, gamma by uniform weighting
    path.write_text('[sampling]\nsampler = "ddim"\neta = 2.0\nspacing = "shifted"\nshift = 0.0\n'
                    '[schedule]\nfamily = "flow"\n[objective]\nweighting = "uniform"\ngamma = 0.0\n')
    assert window.open_config(str(path))
    bad = {"sampling.eta", "sampling.shift", "objective.gamma"}
    assert {name for name, _ in window.state.errors} == bad
    for name in sorted(bad):
        editor = window.go_to_setting(name)
        assert editor is window.editor(name) and editor.isVisible() and editor.property("error"), name
    edit_value(window.editor("objective.gamma"), 5.0)
    assert not window.editor("objective.gamma").property("error")
