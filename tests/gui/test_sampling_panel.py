"""The sampling panel: shared steps / spacing, guidance gating, model previews, Sample now, and the
oracle preview that shows what a perfect model would produce under the current settings."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from diffstudio.data.dataset import InMemoryDataset
from diffstudio.engine.sampling import Preview
from diffstudio.gui.panels.sampling import SamplingPanel, trajectory_strip
from diffstudio.gui.panels.schedule import SchedulePanel

ORACLE_TIMEOUT_MS = 60000


@pytest.fixture
def panel(qtbot, state):
    panel = SamplingPanel(state)
    panel.resize(460, 900)
    qtbot.addWidget(panel)
    panel.show()
    yield panel
    panel.shutdown()


def wait_oracle(qtbot, panel):
    """Wait for the oracle preview of the current settings."""
    panel._oracle_timer.stop()
    with qtbot.waitSignal(panel.oracleUpdated, timeout=ORACLE_TIMEOUT_MS) as blocker:
        panel.refresh_oracle()
    return blocker.args[0]


def lighting(state, *, ztsnr, param, spacing):
    state.set_config(state.config.updated(
        data={"source": "lighting-flat"}, schedule={"family": "scaled_linear", "ztsnr": ztsnr},
        objective={"parameterization": param}, sampling={"sampler": "ddim", "steps": 50, "spacing": spacing}))


def test_oracle_lighting_flawed_vs_fixed(panel, qtbot):
    """Lin et al.'s fix, with no training: SD + eps + leading squeezes brightness (~0.66 of the data's
    spread); ZTSNR + v + trailing keeps nearly all of it (~0.95)."""
    state = panel.state
    lighting(state, ztsnr=False, param="eps", spacing="leading")
    flawed = wait_oracle(qtbot, panel)
    lighting(state, ztsnr=True, param="v", spacing="trailing")
    fixed = wait_oracle(qtbot, panel)
    assert flawed.spread < 0.78 and fixed.spread > 0.85
    assert panel.oracle_view.grid_view.image is not None
    assert panel.oracle_view.strip.image is not None  # the x_t / x0 trajectory strip
    assert f"{fixed.spread:.2f}" in panel.oracle_view.stats.text()
    # leading -> trailing alone already changes what comes out
    lighting(state, ztsnr=False, param="eps", spacing="trailing")
    trailing = wait_oracle(qtbot, panel)
    assert not np.allclose(trailing.samples, flawed.samples, atol=1e-3)


def test_oracle_surfaces_the_singular_eps_warning(panel, qtbot):
    state = panel.state
    lighting(state, ztsnr=True, param="eps", spacing="trailing")
    state.update("sampling", steps=10)
    preview = wait_oracle(qtbot, panel)
    assert preview.warnings
    assert panel.tabs.currentIndex() == 1  # data with an oracle and no model preview yet: oracle tab
    assert panel.oracle_warning.isVisible() and "cannot recover the image" in panel.oracle_warning.text()
    state.update("objective", parameterization="v")
    wait_oracle(qtbot, panel)
    assert not panel.oracle_warning.isVisible()


def test_oracle_gaussians8_scatter_changes_with_spacing(panel, qtbot):
    state = panel.state
    state.set_config(state.config.updated(data={"source": "gaussians8"}, schedule={"family": "scaled_linear", "ztsnr": False},
                                          objective={"parameterization": "eps"},
                                          sampling={"steps": 10, "spacing": "leading"}))
    leading = wait_oracle(qtbot, panel)
    state.update("sampling", spacing="trailing")
    trailing = wait_oracle(qtbot, panel)
    assert leading.kind == trailing.kind == "points"
    assert not np.allclose(leading.points, trailing.points, atol=1e-3)
    x, y = panel.oracle_view.sample_scatter.getData()
    assert np.allclose(x, trailing.points[:, 0])
    assert len(panel.oracle_view.data_scatter.getData()[0]) > 0  # the data drawn underneath
    assert len(panel.oracle_view.path_xt.getData()[0]) == len(trailing.trajectory) + 1


def test_no_oracle_for_other_data(panel, qtbot):
    assert panel.state.config.data.source == "digits"
    assert panel.last_oracle is None
    assert "gaussians8" in panel.oracle_info.text()
    with qtbot.waitSignal(panel.oracleUpdated, timeout=ORACLE_TIMEOUT_MS):
        panel.use_buttons["lighting-flat"].click()
    assert panel.state.config.data.source == "lighting-flat"


def test_steps_and_spacing_are_shared_with_the_schedule_panel(panel, qtbot):
    schedule_panel = SchedulePanel(panel.state)
    qtbot.addWidget(schedule_panel)
    panel.steps_spin.setValue(12)
    assert schedule_panel.steps_spin.value() == 12 and len(schedule_panel.marker_times()) == 12
    panel.spacing_combo.setCurrentIndex(panel.spacing_combo.findData("leading"))
    assert schedule_panel.spacing_combo.currentData() == "leading"
    schedule_panel.spacing_combo.setCurrentIndex(schedule_panel.spacing_combo.findData("linspace"))
    assert panel.spacing_combo.currentData() == "linspace"


def test_sampler_choice_and_eta(panel):
    state = panel.state
    panel.sampler_combo.setCurrentIndex(panel.sampler_combo.findData("ddim_eta"))
    assert state.config.sampling.sampler == "ddim_eta" and panel.eta.isVisible()
    panel.eta.setValue(0.5)
    assert state.config.sampling.eta == 0.5
    panel.sampler_combo.setCurrentIndex(panel.sampler_combo.findData("heun"))
    assert not panel.eta.isVisible()
    headers = [panel.sampler_combo.itemText(i) for i in range(panel.sampler_combo.count())
               if panel.sampler_combo.itemData(i) is None]
    assert len(headers) == 2 and headers[0].startswith("ODE")


def test_guidance_only_with_classes(panel):
    state = panel.state
    assert not panel.guidance.isEnabled()
    x = torch.zeros(4, 1, 8, 8)
    state.set_dataset(InMemoryDataset(x=x, labels=torch.tensor([0, 1, 0, 1]), class_names=["a", "b"], name="t"))
    assert panel.guidance.isEnabled() and panel.rescale.isEnabled()
    state.update("data", labels=False)
    assert not panel.guidance.isEnabled()


def test_model_preview_images_and_points(panel):
    traj = [(1.0 - k / 4, np.zeros((1, 8, 8), np.float32), np.full((1, 8, 8), 0.5, np.float32)) for k in range(4)]
    grid = np.zeros((19, 19, 3), np.uint8)
    samples = np.zeros((4, 1, 8, 8), np.float32)
    preview = Preview(step=250, kind="image", samples=samples, grid=grid,
                      mean_brightness=np.array([-0.5, 0.5, 0.0, 0.1]), trajectory=traj)
    panel.show_preview(preview)
    view = panel.model_view
    assert view.grid_view.image.shape == (19, 19, 3)
    assert "step 250" in view.title.text() and "Brightness spread" in view.stats.text()
    strip, times = trajectory_strip(traj)
    assert np.array_equal(view.strip.image, strip) and times == [1.0, 0.75, 0.5, 0.25]
    points = Preview(step=10, kind="points", samples=np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32))
    panel.show_preview(points)
    assert np.allclose(view.sample_scatter.getData()[0], points.samples[:, 0])


class _Zero(torch.nn.Module):
    def forward(self, x, t, cond=None):
        return torch.zeros_like(x)


def test_sample_now_runs_in_the_background(panel, qtbot):
    from diffstudio.engine.config import Config
    from diffstudio.models.info import DataInfo

    assert not panel.sample_button.isEnabled()
    cfg = Config().updated(data={"source": "gaussians8"}, schedule={"family": "cosine"},
                           objective={"parameterization": "v"}, sampling={"spacing": "uniform"})
    panel._on_loaded(SimpleNamespace(model=_Zero(), config=cfg, data_info=DataInfo("points", 2, 0, 0),
                                     step=7, path="memory"))
    assert panel.sample_button.isEnabled()
    panel.state.set_config(cfg.updated(sampling={"num_samples": 32, "steps": 5}))
    with qtbot.waitSignal(panel.previewShown, timeout=ORACLE_TIMEOUT_MS) as blocker:
        panel.sample_button.click()
    preview = blocker.args[0]
    assert preview.kind == "points" and preview.samples.shape == (32, 2)
    assert "checkpoint" in panel.model_view.title.text()
    assert not panel.checkpoint_label.text().startswith("Sampling")  # the label ends with the sampling
    assert "Checkpoint: memory (step 7)" in panel.checkpoint_label.text()


def _image_preview(step: int, brightness: float = 0.0) -> Preview:
    samples = np.full((4, 1, 8, 8), brightness, np.float32) + np.linspace(-0.05, 0.05, 4, dtype=np.float32)[:, None, None, None]
    return Preview(step=step, kind="image", samples=samples, grid=np.zeros((19, 19, 3), np.uint8),
                   mean_brightness=samples.reshape(4, -1).mean(1))


def test_changing_the_dataset_marks_previews_and_histogram_stale(panel):
    from diffstudio.data.registry import load_dataset

    state = panel.state
    state.set_config(state.config.updated(data={"source": "lighting", "resolution": 8, "channels": 1}))
    state.set_dataset(load_dataset("lighting", resolution=8, channels=1, n=256))
    run_config = state.config
    panel.show_preview(_image_preview(100), source="training", config=run_config)
    stats = panel.model_stats
    assert not panel.model_view.stale and stats.sample_means is not None
    assert "mid-grey" in stats.summary.text()  # advice about this run, judged on this run's data
    assert panel.checkpoint_label.isHidden()  # no "No checkpoint loaded." above live previews

    state.update("data", source="digits", resolution=None, channels=None)  # the user picks other data
    assert panel.model_view.stale
    assert "a model of 'lighting' (8 px, 1 channel)" in panel.model_view.stale_label.text()
    assert "'digits'" in panel.model_view.stale_label.text()
    assert stats.sample_means is None and not stats.sample_item.isVisible()
    assert "mid-grey" not in stats.summary.text() and "No sample statistics" in stats.summary.text()
    assert stats.advice() == []

    state.update("data", source="lighting", resolution=8, channels=1)  # back to the run's data
    assert not panel.model_view.stale and stats.sample_means is not None

    panel.start_new_run(run_config)  # a new run: the last run's samples are not its own
    assert panel.model_view.grid_view.image is None and stats.sample_means is None
    assert "new run" in panel.model_view.grid_view.placeholder()


def test_previews_can_be_enlarged_and_saved(panel, tmp_path, monkeypatch):
    from PIL import Image
    from PySide6.QtWidgets import QFileDialog

    panel.show_preview(_image_preview(5))
    view = panel.model_view
    assert view.enlarge_button.isVisibleTo(view) and view.save_button.isVisibleTo(view)
    window = view.enlarge()
    assert window is not None and window.isVisible()
    assert window.view.target_rect().width() > 19 * 2  # shown larger than in the panel's minimum
    assert np.array_equal(window.view.image, view.grid_view.image)
    out = tmp_path / "grid"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "PNG image (*.png)"))
    saved = view.save_dialog()
    assert saved == str(out) + ".png"
    assert np.array_equal(np.asarray(Image.open(saved).convert("RGB")), view.grid_view.image)
    window.close()


def test_a_double_click_enlarges_the_grid(panel, qtbot):
    from PySide6.QtCore import Qt

    panel.show_preview(_image_preview(6))
    before = len(panel.model_view.windows)
    qtbot.mouseDClick(panel.model_view.grid_view, Qt.MouseButton.LeftButton)
    assert len(panel.model_view.windows) == before + 1
    panel.model_view.windows[-1].close()


def test_sample_now_on_a_latent_run_shows_decoded_images(panel, qtbot, tmp_path):
    """A model trained on a VAE's latents (data.vae) samples latents; the panel shows them decoded."""
    from diffstudio.engine.config import Config
    from diffstudio.models.info import DataInfo
    from tests.helpers import tiny_vae

    tiny_vae(tmp_path / "vae", shift=None, scaling=0.18215)  # diffusers' defaults
    cfg = Config().updated(data={"source": "blobs", "vae": str(tmp_path / "vae")},
                           sampling={"num_samples": 4, "steps": 3})
    panel._on_loaded(SimpleNamespace(model=_Zero(), config=cfg, data_info=DataInfo("image", 4, 8, 0),
                                     step=2, path="memory"))
    panel.state.set_config(cfg)
    with qtbot.waitSignal(panel.previewShown, timeout=ORACLE_TIMEOUT_MS) as blocker:
        panel.sample_button.click()
    preview = blocker.args[0]
    assert preview.samples.shape == (4, 3, 16, 16)  # 4x8x8 latents decoded to the data's 3x16x16 images


