"""File > Start from a model…: choose a pretrained model, check it, say what it is, and set
``model.init_from`` as one undoable edit.

The check is the engine's own (:mod:`diffstudio.engine.pretrained`): :func:`read_pretrained` reads
the folder (safetensors + JSON only), :func:`check_fits` compares it with the loaded data, and
:func:`adapt_class_embedding` says what happens to the class conditioning. It runs on a
:class:`~diffstudio.gui.worker.TaskThread` (a real UNet takes seconds to read); the window shows
what was found in a dialog, with the option to switch to the ``finetune-ztsnr-v`` recipe too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from diffstudio.engine.config import Config, ConfigError
from diffstudio.gui.worker import TaskThread

RECIPE = "finetune-ztsnr-v"
NOTE_STYLE = "color: #555;"
HEAD_WIDTH = 560  # px: the model's path is elided in the middle beyond this
WARNING_STYLE = "color: #8a3b00; background: #fff3cd; border: 1px solid #e0b252; padding: 4px;"


@dataclass(frozen=True)
class ModelFound:
    """What :func:`inspect_model` found: where (``path`` as chosen, ``source`` as read), the
    architecture (``summary`` lines: parameters, sample size, channels, classes), what the data
    comparison said (``data``: the data it was checked against, or why it was not) and the class
    conditioning note (``class_note``, "" when the classes match)."""

    path: str
    source: str
    num_params: int
    summary: tuple[str, ...]
    data: str
    class_note: str


def data_info(config: Config, dataset):
    """The :class:`~diffstudio.models.info.DataInfo` a run would build from ``dataset`` under
    ``config`` (as the Trainer does: points have 2 channels; classes only when ``data.labels``
    and the data carry labels); None when no dataset is loaded."""
    from diffstudio.models.info import DataInfo

    if dataset is None:
        return None
    return DataInfo.from_dataset(dataset, labels=config.data.labels)


def _architecture(pre) -> tuple[str, ...]:
    """Lines describing a :class:`~diffstudio.engine.pretrained.Pretrained` network."""
    n = sum(int(v.numel()) for v in pre.weights.values())
    if pre.kind == "mlp":
        data = pre.config.get("data", {})
        classes = int(pre.config.get("num_classes") or 0)
        return (f"{n:,} parameters", f"a 2-D point model (MLP) for {data.get('channels', 2)}-D points",
                f"class conditioning: {f'{classes} classes' if classes else 'none'}")
    cfg = pre.config
    size = cfg.get("sample_size")
    size = f"{size[0]}x{size[1]}" if isinstance(size, (list, tuple)) else (f"{size}x{size}" if size else "any")
    rows = int(cfg.get("num_class_embeds") or 0)
    if pre.num_classes is not None:  # a diffstudio model: rows = classes + the null label
        classes = f"{pre.num_classes} classes (+ the null label)" if pre.num_classes else "none (unconditional)"
    else:
        classes = f"{rows} label rows" if rows else "none (unconditional)"
    if cfg.get("class_embed_type"):
        classes += f", class_embed_type={cfg['class_embed_type']}"
    widths = ", ".join(str(c) for c in cfg.get("block_out_channels", ()))
    return (f"{n:,} parameters (UNet2DModel, channels per level {widths})",
            f"sample size {size} px, {_channels(cfg.get('in_channels', 3))} in, "
            f"{_channels(cfg.get('out_channels', 3))} out",
            f"class conditioning: {classes}")


def _channels(n) -> str:
    return f"{n} channel" + ("" if n == 1 else "s")


def inspect_model(path: str, config: Config, dataset) -> ModelFound:
    """Read the model at ``path`` and compare it with ``dataset`` (the loaded data; None: not yet
    loaded) under ``config``, with the engine's checks.

    Raises :class:`~diffstudio.engine.pretrained.InitFromError` (one line) when the model cannot be
    read, or cannot take the data (channels, resolution, class embedding type)."""
    from diffstudio.engine.pretrained import adapt_class_embedding, check_fits, read_pretrained

    pre = read_pretrained(path)
    summary = _architecture(pre)
    num_params = sum(int(v.numel()) for v in pre.weights.values())
    info = data_info(config, dataset)
    if info is None:
        return ModelFound(path, pre.source, num_params, summary,
                          "no dataset is loaded yet: the data are checked against it when the run starts", "")
    classes = info.num_classes if (config.model.class_conditional and info.num_classes > 0) else 0
    what = f"{info.channels}-channel {info.resolution} px images" if info.kind == "image" else "2-D points"
    data = f"checked against the data: {what}, {f'{classes} classes' if classes else 'no classes'}"
    if config.data.vae:  # the model sees the VAE's latents
        data = _check_latents(pre, config.data.vae, info, classes)
    else:
        check_fits(pre, info)
    note = adapt_class_embedding(pre, classes)[2] if pre.kind == "unet" else ""
    return ModelFound(path, pre.source, num_params, summary, data, note)


def _check_latents(pre, vae: str, info, classes: int) -> str:
    """Check ``pre`` against the latents the VAE at ``vae`` makes of the data described by ``info``
    (their shape from the VAE's config.json alone: no weights are loaded), as the run will; returns
    the dialog's line. Raises InitFromError when the model cannot take those latents. Where the VAE
    cannot take the images or cannot be read, the check is left to the run (the Dataset panel and
    the run start say why)."""
    from diffstudio.engine.pretrained import check_fits
    from diffstudio.models.info import DataInfo
    from diffstudio.models.vae import VaeError, read_latent_geometry

    cls = f"{classes} classes" if classes else "no classes"
    if info.kind != "image":
        check_fits(pre, info)
        return f"checked against the data: 2-D points, {cls}"
    try:
        in_channels, latent_channels, factor = read_latent_geometry(vae)
    except VaeError as e:
        return f"data.vae cannot be used ({e}); the model is checked when the run starts; {cls}"
    res = info.resolution
    if info.channels != in_channels or res % factor:
        return (f"the VAE (data.vae) takes {in_channels}-channel images with sides divisible by {factor}, the data are "
                f"{info.channels}-channel {res} px: the model is checked when the run starts; {cls}")
    check_fits(pre, DataInfo(kind="image", channels=latent_channels, resolution=res // factor,
                             num_classes=info.num_classes), latent=True)
    return (f"checked against the VAE's latents: {latent_channels}-channel {res // factor} px (the {res} px images "
            f"over its downsampling by {factor}), {cls}")


def with_model(config: Config, path: str, recipe: bool) -> Config:
    """``config`` starting from the model at ``path``; with ``recipe`` also switched to the
    ``finetune-ztsnr-v`` preset's objective (Lin et al. 2024, Sec. 5): its zero-terminal-SNR
    rescaling of the same betas, its parameterization (v), its sampling spacing (trailing) and
    its EMA decay (short, so the average soon forgets the starting weights). The values are read
    from the preset, not repeated here."""
    changed = config.updated(model={"init_from": str(path)})
    if not recipe:
        return changed
    from diffstudio.engine.presets import preset

    p = preset(RECIPE)
    return changed.updated(schedule={"ztsnr": p.schedule.ztsnr},
                           objective={"parameterization": p.objective.parameterization},
                           sampling={"spacing": p.sampling.spacing},
                           optim={"ema_decay": p.optim.ema_decay})


def recipe_text() -> str:
    """What the recipe checkbox does, in the preset's own values."""
    from diffstudio.engine.presets import preset

    p = preset(RECIPE)
    return (f"Also switch to {p.objective.parameterization}-prediction with zero terminal SNR and "
            f"{p.sampling.spacing} spacing ({RECIPE})")


def _refusal(exc: BaseException) -> str:
    if isinstance(exc, ConfigError):
        return "; ".join(message for _field, message in exc.errors)
    from diffstudio.engine.errors import report_error

    return report_error(exc).message


class StartFromDialog(QDialog):
    """What was found, the class note, the recipe option; Accept sets ``model.init_from``."""

    def __init__(self, found: ModelFound, config: Config, parent: QWidget | None = None):
        super().__init__(parent)
        self.found = found
        self.setWindowTitle("Start from a model")
        self.setObjectName("start_from_dialog")
        layout = QVBoxLayout(self)
        head = QLabel()
        head.setObjectName("start_from_path")
        font = head.font()
        font.setBold(True)
        head.setFont(font)
        # a path has no spaces to wrap at: elided in the middle (its end, the folder's name, stays
        # in view) instead of widening the dialog past the screen; the whole path in the tooltip
        head.setText(head.fontMetrics().elidedText(found.source, Qt.TextElideMode.ElideMiddle, HEAD_WIDTH))
        head.setToolTip(found.source)
        head.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary_label = QLabel("\n".join(found.summary))
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.data_label = QLabel(found.data)
        self.data_label.setWordWrap(True)
        self.data_label.setStyleSheet(NOTE_STYLE)
        self.class_label = QLabel(f"⚠ {found.class_note}" if found.class_note else "")
        self.class_label.setWordWrap(True)
        self.class_label.setStyleSheet(WARNING_STYLE)
        self.class_label.setVisible(bool(found.class_note))
        arch = QLabel("The model's config sets the architecture (Model size is ignored while it is set).")
        arch.setWordWrap(True)
        arch.setStyleSheet(NOTE_STYLE)
        self.recipe_box = QCheckBox(recipe_text())
        self.recipe_box.setObjectName("start_from_recipe")
        self.recipe_box.setToolTip("Lin et al. 2024: fine-tune an eps model to v-prediction on the same betas "
                                   "rescaled to zero terminal SNR, sampled with trailing timesteps (the "
                                   f"{RECIPE} preset's schedule, objective, spacing and EMA decay).")
        if not config.schedule.is_discrete:
            self.recipe_box.setEnabled(False)
            self.recipe_box.setToolTip("Zero terminal SNR rescales a beta schedule; this run's schedule "
                                       f"({config.schedule.family}) has none.")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.accept_button = buttons.addButton("Start from this model", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        for w in (head, self.summary_label, self.data_label, self.class_label, arch, self.recipe_box):
            layout.addWidget(w)
        layout.addWidget(buttons)
        self.setMinimumWidth(460)


class StartFromModel(QObject):
    """The controller behind File > Start from a model…: :meth:`choose` asks for a folder,
    :meth:`check` reads it in the background, then a :class:`StartFromDialog` shows what was found
    and :meth:`apply` sets it. ``found`` / ``refused`` report each check (tests wait on them)."""

    found = Signal(object)  # ModelFound
    refused = Signal(str)  # why the folder cannot be used (one line)

    def __init__(self, state, parent: QWidget):
        super().__init__(parent)
        self.state = state
        self.window = parent
        self.thread: TaskThread | None = None
        self.dialog: StartFromDialog | None = None
        self.message_box: QMessageBox | None = None
        self._path = ""

    def choose(self, start_dir: str = "") -> None:
        """Ask for a folder (a diffusers model or pipeline, or a diffstudio run) and check it."""
        path = QFileDialog.getExistingDirectory(self.window, "Start from a model: a diffusers UNet2DModel or "
                                                "pipeline folder, or a diffstudio run or checkpoint", start_dir)
        if path:
            self.check(path)

    def check(self, path: str) -> None:
        """Read ``path`` off the UI thread; a newer check makes an older one's result ignored."""
        if self.thread is not None:
            self.thread.cancel()
        if self.dialog is not None:  # what an earlier choice found no longer applies
            self.dialog.reject()
            self.dialog = None
        config, dataset = self.state.config, self.state.dataset
        self._path = str(path)
        thread = TaskThread(lambda _progress, _cancel: inspect_model(str(path), config, dataset),
                            describe=_refusal)
        thread.succeeded.connect(self._on_found)
        thread.failed.connect(self._on_refused)
        self.thread = thread
        self.window.statusBar().showMessage(f"Reading {path}…")
        thread.start()

    @property
    def busy(self) -> bool:
        """A check is reading a model folder now."""
        return self.thread is not None and self.thread.isRunning()

    def _current(self) -> bool:
        sender = self.sender()
        if sender is not self.thread or (sender is not None and sender.cancelled):
            return False
        self.thread = None
        self.window.statusBar().clearMessage()
        return True

    def _on_found(self, found: ModelFound) -> None:
        if not self._current():
            return
        dialog = StartFromDialog(found, self.state.config, self.window)
        dialog.accepted.connect(lambda: self.apply(found.path, dialog.recipe_box.isChecked()))
        self.dialog = dialog
        dialog.open()
        self.found.emit(found)

    def _on_refused(self, message: str, _exc) -> None:
        if not self._current():
            return
        self.refused.emit(message)
        box = QMessageBox(QMessageBox.Icon.Warning, "This model cannot be used",
                          f"{message}\n\nmodel.init_from is unchanged.", QMessageBox.StandardButton.Ok, self.window)
        box.setObjectName("start_from_refused")
        self.message_box = box
        box.open()

    def apply(self, path: str, recipe: bool = False) -> None:
        """Set ``model.init_from`` (and with ``recipe`` the fine-tuning objective): one undo step."""
        name = Path(path).name or str(path)
        self.state.set_config(with_model(self.state.config, path, recipe),
                              f"Start from {name}" + (f" ({RECIPE})" if recipe else ""))
        self.window.statusBar().showMessage(f"The next run starts from {path}", 6000)

    def shutdown(self) -> None:
        """Ignore a check still running and wait for its thread (the window is closing)."""
        thread, self.thread = self.thread, None
        if thread is not None:
            thread.cancel()
            thread.wait()
