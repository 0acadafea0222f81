"""The schedule editor shows exactly the core's numbers: terminal signal, curves, sampler timesteps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from diffstudio.core.grids import discrete_timesteps, sampling_grid
from diffstudio.core.schedules import make_schedule
from diffstudio.gui.panels.schedule import SchedulePanel, format_percent, nice_range
from diffstudio.gui.widgets.plots import SIMPLIFY_TOLERANCE, simplify_polyline

from tests.helpers import choose, tiny_vae


@pytest.fixture
def panel(qtbot, state):
    panel = SchedulePanel(state)
    panel.resize(1200, 800)
    qtbot.addWidget(panel)
    panel.show()
    return panel


def test_scaled_linear_terminal_signal_and_ztsnr_toggle(panel):
    choose(panel.family_combo, "linear")
    choose(panel.family_combo, "scaled_linear")
    panel.ztsnr_check.setChecked(False)
    core = make_schedule("scaled_linear").terminal_signal
    assert core == pytest.approx(0.068265, abs=1e-6)
    assert panel.state.config.schedule.family == "scaled_linear"
    assert panel.terminal_signal == pytest.approx(core, abs=1e-12)
    assert "6.83 %" in panel.terminal_text()
    panel.ztsnr_check.setChecked(True)
    assert panel.state.config.schedule.ztsnr is True
    assert panel.terminal_signal == 0.0
    assert panel.terminal_text().startswith("0 %")
    assert "zero terminal SNR" in panel.snr_label.text()


@pytest.mark.parametrize("kwargs", [
    dict(family="scaled_linear", ztsnr=False),
    dict(family="scaled_linear", ztsnr=True),
    dict(family="linear", ztsnr=False, beta_end=0.03),
    dict(family="flow", shift=3.0),
    dict(family="edm", ztsnr=True),
    dict(family="custom", points=[[0.0, 8.0], [0.4, 1.0], [1.0, -9.0]]),
])
def test_plotted_curves_equal_the_core_arrays(panel, kwargs):
    state = panel.state
    kwargs = {"ztsnr": False, **kwargs}
    state.set_config(state.config.updated(schedule={"beta_start": None, "beta_end": None, **kwargs},
                                          sampling={"spacing": "trailing" if kwargs["family"] in
                                                    ("scaled_linear", "linear") else "uniform"}))
    pts = kwargs.get("points")
    core = make_schedule(**{**kwargs, "points": tuple(map(tuple, pts)) if pts else None})
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    x, y = panel.curves["alpha"].getData()
    assert np.array_equal(x, t.numpy())
    assert np.allclose(y, core.alpha(t).numpy(), rtol=0, atol=1e-12)
    assert np.allclose(panel.curves["sigma"].getData()[1], core.sigma(t).numpy(), rtol=0, atol=1e-12)
    lam = core.log_snr(t).numpy()
    finite = np.isfinite(lam)
    x, y = panel.curves["log_snr"].getData()
    assert np.array_equal(x, t.numpy()[finite])
    assert np.allclose(y, lam[finite], rtol=1e-12, atol=1e-9)
    assert panel.terminal_signal == core.terminal_signal


@pytest.mark.parametrize("kwargs", [
    dict(family="scaled_linear", ztsnr=True),
    dict(family="linear", ztsnr=False),
    dict(family="edm"),
    dict(family="custom", points=((0.0, 8.0), (0.4, 1.0), (1.0, -9.0))),
])
def test_the_stroked_curve_stays_within_the_tolerance_of_every_point(kwargs):
    """The edited curves hold every point but stroke fewer: none dropped strays from the line."""
    core = make_schedule(**kwargs)
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    lam = core.log_snr(t).numpy()
    finite = np.isfinite(lam)
    for x, y in ((t.numpy(), core.alpha(t).numpy()), (t.numpy(), core.sigma(t).numpy()),
                 (t.numpy()[finite], lam[finite])):
        xs, ys = simplify_polyline(x, y)
        assert xs[0] == x[0] and xs[-1] == x[-1] and len(xs) < len(x) // 2
        assert np.all(np.isin(xs, x)) and np.all(np.isin(ys, y))  # a subset of the data, nothing made up
        gap = np.abs(np.interp(x, xs, ys) - y).max()
        assert gap <= SIMPLIFY_TOLERANCE * (y.max() - y.min()) * (1 + 1e-9)
        flipped_x, flipped_y = simplify_polyline(1.0 - x, y)  # the seed's direction: x decreasing
        assert len(flipped_x) == len(xs)


def test_panel_curves_hold_all_points_and_stroke_fewer(panel):
    curve = panel.curves["alpha"]
    assert len(curve.getData()[0]) == 1001
    assert 2 < curve.getPath().elementCount() < 400


def test_log_snr_axis_is_explicit_round_and_steady_under_ztsnr(panel):
    state = panel.state
    box = panel.log_snr_plot.getPlotItem().getViewBox()
    assert box.autoRangeEnabled() == [False, False]
    assert nice_range(-15.44, 7.07) == (-16.0, 8.0)
    state.update("schedule", family="scaled_linear", ztsnr=True)
    shown = box.viewRange()[1]
    for ztsnr in (False, True, False):
        state.update("schedule", ztsnr=ztsnr)
        lam = panel.curves["log_snr"].getData()[1]
        assert shown[0] <= lam.min() and lam.max() <= shown[1]  # every point inside the axis
        assert box.viewRange()[1] == shown  # toggling ZTSNR keeps the axis (and the curves comparable)
    state.update("schedule", family="flow")
    lam = panel.curves["log_snr"].getData()[1]
    low, high = box.viewRange()[1]
    assert low <= lam.min() and lam.max() <= high


def test_edits_do_not_resize_the_plots(panel, qtbot):
    """Readout texts of different lengths must not re-lay out (and so fully repaint) the plots."""
    qtbot.waitExposed(panel)
    for on in (False, True):  # the readout may grow once, to the longer of the two texts
        panel.ztsnr_check.setChecked(on)
        QApplication.processEvents()
    size = panel.log_snr_plot.size()
    for on in (False, True, False, True):
        panel.ztsnr_check.setChecked(on)
        QApplication.processEvents()
        assert panel.log_snr_plot.size() == size


def test_markers_follow_the_spacing_and_match_diffusers(panel):
    state = panel.state
    state.update("schedule", family="scaled_linear", ztsnr=False)
    state.update("sampling", steps=10)
    for spacing in ("leading", "linspace", "trailing"):
        choose(panel.spacing_combo, spacing)
        assert state.config.sampling.spacing == spacing
        expected = discrete_timesteps(1000, 10, spacing)
        assert np.array_equal(panel.marker_timesteps(), expected)
        x, y = panel.markers["alpha"].getData()
        assert np.allclose(x, (expected + 1) / 1000)
        core = make_schedule("scaled_linear")
        assert np.allclose(y, core.alpha(torch.tensor(np.array(x, dtype=np.float64))).numpy())
        lam_x, lam_y = panel.markers["log_snr"].getData()
        assert np.allclose(lam_y, core.log_snr(torch.tensor(np.array(lam_x, dtype=np.float64))).numpy())
    from diffusers import DDIMScheduler

    reference = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, timestep_spacing="trailing")
    reference.set_timesteps(10)
    assert np.array_equal(panel.marker_timesteps(), reference.timesteps.numpy())
    choose(panel.spacing_combo, "leading")
    reference = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", timestep_spacing="leading")
    reference.set_timesteps(10)
    assert np.array_equal(panel.marker_timesteps(), reference.timesteps.numpy())
    assert "starts at t = 0.901" in panel.start_label.text()  # leading never reaches t = 1


def test_family_kind_switch_keeps_a_valid_spacing(panel):
    state = panel.state
    choose(panel.family_combo, "flow")
    assert state.config.sampling.spacing == "uniform"
    assert [panel.spacing_combo.itemData(i) for i in range(panel.spacing_combo.count())] == ["uniform", "shifted", "karras"]
    choose(panel.spacing_combo, "karras")
    grid = sampling_grid(make_schedule("flow"), state.config.sampling.steps, "karras")
    assert np.allclose(panel.marker_times(), grid[:-1].numpy())
    assert not panel.ztsnr_check.isEnabled()  # flow is zero terminal SNR by construction
    choose(panel.family_combo, "squaredcos_cap_v2")
    assert state.config.sampling.spacing == "trailing"
    assert not state.errors


def test_time_axis_flip_changes_only_the_display(panel):
    t = np.linspace(0, 1, 1001)
    y_before = panel.curves["alpha"].getData()[1].copy()
    panel.state.set_flip_time(True)
    x, y = panel.curves["alpha"].getData()
    assert np.allclose(x, 1 - t) and np.array_equal(y, y_before)
    assert "seed" in panel.log_snr_plot.getPlotItem().getAxis("bottom").labelText
    assert np.allclose(panel.markers["alpha"].getData()[0], 1 - panel.marker_times())
    panel.state.set_flip_time(False)
    assert np.allclose(panel.curves["alpha"].getData()[0], t)


def test_invalid_beta_range_marks_the_field(panel):
    state = panel.state
    state.update("schedule", family="scaled_linear")
    panel.beta_end.setValue(0.0005)
    assert state.errors and state.errors[0][0] == "schedule.beta_end"
    assert panel.beta_end.property("error") is True
    assert "must be greater than beta_start" in panel.beta_end.toolTip()
    assert "beta_end" in panel.error_label.text()
    assert panel.terminal_text() == "invalid schedule"
    panel.beta_end.setValue(0.012)
    assert not state.errors
    assert panel.beta_end.property("error") is False
    assert "6.83 %" in panel.terminal_text() or panel.terminal_text().startswith("0 %")


def test_zero_steps_marks_the_steps_field(panel):
    panel.steps_spin.setValue(0)
    assert "got 0" in dict(panel.state.errors)["sampling.steps"]
    assert panel.steps_spin.property("error") is True
    assert len(panel.markers["alpha"].getData()[0]) == 0
    panel.steps_spin.setValue(30)
    assert panel.steps_spin.property("error") is False
    assert len(panel.markers["alpha"].getData()[0]) == 30


def test_dragging_a_custom_point_changes_the_config_and_curve(panel):
    state = panel.state
    choose(panel.family_combo, "custom")
    assert panel.control_points.isVisible()
    before = panel.curves["log_snr"].getData()[1].copy()
    t, lam = panel.move_control_point(1, 0.3, 2.0)  # off the default straight line 10 - 20 t
    assert (t, lam) == (0.3, 2.0)
    assert state.config.schedule.points == [[0.0, 10.0], [0.3, 2.0], [1.0, -10.0]]
    after = panel.curves["log_snr"].getData()[1]
    assert not np.allclose(before, after)
    core = make_schedule("custom", ztsnr=state.config.schedule.ztsnr, points=((0.0, 10.0), (0.3, 2.0), (1.0, -10.0)))
    tt = torch.linspace(0, 1, 1001, dtype=torch.float64)
    lam_core = core.log_snr(tt).numpy()
    assert np.allclose(after, lam_core[np.isfinite(lam_core)])
    # the constraint keeps the curve monotone: above the first point is not allowed
    t, lam = panel.move_control_point(1, 0.3, 25.0)
    assert lam < 10.0 and not state.errors
    t, lam = panel.move_control_point(1, 1.5, 0.0)
    assert t < 1.0 and not state.errors


def test_dragging_with_the_mouse(panel, qtbot, monkeypatch):
    import pyqtgraph as pg
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    monkeypatch.setitem(pg.CONFIG_OPTIONS, "mouseRateLimit", -1)  # deliver every synthetic move
    choose(panel.family_combo, "custom")
    qtbot.waitExposed(panel)
    plot = panel.log_snr_plot
    vb = plot.getPlotItem().getViewBox()

    def widget_pos(x, y):
        return QPointF(plot.mapFromScene(vb.mapViewToScene(QPointF(x, y))))

    start = widget_pos(0.5, 0.0)  # the middle control point
    end = widget_pos(0.6, -3.0)
    viewport = plot.viewport()
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start.toPoint())
    for k in range(1, 11):  # moves with the left button held
        pos = start + (end - start) * (k / 10)
        move = QMouseEvent(QEvent.Type.MouseMove, pos, QPointF(viewport.mapToGlobal(pos.toPoint())),
                           Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, move)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end.toPoint())
    t, lam = panel.state.config.schedule.points[1]
    assert t == pytest.approx(0.6, abs=0.02) and lam == pytest.approx(-3.0, abs=0.3)
    assert panel.control_points.dragging is None  # released


def test_add_and_remove_custom_points(panel):
    choose(panel.family_combo, "custom")
    panel.add_point()
    pts = panel.state.config.schedule.points
    assert len(pts) == 4 and not panel.state.errors
    assert all(b[0] > a[0] and b[1] < a[1] for a, b in zip(pts, pts[1:]))
    panel.remove_point()
    assert len(panel.state.config.schedule.points) == 3


def test_thumbnail_shows_what_is_left_at_t1(panel):
    state = panel.state
    choose(panel.leak_combo, "low")
    state.update("schedule", family="scaled_linear", ztsnr=False)
    leaky, leaky_low = panel.thumbs["noised"].image.copy(), panel.thumbs["low"].image.copy()
    state.update("schedule", ztsnr=True)
    pure, pure_low = panel.thumbs["noised"].image, panel.thumbs["low"].image
    assert leaky.shape == pure.shape and not np.array_equal(leaky, pure)
    clean = panel.thumbs["clean"].image.astype(float)
    # at 6.83 % the block averages still show the picture; at zero terminal SNR only noise is left
    corr = lambda a: np.corrcoef(a.astype(float).ravel(), clean.ravel())[0, 1]  # noqa: E731
    assert corr(leaky_low) > 0.3 > abs(corr(pure_low))


def test_the_leak_is_visible_on_a_real_digits_image(panel):
    """SD's 6.83 % is an image in the leaked-signal view, and flat grey at zero terminal SNR; the
    view uses the dataset's own first image and the schedule's true alpha_1."""
    from diffstudio.data.registry import load_dataset

    state = panel.state
    digits = load_dataset("digits", n=16)
    state.set_dataset(digits)
    choose(panel.leak_combo, "residual")
    state.update("schedule", family="scaled_linear", ztsnr=False)
    clean = panel.thumbs["clean"].image.astype(float)
    assert np.array_equal(panel.thumbs["clean"].image[..., 0],
                          ((digits.x[0, 0].double().clamp(-1, 1) + 1) * 127.5).round().byte().numpy())
    leaky = panel.thumbs["low"].image.astype(float)
    assert np.corrcoef(leaky.ravel(), clean.ravel())[0, 1] > 0.99  # the picture itself ...
    assert leaky.std() == pytest.approx(clean.std() * 10 * 0.068265, rel=0.05)  # ... at 10 alpha_1
    assert "6.83 %" in panel.thumb_labels["low"].text()
    state.update("schedule", ztsnr=True)
    pure = panel.thumbs["low"].image
    assert np.all(pure == 128) and "nothing" in panel.thumb_labels["low"].text()  # alpha_1 = 0 exactly
    assert not np.array_equal(panel.thumbs["noised"].image, clean)


def test_reference_is_drawn_dashed_and_selectable(panel):
    x, y = panel.curves["ref_alpha"].getData()
    assert np.allclose(y, make_schedule("scaled_linear").alpha(torch.tensor(np.array(x, dtype=np.float64))).numpy())
    assert "6.83 %" in panel.reference_label.text()
    choose(panel.reference_combo, "none")
    assert len(panel.curves["ref_alpha"].getData()[0] or []) == 0


def test_format_percent():
    assert format_percent(0.068265) == "6.83 %"
    assert format_percent(0.0) == "0 %"
    assert format_percent(4.93e-5) == "0.00493 %"


DECODE_TIMEOUT_MS = 30000


def _expected_latent_views(vae: str, image: torch.Tensor, schedule) -> tuple[np.ndarray, np.ndarray]:
    """decode(alpha_1 z + sigma_1 eps) and decode(gain alpha_1 z), computed with engine/latents."""
    from diffstudio.core.parameterization import Coefficients
    from diffstudio.core.terminal import LEAK_GAIN
    from diffstudio.engine.latents import decode_latents, encode_images, load_codec
    from diffstudio.gui.widgets.image_view import ImageView, unit_to_uint8

    codec = load_codec(vae)
    z, _ = encode_images(codec, image[None].float())
    eps = torch.randn(z.shape[1:], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = Coefficients.at(schedule, 1.0)
    alpha, sigma = float(c.alpha), float(c.sigma)
    z1 = alpha * z[0].double() + sigma * eps
    images = decode_latents(codec, torch.stack([z1, LEAK_GAIN * (z1 - sigma * eps)]).float())
    views = []
    for img in images:
        view = ImageView()
        view.set_image(unit_to_uint8(img.numpy()))
        views.append(view.image)
    return views[0], views[1]


def test_with_a_vae_the_thumbnails_show_the_noised_latent_decoded(panel, qtbot, tmp_path, monkeypatch):
    """data.vae set: the image is encoded once (in the background), noised as a latent with the
    schedule and decoded; a schedule edit decodes again without encoding."""
    import threading

    import diffstudio.engine.latents as latents_module
    from diffstudio.data.registry import load_dataset
    from diffstudio.gui.panels.schedule import test_image

    tiny_vae(tmp_path / "vae", scaling=0.6)
    vae = str(tmp_path / "vae")
    state = panel.state
    choose(panel.leak_combo, "residual")
    state.update("schedule", family="scaled_linear", ztsnr=False)
    pixel_noised = panel.thumbs["noised"].image.copy()
    encodes = []
    real_encode = latents_module.encode_images


    def counted(*args, **kwargs):  # the panel's encodes (the expected views below encode on this thread)
        if threading.current_thread() is not threading.main_thread():
            encodes.append(1)
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(latents_module, "encode_images", counted)

    with qtbot.waitSignal(panel.thumbsDecoded, timeout=DECODE_TIMEOUT_MS):
        state.update("data", vae=vae)
    assert len(encodes) == 1
    assert "decoded from its latents of shape 4 × 32 × 32" in panel.thumb_caption.text()
    assert not np.array_equal(panel.thumbs["noised"].image, pixel_noised)
    noised, leaked = _expected_latent_views(vae, test_image(), state.config.schedule.build())
    np.testing.assert_array_equal(panel.thumbs["noised"].image, noised)
    np.testing.assert_array_equal(panel.thumbs["low"].image, leaked)
    assert "in latent space, decoded" in panel.thumb_labels["low"].text()

    with qtbot.waitSignal(panel.thumbsDecoded, timeout=DECODE_TIMEOUT_MS):
        state.update("schedule", ztsnr=True)  # alpha_1 = 0: the decode of pure latent noise
    assert len(encodes) == 1  # only decoded
    noised, _ = _expected_latent_views(vae, test_image(), state.config.schedule.build())
    np.testing.assert_array_equal(panel.thumbs["noised"].image, noised)

    shapes = load_dataset("shapes", resolution=16, channels=3, n=8)  # a dataset's first image is encoded in its turn
    with qtbot.waitSignal(panel.thumbsDecoded, timeout=DECODE_TIMEOUT_MS):
        state.set_dataset(shapes)
    assert len(encodes) == 2 and "latents of shape 4 × 8 × 8" in panel.thumb_caption.text()
    noised, _ = _expected_latent_views(vae, shapes.preview(1)[0].double(), state.config.schedule.build())
    np.testing.assert_array_equal(panel.thumbs["noised"].image, noised)

    state.update("data", vae="")  # back to pixels
    np.testing.assert_array_equal(panel.thumbs["clean"].image.shape[:2], (16, 16))
    assert "latents" not in panel.thumb_caption.text()


def test_a_bad_vae_folder_shows_its_error_in_the_caption(panel, qtbot, tmp_path):
    not_a_vae = tmp_path / "empty"
    not_a_vae.mkdir()
    before = panel.thumbs["noised"].image.copy()
    with qtbot.waitSignal(panel.latents.changed, timeout=DECODE_TIMEOUT_MS,
                          check_params_cb=lambda *a: bool(panel.latents.error)):
        panel.state.update("data", vae=str(not_a_vae))
    caption = panel.thumb_caption.text()
    assert "cannot be used" in caption and "config.json" in caption and "\n" not in caption
    np.testing.assert_array_equal(panel.thumbs["noised"].image, before)  # still the pixels' view