def _grid_preview(step: int, value: int) -> Preview:
    """A 38x38 grid (a 4x4 digits grid's size) of one grey ``value``, with a trajectory strip."""
    traj = [(1.0 - k / 4, np.zeros((1, 8, 8), np.float32), np.zeros((1, 8, 8), np.float32)) for k in range(4)]
    samples = np.zeros((4, 1, 8, 8), np.float32)
    return Preview(step=step, kind="image", samples=samples, grid=np.full((38, 38, 3), value, np.uint8),
                   mean_brightness=np.array([-0.5, 0.5, 0.0, 0.1]), trajectory=traj)


def test_zoom_gives_the_grid_the_room_of_the_strip_and_the_histogram(panel, qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    panel.resize(440, 690)  # the Sampling dock's size in a maximized window on a 1366x768 screen
    panel.show_preview(_grid_preview(100, 40))
    view, split = panel.model_view, panel.model_split
    qtbot.wait(20)  # laid out
    before, sizes = view.grid_view.target_rect(), split.sizes()
    assert view.strip.isVisible() and view.stats.isVisible() and sizes[1] > 0
    with qtbot.waitSignal(panel.previewZoomChanged) as zoomed:
        view.zoom_button.click()
    assert zoomed.args == [True] and panel.preview_zoomed and view.zoom_button.isChecked()
    assert panel.oracle_view.zoomed and panel.oracle_view.zoom_button.isChecked()  # both tabs zoom
    qtbot.wait(20)
    assert not view.strip.isVisible() and not view.stats.isVisible() and not view.strip_caption.isVisible()
    assert split.sizes()[1] == 0  # the histogram steps aside
    after = view.grid_view.target_rect()
    assert after.height() >= 2 * before.height() and after.width() == after.height()
    panel.show_preview(_grid_preview(200, 80))  # a new preview keeps the zoom
    assert not view.strip.isVisible() and panel.preview_zoomed

    panel.activateWindow()
    qtbot.waitUntil(panel.isActiveWindow)
    panel.seed_spin.setFocus()
    QTest.keyClick(panel.seed_spin, Qt.Key.Key_Escape)  # Escape in the panel puts it back
    qtbot.wait(20)
    assert not panel.preview_zoomed and not view.zoom_button.isChecked()
    assert view.strip.isVisible() and view.stats.isVisible()
    assert split.sizes() == sizes and view.grid_view.target_rect() == before
    assert panel.seed_spin.value() == panel.state.config.sampling.seed  # Escape edited nothing


def test_the_enlarged_grid_follows_training_until_told_to_keep_one(panel, qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    panel.show_preview(_grid_preview(100, 40))
    view = panel.model_view
    window = view.enlarge()
    assert "step 100" in window.caption.text()
    panel.show_preview(_grid_preview(200, 80))
    assert (window.view.image == 80).all() and "step 200" in window.caption.text()
    assert view.enlarge() is window and len(view.windows) == 1  # one live window, brought forward
    window.follow.setChecked(False)  # keep step 200
    panel.show_preview(_grid_preview(300, 120))
    assert (window.view.image == 80).all()
    live = view.enlarge()  # a new live window beside the kept one
    assert live is not window and (live.view.image == 120).all() and len(view.windows) == 2
    live.activateWindow()
    qtbot.waitUntil(live.isActiveWindow)
    QTest.keyClick(live, Qt.Key.Key_Escape)
    assert not live.isVisible()
    qtbot.waitUntil(lambda: len(view.windows) == 1)  # closed windows are forgotten
    panel.show_preview(_grid_preview(400, 160))  # and never updated
    assert view.windows == [window] and (window.view.image == 80).all()
    window.close()
