"""File > Start from a model…: a saved diffusers UNet2DModel is checked with the engine's own
functions, what was found is shown, and model.init_from is set as one undoable edit (with the
finetune-ztsnr-v recipe when asked); a folder that cannot be used is one message, never a traceback."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QLabel

from diffstudio.engine.config import Config
from diffstudio.engine.presets import preset
from diffstudio.gui.main_window import MainWindow
from diffstudio.gui.state import AppState

from tests.helpers import tiny_unet, tiny_vae

TIMEOUT_MS = 60000


def save_unet(folder, size=8, channels=1, classes=None, safetensors=True):
    """A tiny UNet2DModel with random weights, saved with ``save_pretrained``; its parameter count."""
    unet = tiny_unet(channels, size, classes, distinctive=False)
    unet.save_pretrained(folder, safe_serialization=safetensors)
    return sum(p.numel() for p in unet.parameters())


def eps_config() -> Config:
    """The digits (8x8, 1 channel, 10 classes) with an eps objective, leading spacing, no ZTSNR."""
    return Config().updated(schedule={"ztsnr": False}, objective={"parameterization": "eps"},
                            sampling={"spacing": "leading"}, optim={"ema_decay": 0.999})


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "diffstudio.ini"), QSettings.Format.IniFormat)
    window = MainWindow(AppState(eps_config()), settings=settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.state.dataset is not None, timeout=TIMEOUT_MS)
    yield window
    window.close_without_asking()
    assert window.start_from.thread is None


def check(qtbot, window, path):
    """Run the File menu's check on ``path`` (the dialog's answer injected); the signal's argument."""
    ctl = window.start_from
    found, refused = [], []
    ctl.found.connect(found.append)
    ctl.refused.connect(refused.append)
    window.start_from_model(str(path))
    qtbot.waitUntil(lambda: bool(found or refused), timeout=TIMEOUT_MS)
    return (found or refused)[0]


def test_the_file_menu_action_starts_from_a_model_and_undo_reverts_it(qtbot, window, tmp_path):
    n = save_unet(tmp_path / "unet")
    action = window.action_start_from
    assert action in window.menuBar().actions()[0].menu().actions() and "model" in action.text()

    found = check(qtbot, window, tmp_path / "unet")
    dialog = window.start_from.dialog
    assert dialog is not None and dialog.isVisible()
    assert found.num_params == n and f"{n:,} parameters" in dialog.summary_label.text()
    assert "sample size 8x8 px, 1 channel in, 1 channel out" in dialog.summary_label.text()
    assert "class conditioning: none" in dialog.summary_label.text()
    assert "1-channel 8 px images, 10 classes" in dialog.data_label.text()
    # an unconditional model meets the digits' 10 classes: the engine's note says what happens
    assert dialog.class_label.isVisibleTo(dialog) and "no class conditioning" in dialog.class_label.text()
    assert "10 classes" in dialog.class_label.text() and "zero" in dialog.class_label.text()
    assert window.state.config.model.init_from == ""  # nothing changes before the dialog is accepted

    dialog.accept_button.click()
    cfg = window.state.config
    assert cfg.model.init_from == str(tmp_path / "unet")
    assert cfg.objective.parameterization == "eps"  # the recipe was not asked for
    tp = window.training_panel
    assert tp.init_row.isVisibleTo(tp) and tp.init_label.text().endswith("/unet")
    assert str(tmp_path / "unet") in tp.init_label.toolTip()

    window.action_undo.trigger()
    assert window.state.config.model.init_from == "" and not tp.init_row.isVisibleTo(tp)
    window.action_redo.trigger()
    assert window.state.config.model.init_from == str(tmp_path / "unet")
    tp.scratch_button.click()  # Train from scratch: one more undoable edit
    assert window.state.config.model.init_from == "" and not tp.init_row.isVisibleTo(tp)
    window.action_undo.trigger()
    assert window.state.config.model.init_from == str(tmp_path / "unet")


