"""The main window: dockable panels around the schedule plots, menus, status bar, saved layout.

Default arrangement (1600 x 1000): Schedule, Objective and Model & optimizer share a tabbed dock
down the left side (Objective comes forward, marked ⚠, when a choice conflicts), the schedule plots
fill the middle over a tabbed Dataset / Training dock (Training comes forward when a run starts),
and Sampling runs down the right side; a Problems list appears under Sampling when settings need
fixing. Start / Pause / Stop sit in a toolbar that is always visible. Every panel scrolls when
the window is small, so the window fits a 1280 x 720 screen. Every panel is
a QDockWidget that can be moved, tabbed, floated or hidden (View menu); the arrangement (and View >
Zoom the sample preview) is saved with QSettings and restored at the next start. The dataset and
training panels are imported guardedly so the window still opens when one of them fails to import."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QStackedWidget,
    QTabWidget,
    QToolBar,
    QToolButton,
    QWidget,
)

from diffstudio.engine.config import Config, ConfigError
from diffstudio.gui import help as H
from diffstudio.gui.singletons import protect_singletons
from diffstudio.gui.panels.objective import ObjectivePanel
from diffstudio.gui.panels.sampling import SamplingPanel
from diffstudio.gui.panels.schedule import SchedulePanel
from diffstudio.gui.state import AppState
from diffstudio.engine.settings import describe
from diffstudio.gui.widgets.settings_form import FOCUS_STYLE, Collapsible, SettingsForm

log = logging.getLogger(__name__)

LAYOUT_VERSION = 5  # bump when docks are added or renamed: old saved layouts are then ignored
DEFAULT_SIZE = (1600, 1000)
WIDE_SIZE = (1900, 1150)
"""From this window size on, the default layout shows all five panels at once instead of tabbing
Objective behind Schedule and Training behind Dataset."""


def default_config() -> Config:
    """What the app opens with and File > New restores: the quickstart preset (digits)."""
    from diffstudio.engine.presets import preset

    return preset("quickstart").updated(run={"name": ""})  # runs are named after their dataset


def initial_size(available: tuple[int, int] | None) -> tuple[int, int]:
    """The first window size on a screen with ``available`` (width, height): the wide layout's
    size where it fits, else the default size (the window manager fits it to a smaller screen)."""
    if available is not None and available[0] >= WIDE_SIZE[0] and available[1] >= WIDE_SIZE[1]:
        return WIDE_SIZE
    return DEFAULT_SIZE


PANELS = ("dataset", "schedule", "objective", "settings", "sampling", "training")
def settings_panel_names(*panels) -> list[str]:
    """The Settings dock's share: every setting outside ``data`` (the Dataset panel generates the
    rest of its own) that none of ``panels`` has an editor for, model/optim/run first."""
    placed = {w.objectName() for p in panels if p is not None for w in p.findChildren(QWidget)}
    order = {"model": 0, "optim": 1, "run": 2}
    names = [s for s in describe() if s.section != "data" and s.name not in placed]
    return [s.name for s in sorted(names, key=lambda s: order.get(s.section, 3))]
MIN_SCREEN = (1280, 720)
"""The smallest screen the window fits (its minimum size stays within it)."""
MAX_RECENT = 8
PROBLEMS_HEIGHT = 140
ZOOM_PREVIEW_KEY = "Ctrl+Shift+E"


def should_maximize(available: tuple[int, int] | None) -> bool:
    """Open maximized where the wide layout (every panel in view) does not fit the screen's
    ``available`` area: on a smaller screen the panels then get all of it (1366x768: the default
    layout, scrolled where needed; 1920x1080: the default layout with room to spare)."""
    return available is not None and (available[0] < WIDE_SIZE[0] or available[1] < WIDE_SIZE[1])


def _optional_panel(module: str, name: str):
    """Import a panel class owned elsewhere; None (and a log line) when it cannot be imported."""
    try:
        mod = __import__(f"diffstudio.gui.panels.{module}", fromlist=[name])
        return getattr(mod, name)
    except Exception:  # noqa: BLE001 - a broken optional panel must not stop the app
        log.warning("the %s panel is unavailable", module, exc_info=True)
        return None


class MainWindow(QMainWindow):
    """The app's window (see the module doc): panels over one :class:`AppState`, menus, toolbar,
    status bar; ``layoutRestored(ok)`` after :meth:`restore_layout`. Errors are shown in dialogs,
    never raised."""
    layoutRestored = Signal(bool)

    def __init__(self, state: AppState | None = None, settings: QSettings | None = None, parent=None,
                 *, defer_dataset: bool = False):
        """``defer_dataset``: create the Dataset panel — which starts loading the data — only in
        :meth:`finish_startup`, after the window is on screen (what ``run_app`` does)."""
        protect_singletons()  # also when the window is embedded without run_app
        super().__init__(parent)
        self._defer_dataset = defer_dataset
        self.settings = settings or QSettings()
        self.state = state or AppState(self._last_session_config() or default_config())
        self.setWindowTitle("diffstudio")
        self.setObjectName("MainWindow")
        self.setTabPosition(Qt.DockWidgetArea.AllDockWidgetAreas, QTabWidget.TabPosition.North)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks
                            | QMainWindow.DockOption.AllowNestedDocks)
        self.panels: dict[str, QWidget] = {}
        self.docks: dict[str, QDockWidget] = {}
        self._closing = False
        self._stopping_to_close = False
        self.stopping_note: QLabel | None = None
        self._problem_count = 0
        self._build_panels()
        from diffstudio.gui.start_from import StartFromModel

        self.start_from = StartFromModel(self.state, self)
        self._build_problems()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self._connect()
        screen = self.screen()
        geometry = screen.availableGeometry() if screen is not None else None
        self._available = (geometry.width(), geometry.height()) if geometry is not None else None
        self.resize(*initial_size(self._available))
        self.default_layout()
        self._layout_restored = self.restore_layout()
        self._show_problems(self.state.errors)
        self._fix_tab_order()

    # ================================================================= panels
    def _build_panels(self) -> None:
        state = self.state
        self.schedule_panel = SchedulePanel(state, embed_view=False)
        self.objective_panel = ObjectivePanel(state)
        self.sampling_panel = SamplingPanel(state)
        dataset_cls = _optional_panel("dataset", "DatasetPanel")
        training_cls = _optional_panel("training", "TrainingPanel")
        self._dataset_cls = dataset_cls
        self.dataset_panel = dataset_cls(state) if dataset_cls and not self._defer_dataset else None
        self.training_panel = training_cls(state) if training_cls else None
        # the plots scroll rather than overlap when the window is very small (the minimum size
        # then stays within MIN_SCREEN whatever the wrapped captions ask for)
        self.central_scroll = _scrollable(_NoHeightForWidth(self.schedule_panel.view))
        thumbs = getattr(self.schedule_panel, "thumbs", {}).get("clean")
        if thumbs is not None and thumbs.parentWidget() is not None:  # captions wrap: never squeeze them
            self._thumbs_height = _MinHeightForWidth(thumbs.parentWidget())
        self.central_scroll.setMinimumSize(360, 300)
        self.setCentralWidget(self.central_scroll)
        # every model, optimizer and run setting, generated from the settings description
        # (Device and Total steps sit beside Start on the Training panel)
        self.settings_panel = SettingsForm(state, settings_panel_names(
            self.schedule_panel, self.objective_panel, self.sampling_panel, self.training_panel))
        self.settings_panel.layout().setContentsMargins(8, 4, 8, 4)

        widgets = {
            "dataset": self.dataset_panel or _missing("Loading…" if dataset_cls else
                                                      "The dataset panel could not be loaded (see the log)."),
            "schedule": self.schedule_panel,
            "objective": self.objective_panel,
            "sampling": self.sampling_panel,
            "training": self.training_panel or _missing("The training panel could not be loaded (see the log)."),
            "settings": self.settings_panel,
        }
        titles = {"dataset": "Dataset", "schedule": "Schedule", "objective": "Objective",
                  "settings": "Settings",
                  "sampling": "Sampling", "training": "Training"}
        tips = {
            "dataset": "What the model learns from: built-in data sets, 2-D toys or a folder of images.",
            "schedule": "How the image fades into noise over t, and which times the sampler visits.",
            "objective": "What the network predicts and how each noise level counts in the loss.",
            "sampling": "How samples are drawn, and what comes out — from the model or a perfect oracle.",
            "training": "Start, pause and stop training; loss curve, checkpoints and export.",
            "settings": "The model, the optimizer and the run: batch size, learning rate, EMA, precision, "
                        "checkpoint and preview intervals (rarely changed ones under Advanced).",
        }
        for key in PANELS:
            dock = QDockWidget(titles[key], self)
            dock.setObjectName(f"dock_{key}")
            # every panel scrolls in a short or narrow dock (the schedule's controls scroll themselves)
            dock.setWidget(widgets[key] if key == "schedule" else _scrollable(widgets[key]))
            dock.setToolTip(tips[key])
            dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                             | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                             | QDockWidget.DockWidgetFeature.DockWidgetClosable)
            self.panels[key] = widgets[key]
            self.docks[key] = dock

    def _build_problems(self) -> None:
        """The Problems list: one line per invalid setting; a click leads to its editor."""
        self.problems_list = QListWidget()
        self.problems_list.setObjectName("problems_list")
        self.problems_list.setWordWrap(True)
        self.problems_list.setToolTip("Settings that must be fixed before a run can start; click one to go there")
        self.problems_list.itemClicked.connect(self._problem_chosen)
        self.problems_list.itemActivated.connect(self._problem_chosen)
        dock = QDockWidget("Problems", self)
        dock.setObjectName("dock_problems")
        dock.setWidget(self.problems_list)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.problems_dock = dock

    def _build_toolbar(self) -> None:
        """Start / Pause / Stop (mirroring the Training panel's buttons) and the problem count,
        in a toolbar that cannot be moved or hidden."""
        bar = QToolBar("Run", self)
        bar.setObjectName("toolbar_run")
        bar.setMovable(False)
        bar.setFloatable(False)
        bar.toggleViewAction().setVisible(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        bar.setContextMenuPolicy(Qt.ContextMenuPolicy.PreventContextMenu)
        bar.setStyleSheet(FOCUS_STYLE)  # the Tab stop on Start / Pause / Stop is visible
        self.action_start = QAction("▶ Start", self)
        self.action_start.setObjectName("action_start")
        self.action_pause = QAction("‖ Pause", self)
        self.action_stop = QAction("■ Stop", self)
        for action, slot in ((self.action_start, self._shortcut_start), (self.action_pause, self._shortcut_pause),
                             (self.action_stop, self._shortcut_stop)):
            action.triggered.connect(lambda _c=False, f=slot: f())
            bar.addAction(action)
        for action in (self.action_start, self.action_pause, self.action_stop):
            button = bar.widgetForAction(action)
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # reachable with Tab
        bar.addSeparator()
        self.problems_button = QToolButton()
        self.problems_button.setObjectName("problems_button")
        self.problems_button.setStyleSheet("color: #b00020; font-weight: bold;")
        self.problems_button.setToolTip("Show the settings that need fixing")
        self.problems_button.clicked.connect(self.show_problems)
        self.problems_button_action = bar.addWidget(self.problems_button)
        self.problems_button_action.setVisible(False)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.run_toolbar = bar
        self._run_buttons_filter = _EnabledWatcher(self._sync_run_actions, self)

    def _sync_run_actions(self) -> None:
        """The toolbar's Start / Pause / Stop follow the Training panel's buttons."""
        tp = self.training_panel
        pairs = ((self.action_start, "start_button", "▶ "), (self.action_pause, "pause_button", "‖ "),
                 (self.action_stop, "stop_button", "■ "))
        for action, name, icon in pairs:
            button = getattr(tp, name, None) if tp is not None else None
            action.setEnabled(button is not None and button.isEnabled())
            if button is not None:
                action.setText(icon + button.text())
                tip = button.toolTip()
                if action is self.action_start and not button.isEnabled() and hasattr(tp, "start_reason"):
                    tip = tp.start_reason() or tip
                action.setToolTip(tip)
                action.setStatusTip(tip)

    def _on_first_run(self, _path=None) -> None:
        self.start_hint.hide()
        self.settings.setValue("hints/started", True)

    # ============================================================== problems
    def _show_problems(self, errors: list) -> None:
        from diffstudio.engine.settings import by_name

        table = by_name()
        self.problems_list.clear()
        for name, message in errors:
            setting = table.get(name.split("/")[0])
            label = f"{setting.spec.label} ({name})" if setting is not None else name
            item = QListWidgetItem(f"⚠ {label}: {message}")
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setToolTip(f"{name}: {message}\nClick to go to the setting.")
            self.problems_list.addItem(item)
        n = len(errors)
        self.problems_dock.setWindowTitle(f"Problems ({n})" if n else "Problems")
        self.problems_button.setText(f"⚠ {n} setting{'s' if n != 1 else ''} to fix")
        self.problems_button_action.setVisible(bool(n))
        if not n and self._problem_count:
            self.problems_dock.hide()
        self._problem_count = n

    def show_problems(self) -> None:
        """Show the Problems list and select its first entry."""
        self._show_problems_dock()
        if self.problems_list.count():
            self.problems_list.setCurrentRow(0)
            self.problems_list.setFocus(Qt.FocusReason.OtherFocusReason)

    def _show_problems_dock(self) -> None:
        dock = self.problems_dock
        if not dock.isVisible():
            dock.show()
            if not dock.isFloating():
                self.resizeDocks([dock], [PROBLEMS_HEIGHT], Qt.Orientation.Vertical)
        dock.raise_()

    def _problem_chosen(self, item: QListWidgetItem) -> None:
        self.go_to_setting(item.data(Qt.ItemDataRole.UserRole))

    def editor(self, name: str) -> QWidget | None:
        """The editor of the setting ``name`` (its objectName), or None."""
        return self.findChild(QWidget, name)

    def go_to_setting(self, name: str) -> QWidget | None:
        """Show the editor of ``name`` — its dock, tab, page and Advanced section — scroll to it
        and focus it. A rule between fields ("schedule.beta_start/beta_end", "schedule") leads to
        the first editor it names."""
        key = name.split("/")[0]
        widget = self.editor(key)
        if widget is None:
            widget = next((w for w in self.findChildren(QWidget) if w.objectName().startswith(key + ".")), None)
        if widget is None:
            return None
        child, parent = widget, widget.parentWidget()
        scrolls = []
        while parent is not None:
            if isinstance(parent, Collapsible):
                parent.set_expanded(True)
            elif isinstance(parent, QStackedWidget):
                owner = parent.parentWidget()
                (owner if isinstance(owner, QTabWidget) else parent).setCurrentWidget(child)
            elif isinstance(parent, QScrollArea):
                scrolls.append(parent)
            elif isinstance(parent, QDockWidget):
                parent.show()
                parent.raise_()
            child, parent = parent, parent.parentWidget()
        for area in scrolls:
            area.ensureWidgetVisible(widget)
        widget.setFocus(Qt.FocusReason.OtherFocusReason)
        QTimer.singleShot(0, lambda: [a.ensureWidgetVisible(widget) for a in scrolls])  # after the layout
        return widget

    # ================================================================ screen
    def show_for_screen(self) -> None:
        """Show the window; maximized where the default layout does not fit the screen (unless
        a saved geometry was restored)."""
        if not self._layout_restored and should_maximize(self._available):
            self.resize(*self._available)  # lay the panels out for the screen they will fill
            self.default_layout()
            self.showMaximized()
        elif self._available is not None and (self.width() > self._available[0]
                                              or self.height() > self._available[1]):
            # a geometry saved on a larger screen (a window maximized there comes back at its
            # unmaximized size, larger than this screen): its dock sizes squash the plots to a few
            # pixels here, so fill this screen with the default layout and say so
            self.resize(*self._available)
            self.default_layout()
            self.showMaximized()
            self.statusBar().showMessage("The saved layout was made on a larger screen: the default layout for "
                                         "this one is shown (View > Reset layout does the same)", 10000)
        else:
            self.show()

    def _fix_tab_order(self) -> None:
        """Tab goes through the toolbar's Start / Pause / Stop, then the panels in reading order:
        Schedule, Objective, Model & optimizer, Dataset, Training, Sampling."""
        chain: list[QWidget] = [self.run_toolbar.widgetForAction(a)
                                for a in (self.action_start, self.action_pause, self.action_stop)]
        for key in ("schedule", "objective", "settings", "dataset", "training", "sampling"):
            root = self.docks[key].widget()
            chain += [w for w in root.findChildren(QWidget)
                      if w.focusPolicy() & Qt.FocusPolicy.TabFocus and not isinstance(w, QScrollArea)
                      and w.window() is self]
        chain = [w for w in chain if w is not None]
        for a, b in zip(chain, chain[1:]):
            QWidget.setTabOrder(a, b)

    def default_layout(self) -> None:
        """[Schedule, Objective] tabs down the left, the plots in the middle over [Dataset, Training]
        tabs, Sampling down the right; in a window of at least ``WIDE_SIZE``, Dataset sits under
        Schedule, Objective gets a column beside Sampling and Training the row under the plots, so
        every panel is in view."""
        for dock in self.docks.values():
            dock.setFloating(False)
            self.removeDockWidget(dock)
        d = self.docks
        # side columns run the full height; the bottom row sits under the plots only
        self.setCorner(Qt.Corner.TopLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.TopRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        wide = self.width() >= WIDE_SIZE[0] and self.height() >= WIDE_SIZE[1]
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, d["schedule"])
        if wide:  # everything at once: Dataset under Schedule, Objective beside Sampling
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, d["objective"])
            self.splitDockWidget(d["objective"], d["sampling"], Qt.Orientation.Horizontal)
            self.splitDockWidget(d["schedule"], d["dataset"], Qt.Orientation.Vertical)
            self.splitDockWidget(d["objective"], d["settings"], Qt.Orientation.Vertical)
            self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, d["training"])
        else:
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, d["sampling"])
            self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, d["dataset"])
            self.tabifyDockWidget(d["schedule"], d["objective"])
            self.tabifyDockWidget(d["objective"], d["settings"])
            self.tabifyDockWidget(d["dataset"], d["training"])
        self.problems_dock.setFloating(False)
        self.removeDockWidget(self.problems_dock)
        self.splitDockWidget(d["sampling"], self.problems_dock, Qt.Orientation.Vertical)
        for dock in d.values():
            dock.show()
        self.problems_dock.setVisible(bool(self.state.errors))
        if self.state.errors:
            self.resizeDocks([self.problems_dock], [PROBLEMS_HEIGHT], Qt.Orientation.Vertical)
        d["schedule"].raise_()
        d["dataset"].raise_()
        if wide:
            self.resizeDocks([d["schedule"], d["objective"], d["sampling"]], [340, 330, 430],
                             Qt.Orientation.Horizontal)
            self.resizeDocks([d["schedule"], d["dataset"]], [520, 580], Qt.Orientation.Vertical)
            self.resizeDocks([d["training"]], [400], Qt.Orientation.Vertical)
        else:
            self.resizeDocks([d["schedule"], d["sampling"]], [350, 440], Qt.Orientation.Horizontal)
            # the plots keep at least about half of a short screen's height; the docks scroll
            self.resizeDocks([d["dataset"]], [max(200, min(330, int(0.3 * self.height())))],
                             Qt.Orientation.Vertical)

    # ================================================================== menus
    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.action_new = self._action(file_menu, "&New", self.new_config, QKeySequence.StandardKey.New,
                                       "Start again from the default settings")
        self.action_open = self._action(file_menu, "&Open config…", self.open_config_dialog,
                                        QKeySequence.StandardKey.Open, "Load settings from a TOML or JSON file")
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._fill_recent()
        self.action_save = self._action(file_menu, "&Save config…", self.save_config_dialog,
                                        QKeySequence.StandardKey.Save, "Save the settings as TOML or JSON")
        file_menu.addSeparator()
        self.action_start_from = self._action(
            file_menu, "Start from a &model…", self.start_from_model_dialog, None,
            "Fine-tune a pretrained model: a diffusers UNet2DModel or pipeline folder, or a diffstudio run "
            "(sets model.init_from)")
        self.action_open_run = self._action(file_menu, "Open &run folder…", self.open_run_dialog, None,
                                            "View a run folder (loss, previews, config) and load it for sampling")
        self.action_compare = self._action(file_menu, "&Compare runs…", self.compare_runs, None,
                                           "Two runs side by side")
        self.action_export = self._action(file_menu, "&Export checkpoint…", self.export_dialog, None,
                                          "Write a checkpoint as a diffusers folder or a safetensors file")
        file_menu.addSeparator()
        self.examples_menu = file_menu.addMenu("E&xamples")
        self._fill_examples()
        file_menu.addSeparator()
        self.action_quit = self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        edit = bar.addMenu("&Edit")
        stack = self.state.undo_stack
        self.action_undo = stack.createUndoAction(self, "&Undo")
        self.action_undo.setShortcut(QKeySequence.StandardKey.Undo)
        self.action_undo.setStatusTip("Undo the last settings edit")
        self.action_redo = stack.createRedoAction(self, "&Redo")
        self.action_redo.setShortcut(QKeySequence.StandardKey.Redo)
        self.action_redo.setStatusTip("Redo the settings edit just undone")
        edit.addAction(self.action_undo)
        edit.addAction(self.action_redo)

        view = bar.addMenu("&View")
        for key in PANELS:
            action = self.docks[key].toggleViewAction()
            action.setStatusTip(f"Show or hide the {self.docks[key].windowTitle()} panel")
            view.addAction(action)
        view.addAction(self.problems_dock.toggleViewAction())
        view.addSeparator()
        self.action_flip = QAction("Time axis: noise → data (seed's direction)", self, checkable=True)
        self.action_flip.setStatusTip("Display time as 1 − t: 0 = noise, 1 = data, as in the seed notes. "
                                      "Only the plots' axis flips; the numbers never do.")
        self.action_flip.toggled.connect(self.state.set_flip_time)
        view.addAction(self.action_flip)
        self.action_zoom_preview = QAction("Zoom the sample preview", self, checkable=True)
        self.action_zoom_preview.setObjectName("action_zoom_preview")
        self.action_zoom_preview.setShortcut(QKeySequence(ZOOM_PREVIEW_KEY))
        self.action_zoom_preview.setStatusTip("The sample grid takes the Sampling panel's room under its settings "
                                              "(the trajectory strip and the histogram step aside); again, or "
                                              "Escape in the panel, to go back")
        self.action_zoom_preview.toggled.connect(self.zoom_preview)
        self.sampling_panel.previewZoomChanged.connect(self._on_preview_zoom)
        view.addAction(self.action_zoom_preview)
        view.addSeparator()
        self._action(view, "Reset layout", self.default_layout, None, "Put every panel back in its place")

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Notation", self.show_notation, QKeySequence.StandardKey.HelpContents,
                     "t = 0 data → t = 1 noise, x_t = αx0 + σε, SNR, terminal signal, predictions")
        self._action(help_menu, "&About diffstudio", self.show_about)

    def _action(self, menu, text, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        return action

    def _fill_examples(self) -> None:
        try:
            from diffstudio.engine.presets import PRESETS
        except Exception:  # noqa: BLE001 - the presets module is optional here
            log.warning("presets are unavailable", exc_info=True)
            PRESETS = {}
        self.example_actions: dict[str, QAction] = {}
        if not PRESETS:
            self.examples_menu.addAction("(no examples available)").setEnabled(False)
            return
        for name, value in PRESETS.items():
            description = value[0] if isinstance(value, tuple) else ""
            action = self._action(self.examples_menu, name, lambda n=name: self.load_example(n), None, description)
            self.example_actions[name] = action

    # ============================================================= status bar
    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.device_label = QLabel("device: …")
        self.device_label.setToolTip("Where training runs: CUDA when a GPU is available, else the CPU")
        self.step_label = QLabel("step –")
        self.rate_label = QLabel("– steps/s")
        for w in (self.step_label, self.rate_label, self.device_label):
            w.setContentsMargins(8, 0, 8, 0)
            bar.addPermanentWidget(w)
        self.start_hint = QLabel("Next: ▶ Start (Ctrl+Enter) trains with these settings")
        self.start_hint.setObjectName("start_hint")
        self.start_hint.setContentsMargins(8, 0, 8, 0)
        self.start_hint.setStyleSheet("color: #1f5fa8;")
        bar.insertPermanentWidget(0, self.start_hint)
        self.start_hint.setVisible(not _truthy(self.settings.value("hints/started", False)))
        bar.showMessage("Ready. Hover any control for an explanation; Help ▸ Notation explains the symbols.", 8000)

    def finish_startup(self) -> None:
        """Create the deferred Dataset panel and probe the device (once the window shows)."""
        if self.dataset_panel is None and self._dataset_cls is not None:
            try:
                self.dataset_panel = self._dataset_cls(self.state)
            except Exception:  # noqa: BLE001 - the rest of the app stays usable
                log.warning("the dataset panel failed to start", exc_info=True)
            else:
                self.docks["dataset"].setWidget(_scrollable(self.dataset_panel))
                self.panels["dataset"] = self.dataset_panel
        self.detect_device()

    def detect_device(self) -> str:
        """'cuda' (with the GPU's name) or 'cpu'; torch is imported only now, after the window shows."""
        import torch

        if torch.cuda.is_available():
            text = f"cuda ({torch.cuda.get_device_name(0)})"
        else:
            text = "cpu"
        self.device_label.setText(f"device: {text}")
        return text

    def _on_training_status(self, status: dict) -> None:
        step, total = status.get("step", 0), status.get("total", 0)
        self.step_label.setText(f"step {int(step):,} / {int(total):,}" if total else f"step {int(step):,}")
        rate = status.get("steps_per_s", 0.0) or 0.0
        self.rate_label.setText(f"{rate:.1f} steps/s" if rate else "– steps/s")
        if status.get("device"):
            precision = status.get("precision")  # the run's, with why (run.precision = auto picks it)
            self.device_label.setText(f"device: {status['device']}" + (f" · {precision}" if precision else ""))
            if precision:
                self.device_label.setToolTip(f"Where the run trains, in which precision: "
                                             f"{status.get('precision_reason') or precision}")

    # ================================================================ wiring
    def _training_shortcuts(self) -> None:
        """Start / Pause / Stop from anywhere in the window, whichever panel is in front."""
        keys = {"Ctrl+Return": self._shortcut_start, "Ctrl+Enter": self._shortcut_start,
                "Ctrl+Shift+P": self._shortcut_pause, "Ctrl+.": self._shortcut_stop}
        self.shortcuts = [QShortcut(QKeySequence(key), self, slot) for key, slot in keys.items()]

    def _shortcut_start(self) -> None:
        if self.training_panel is not None and not self.training_panel.start():
            self.statusBar().showMessage(self.training_panel.start_reason(), 6000)

    def _shortcut_pause(self) -> None:
        if self.training_panel is not None:
            self.training_panel.toggle_pause()

    def _shortcut_stop(self) -> None:
        if self.training_panel is not None:
            self.training_panel.stop()

    def _connect(self) -> None:
        self._training_shortcuts()
        self.state.flipTimeChanged.connect(self._on_flip)
        self._objective_warned = bool(self.objective_panel.warnings())
        self.objective_panel.warningsChanged.connect(self._on_objective_warnings)
        self._on_objective_warnings(self.objective_panel.warnings())
        tp = self.training_panel
        if tp is not None:
            if hasattr(tp, "previewReady"):
                tp.previewReady.connect(lambda p: self.sampling_panel.show_preview(
                    p, source="training", config=getattr(tp, "run_config", None)))
            if hasattr(tp, "statusChanged"):
                tp.statusChanged.connect(self._on_training_status)
            if hasattr(tp, "runStarted"):
                tp.runStarted.connect(self._on_run_started)
                tp.runStarted.connect(self._on_first_run)
            for button in ("start_button", "pause_button", "stop_button"):
                if hasattr(tp, button):
                    getattr(tp, button).installEventFilter(self._run_buttons_filter)
            if hasattr(tp, "statusChanged"):
                tp.statusChanged.connect(lambda _s: self._sync_run_actions())
            if hasattr(tp, "runFinished"):
                tp.runFinished.connect(self._on_run_finished)
                tp.runFinished.connect(lambda _r: self._sync_run_actions())
        self.state.trainingChanged.connect(lambda _t: self._sync_run_actions())
        self.state.datasetChanged.connect(lambda _d: self._sync_run_actions())
        self.state.validityChanged.connect(lambda _e: self._sync_run_actions())
        self.state.validityChanged.connect(self._show_problems)
        self._sync_run_actions()

    def _on_run_started(self, _path: str) -> None:
        self.docks["training"].raise_()
        self.sampling_panel.start_new_run(getattr(self.training_panel, "run_config", None))

    def _on_objective_warnings(self, warnings: list) -> None:
        """Mark the Objective tab and bring it forward when a choice starts to conflict."""
        dock = self.docks["objective"]
        dock.setWindowTitle("Objective ⚠" if warnings else "Objective")
        if warnings and not self._objective_warned:
            dock.show()
            dock.raise_()
        self._objective_warned = bool(warnings)

    def zoom_preview(self, on: bool) -> None:
        """View > Zoom the sample preview: the Sampling panel's previews zoomed (``on``) or not;
        zooming shows and raises the Sampling dock. Saved with the layout."""
        if on:
            self.docks["sampling"].show()
            self.docks["sampling"].raise_()
        self.sampling_panel.set_preview_zoom(on)

    def _on_preview_zoom(self, on: bool) -> None:
        """The menu item follows the panel's Zoom button, Escape and a restored layout (without
        showing a Sampling dock the layout hides)."""
        self.action_zoom_preview.blockSignals(True)
        self.action_zoom_preview.setChecked(on)
        self.action_zoom_preview.blockSignals(False)

    def _on_flip(self, flip: bool) -> None:
        if self.action_flip.isChecked() != flip:
            self.action_flip.setChecked(flip)

    def _on_run_finished(self, result) -> None:
        run_dir = getattr(result, "run_dir", None)
        if run_dir:
            self.sampling_panel.load_checkpoint(str(run_dir))

    # ================================================================ actions
    def confirm_discard(self, doing: str) -> bool:
        """True when nothing unsaved would be lost, or the person agrees (or saves first)."""
        if not self.state.modified:
            return True
        buttons = (QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                   | QMessageBox.StandardButton.Cancel)
        answer = QMessageBox.question(
            self, "Unsaved settings", f"The settings have changed since they were last opened or saved "
            f"(e.g. a custom schedule). {doing} and discard the changes?", buttons, QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Save:
            return self.save_config_dialog()
        return answer == QMessageBox.StandardButton.Discard

    def new_config(self) -> bool:
        """File > New: the default settings (asks first when there are unsaved changes)."""
        if not self.confirm_discard("Start from the default settings"):
            return False
        self.state.set_config(default_config(), "New settings")
        self.state.mark_saved()
        self.statusBar().showMessage("Default settings (the quickstart preset)", 4000)
        return True

    def load_example(self, name: str) -> None:
        """Replace the config with the preset ``name`` (after asking to discard unsaved edits) as one undo step."""
        from diffstudio.engine import presets

        if not self.confirm_discard(f"Load the example '{name}'"):
            return
        try:
            cfg = presets.preset(name) if hasattr(presets, "preset") else _preset_value(presets.PRESETS[name])
        except Exception as exc:  # noqa: BLE001
            self._error("Example unavailable", f"Could not load the example '{name}': {exc}")
            return
        self.state.set_config(cfg, f"Example {name}")
        self.state.mark_saved()
        self.statusBar().showMessage(f"Example '{name}' loaded", 5000)

    def open_config_dialog(self) -> None:
        """Ask for a config file (after asking to discard unsaved edits) and open it."""
        if not self.confirm_discard("Open another config"):
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open config", self._last_dir(),
                                              "Config files (*.toml *.json);;All files (*)")
        if path:
            self.open_config(path)

    def open_config(self, path: str) -> bool:
        """Load settings from ``path``; problems are shown in a message box (no traceback)."""
        try:
            cfg = Config.load(path)
        except ConfigError as exc:
            self._error("Could not open the config", "\n".join(f"{f}: {m}" for f, m in exc.errors))
            return False
        except Exception as exc:  # noqa: BLE001 - a malformed file must never crash the app
            self._error("Could not open the config", f"{Path(path).name}: {exc}")
            return False
        self.state.set_config(cfg, f"Open {Path(path).name}")
        self.state.mark_saved()
        self._remember_dir(path)
        self._add_recent(path)
        problems = self.state.errors
        note = f" — {len(problems)} setting(s) need fixing (marked in red; see Problems)" if problems else ""
        self.statusBar().showMessage(f"Opened {path}{note}", 8000)
        if problems:
            self.go_to_setting(problems[0][0])
            self._show_problems_dock()
        return True

    def open_recent(self, path: str) -> bool:
        """Open the recent config ``path``; False when cancelled, missing (then forgotten) or unreadable."""
        if not self.confirm_discard("Open another config"):
            return False
        if not Path(path).exists():
            self._forget_recent(path)
            self._error("Could not open the config", f"{path} no longer exists")
            return False
        return self.open_config(path)

    def recent_files(self) -> list[str]:
        """The recently opened or saved config paths, newest first (from QSettings)."""
        value = self.settings.value("recent/files", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        files = [path] + [f for f in self.recent_files() if f != path]
        self.settings.setValue("recent/files", files[:MAX_RECENT])
        self.settings.setValue("session/config_path", path)
        self._fill_recent()

    def _forget_recent(self, path: str) -> None:
        self.settings.setValue("recent/files", [f for f in self.recent_files() if f != path])
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        files = self.recent_files()
        for f in files:
            action = self.recent_menu.addAction(Path(f).name)
            action.setStatusTip(f)
            action.setToolTip(f)
            action.triggered.connect(lambda _c=False, f=f: self.open_recent(f))
        if not files:
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    def save_config_dialog(self) -> bool:
        """Ask where to save the config (.toml or .json) and save it; False when cancelled or failed."""
        path, chosen = QFileDialog.getSaveFileName(self, "Save config", str(Path(self._last_dir()) / "config.toml"),
                                                   "TOML (*.toml);;JSON (*.json)")
        if path:
            if Path(path).suffix not in (".toml", ".json"):
                path += ".json" if "json" in chosen.lower() else ".toml"
            return self.save_config(path)
        return False

    def save_config(self, path: str) -> bool:
        """Write the config to ``path`` (TOML or JSON by suffix); False, with an error dialog, when that fails."""
        try:
            self.state.config.save(path)
        except Exception as exc:  # noqa: BLE001 - disk full, permissions, unserialisable values
            self._error("Could not save the config", f"{path}: {exc}")
            return False
        self._remember_dir(path)
        self._add_recent(path)
        self.state.mark_saved()
        self.statusBar().showMessage(f"Saved {path}", 4000)
        return True

    def start_from_model_dialog(self) -> None:
        """File > Start from a model…: choose a folder, then :meth:`start_from_model`."""
        self.start_from.choose(self._last_run_dir())

    def start_from_model(self, path: str) -> None:
        """Check the model at ``path`` in the background and show what was found; a usable one
        sets ``model.init_from`` when the dialog is accepted (gui/start_from.py)."""
        self.start_from.check(path)

    def open_run_dialog(self) -> None:
        """Ask for a run folder and open it (:meth:`open_run`)."""
        path = QFileDialog.getExistingDirectory(self, "Open a run folder", self._last_run_dir())
        if path:
            self.settings.setValue("paths/last_run_dir", str(Path(path).parent))
            self.open_run(path)

    def open_run(self, path: str):
        """Show the run folder in a viewer window, its checkpoints in the Training panel, and load it
        for Sample now."""
        viewer = None
        try:
            from diffstudio.gui.runs import open_run

            viewer = open_run(path, self)
        except Exception as exc:  # noqa: BLE001
            self._error("Could not open the run", f"{path}: {exc}")
            return None
        tp = self.training_panel
        if tp is not None and hasattr(tp, "load_run") and not getattr(tp, "training", False):
            tp.load_run(path)
        self.sampling_panel.load_checkpoint(path)
        return viewer

    def compare_runs(self):
        """Open the Compare runs window (None, with an error dialog, when it cannot open)."""
        try:
            from diffstudio.gui.runs import open_compare
        except Exception as exc:  # noqa: BLE001
            self._error("Compare runs is unavailable", str(exc))
            return None
        return open_compare(parent=self)

    def export_dialog(self) -> None:
        """Ask for a run or checkpoint folder, a format and a target, then :meth:`export`."""
        source = QFileDialog.getExistingDirectory(self, "Export which run or checkpoint folder?",
                                                  self._last_run_dir())
        if not source:
            return
        fmt, ok = QInputDialog.getItem(self, "Export format", "Format:", ["diffusers", "safetensors"], 0, False)
        if not ok:
            return
        from diffstudio.gui.panels.training import export_target

        target = export_target(self, fmt, source)
        if target:
            self.export(source, fmt, target)

    def export(self, source: str, fmt: str, out_dir: str) -> None:
        """Export ``source`` as ``fmt`` ('diffusers' or 'safetensors') to ``out_dir``: through the Training
        panel (off the UI thread) when there is one, else here; a failure is an error dialog."""
        tp = self.training_panel
        if tp is not None and hasattr(tp, "export_checkpoint"):
            self.docks["training"].show()
            tp.export_checkpoint(source, fmt, out_dir)
            return
        try:
            from diffstudio.engine.export import export

            path = export(source, fmt, out_dir)
        except Exception as exc:  # noqa: BLE001
            self._error("Export failed", str(exc))
            return
        self.statusBar().showMessage(f"Exported to {path}", 6000)

    def show_notation(self) -> None:
        """Show the notation (symbols and the time convention) in a non-modal box."""
        box = QMessageBox(self)
        box.setWindowTitle("Notation")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(H.NOTATION_HTML)
        box.setStandardButtons(QMessageBox.StandardButton.Ok)
        box.setModal(False)
        box.show()
        self._notation_box = box

    def show_about(self) -> None:
        """The About box."""
        QMessageBox.about(self, "About diffstudio", H.ABOUT_HTML)

    def _error(self, title: str, text: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setModal(True)
        box.open()
        self._last_error_box = box

    def _last_dir(self) -> str:
        return str(self.settings.value("paths/last_dir", str(Path.home())))

    def _remember_dir(self, path: str) -> None:
        self.settings.setValue("paths/last_dir", str(Path(path).parent))

    def _last_run_dir(self) -> str:
        return str(self.settings.value("paths/last_run_dir", self.state.config.run.out_dir))

    def _last_session_config(self) -> Config | None:
        """The settings the app had when it was last closed (None when there are none or they
        no longer load)."""
        text = self.settings.value("session/config")
        if not text:
            return None
        try:
            return Config.from_dict(json.loads(str(text)))
        except Exception:  # noqa: BLE001 - an older or damaged entry: start from the defaults
            log.info("the last session's settings could not be restored", exc_info=True)
            return None

    # ============================================================ persistence
    def save_layout(self) -> None:
        """Remember the window's geometry, dock layout, time direction and config in QSettings."""
        s = self.settings
        s.setValue("window/layout_version", LAYOUT_VERSION)
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(LAYOUT_VERSION))
        s.setValue("view/flip_time", bool(self.state.flip_time))
        s.setValue("view/preview_zoom", bool(self.sampling_panel.preview_zoomed))
        try:
            s.setValue("session/config", json.dumps(self.state.config.to_dict()))
        except (TypeError, ValueError):  # an unserialisable value: keep the previous session
            log.info("the settings could not be remembered", exc_info=True)
        s.sync()

    def restore_layout(self) -> bool:
        """Restore what :meth:`save_layout` remembered; True when the dock layout was restored (a
        different ``LAYOUT_VERSION`` keeps the default), and emits ``layoutRestored``."""
        s = self.settings
        ok = False
        if int(s.value("window/layout_version", 0) or 0) == LAYOUT_VERSION:
            geometry, state = s.value("window/geometry"), s.value("window/state")
            if geometry is not None:
                self.restoreGeometry(geometry)
            if state is not None:
                ok = bool(self.restoreState(state, LAYOUT_VERSION))
        flip = s.value("view/flip_time", False)
        self.state.set_flip_time(flip in (True, "true", "1", 1))
        self.sampling_panel.set_preview_zoom(_truthy(s.value("view/preview_zoom", False)))
        self.layoutRestored.emit(ok)
        return ok

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        tp = self.training_panel
        if tp is not None and getattr(tp, "training", False) and not self._closing:
            if not self._stopping_to_close:  # first close while training: ask, then stop in the background
                save = tp.ask_to_stop()
                if save is None:
                    event.ignore()
                    return
                self._stop_then_close(tp, save)
            event.ignore()  # the window stays up, saying so, until the worker has stopped
            return
        if tp is not None and hasattr(tp, "shutdown"):
            if not tp.shutdown(ask=not self._closing):
                event.ignore()
                return
        self.save_layout()
        self.start_from.shutdown()
        self.sampling_panel.shutdown()
        dp = self.dataset_panel
        if dp is not None and hasattr(dp, "shutdown"):
            dp.shutdown()
        super().closeEvent(event)

    def _stop_then_close(self, tp, save: bool) -> None:
        """Closing mid-run: ask the worker to stop, keep the window up with a note, and close it
        (so the app quits) once the worker's thread has finished."""
        self._stopping_to_close = True
        how = "saving a checkpoint" if save else "without saving a checkpoint"
        self.stopping_note = QLabel(f"Stopping training ({how})… the window closes when it has stopped.")
        self.stopping_note.setStyleSheet("QLabel { color: #8a3b00; font-weight: bold; padding: 0 8px; }")
        self.statusBar().clearMessage()
        self.statusBar().insertPermanentWidget(0, self.stopping_note, 1)  # messages never hide it
        self.setWindowTitle("diffstudio — stopping…")
        for dock in self.docks.values():
            if dock.widget() is not tp:
                dock.setEnabled(False)  # no new work while it stops
        thread = tp.thread
        if thread is None or thread.isFinished():  # it ended while the question was open
            QTimer.singleShot(0, self.close)
            return
        # finished() is emitted from the worker just before its thread ends: join it (a moment at
        # most) before closing, so the app never quits with the thread still winding down
        thread.finished.connect(lambda: QTimer.singleShot(0, lambda: (thread.wait(), self.close())))
        tp.stop_for_close(save)

    def close_without_asking(self) -> bool:
        """Close as the tests and a second Quit do: stop training without a question."""
        self._closing = True
        return self.close()


def _truthy(value) -> bool:
    return value in (True, "true", "1", 1)


class _EnabledWatcher(QObject):
    """Calls ``callback`` when a watched widget is enabled or disabled."""

    def __init__(self, callback, parent=None):
        super().__init__(parent)
        self._callback = callback

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.EnabledChange:
            self._callback()
        return False


class _MinHeightForWidth(QObject):
    """Keeps a column's minimum height at what its layout needs at its current width (wrapped
    captions grow taller as the column narrows; a splitter does not ask), so a short window
    scrolls the column instead of drawing images over their captions."""

    def __init__(self, widget: QWidget):
        super().__init__(widget)
        widget.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if event.type() != QEvent.Type.Resize or not isinstance(obj, QWidget):
            return False
        layout = obj.layout()
        if layout is not None and layout.hasHeightForWidth():
            needed = layout.minimumHeightForWidth(obj.width())
            if needed > 0 and needed != obj.minimumHeight():
                obj.setMinimumHeight(needed)
        return False


class _NoHeightForWidth(QWidget):
    """Holds one widget, filling it, without passing on its height-for-width: in a scroll area
    the square thumbnails would otherwise ask for their full height at any width, and the plots
    would scroll even where they fit; now they scroll only below the minimum size."""

    def __init__(self, child: QWidget):
        super().__init__()
        self.child = child
        child.setParent(self)

    def minimumSizeHint(self):  # noqa: N802 - Qt API
        return self.child.minimumSizeHint()

    def sizeHint(self):  # noqa: N802 - Qt API
        return self.child.minimumSizeHint()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.child.setGeometry(self.rect())
        super().resizeEvent(event)


def _scrollable(widget: QWidget) -> QScrollArea:
    """Let a tall panel shrink below its minimum height in a short dock (it scrolls instead)."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    return area


def _missing(text: str) -> QWidget:
    label = QLabel(text)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    return label


def _preset_value(value) -> Config:
    cfg = value[1] if isinstance(value, tuple) else value
    return cfg() if callable(cfg) else cfg


def start_after_show(window: MainWindow) -> None:
    """Work that waits until the window is on screen: the dataset panel (it starts loading the
    data on a background thread) and the CUDA probe for the status bar."""
    QTimer.singleShot(0, window.finish_startup)