def test_the_finetune_recipe_switches_the_objective_in_one_undo_step(qtbot, window, tmp_path):
    save_unet(tmp_path / "unet", classes=11)  # 10 classes + a null row, foreign: rows are adapted
    check(qtbot, window, tmp_path / "unet")
    dialog = window.start_from.dialog
    assert "11 label rows" in dialog.summary_label.text()
    assert "finetune-ztsnr-v" in dialog.recipe_box.text() and dialog.recipe_box.isEnabled()
    dialog.recipe_box.setChecked(True)
    dialog.accept_button.click()
    p, cfg = preset("finetune-ztsnr-v"), window.state.config
    assert cfg.model.init_from == str(tmp_path / "unet")
    assert (cfg.schedule.ztsnr, cfg.objective.parameterization, cfg.sampling.spacing, cfg.optim.ema_decay) == (
        p.schedule.ztsnr, p.objective.parameterization, p.sampling.spacing, p.optim.ema_decay) == (
        True, "v", "trailing", 0.98)
    assert cfg.schedule.family == eps_config().schedule.family  # the same betas, rescaled
    window.action_undo.trigger()
    assert window.state.config == eps_config()


@pytest.mark.parametrize("make, words", [
    (lambda d: d.mkdir(), ("neither",)),
    (lambda d: save_unet(d, safetensors=False), ("pickle",)),
    (lambda d: save_unet(d, size=16), ("16 px", "8 px", "data.resolution")),
    (lambda d: save_unet(d, channels=3), ("3-channel", "1-channel")),
])
def test_a_folder_that_cannot_be_used_is_one_message(qtbot, window, tmp_path, make, words):
    make(tmp_path / "model")
    message = check(qtbot, window, tmp_path / "model")
    assert isinstance(message, str) and "\n" not in message and "Traceback" not in message
    assert all(w in message for w in words), message
    box = window.start_from.message_box
    assert box is not None and box.isVisible() and message in box.text()
    assert window.start_from.dialog is None
    assert window.state.config.model.init_from == "" and not window.state.modified
    box.button(box.StandardButton.Ok).click()


def test_a_check_superseded_by_another_is_ignored(qtbot, window, tmp_path):
    save_unet(tmp_path / "bad", size=16)
    save_unet(tmp_path / "good")
    first = window.start_from
    window.start_from_model(str(tmp_path / "bad"))
    found = check(qtbot, window, tmp_path / "good")
    assert not isinstance(found, str) and found.path == str(tmp_path / "good")
    qtbot.wait(200)  # the first check's refusal, if it arrived later, is not shown
    assert first.message_box is None
    old_dialog = window.start_from.dialog
    check(qtbot, window, tmp_path / "good")  # choosing again closes what the first choice found
    assert not old_dialog.isVisible() and window.start_from.dialog is not old_dialog
    window.start_from.dialog.reject()
    assert window.state.config.model.init_from == ""


def test_a_long_model_path_is_elided_in_the_middle_not_cut_off(qtbot):
    """Tried by a user: a folder with a long name made the dialog some 1,300 px wide, the path's
    end (the folder's own name) cut off at its right edge."""
    from diffstudio.gui.start_from import ModelFound, StartFromDialog

    source = "/tmp/" + "very_long_model_folder_name_" * 6 + "unet"
    found = ModelFound(source, source, 1000, ("1,000 parameters",), "no dataset is loaded yet", "")
    dialog = StartFromDialog(found, Config())
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.sizeHint().width() < 900  # it was ~1,300 px
    head = next(label for label in dialog.findChildren(QLabel) if "very_long" in label.text())
    assert head.text().endswith("name_unet") and "…" in head.text()  # the folder's own name stays in view
    assert head.toolTip() == source
    assert head.fontMetrics().horizontalAdvance(head.text()) <= 600


def test_with_a_vae_the_model_is_checked_against_the_latents_in_the_dialog(qtbot, window, tmp_path):
    """Before: with data.vae set the dialog accepted any UNet ("checked when the run starts"), so a
    pixel model for a latent run was refused only after the data had been encoded. The latents'
    shape comes from the VAE's config.json (no weights loaded): 1-channel 8 px digits -> 4 x 4 x 4."""
    tiny_vae(tmp_path / "vae", channels=1)  # 2 levels: downsampling by 2, 4 latent channels
    window.state.update("data", vae=str(tmp_path / "vae"))
    save_unet(tmp_path / "latent_unet", size=4, channels=4)
    found = check(qtbot, window, tmp_path / "latent_unet")
    assert not isinstance(found, str), found
    assert "4-channel 4 px" in found.data and "downsampling by 2" in found.data
    window.start_from.dialog.reject()

    save_unet(tmp_path / "pixel_unet", size=8, channels=1)  # a pixel model: cannot take the latents
    message = check(qtbot, window, tmp_path / "pixel_unet")
    assert isinstance(message, str) and "latents" in message and "1-channel" in message and "4-channel" in message
    window.start_from.message_box.button(window.start_from.message_box.StandardButton.Ok).click()
    assert window.state.config.model.init_from == ""
