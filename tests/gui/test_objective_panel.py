"""The objective editor: bindings, plain-language warnings and the effective-weight plot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffstudio.core.parameterization import Coefficients
from diffstudio.core.schedules import make_schedule
from diffstudio.core.objectives import time_density
from diffstudio.engine import advice
from diffstudio.gui.panels.objective import ObjectivePanel

from tests.helpers import choose


@pytest.fixture
def panel(qtbot, state):
    panel = ObjectivePanel(state)
    panel.resize(900, 420)
    qtbot.addWidget(panel)
    panel.show()
    return panel


def test_eps_with_ztsnr_warns_and_v_clears_it(panel):
    state = panel.state
    state.update("schedule", family="scaled_linear", ztsnr=True)
    choose(panel.param_combo, "eps")
    assert state.config.objective.parameterization == "eps"
    assert panel.warning_label.isVisible()
    assert advice.SINGULAR_AT_T1["eps"].split(":")[0] in panel.warning_label.text()
    assert "removing noise from pure noise leaves nothing" in panel.warning_label.text()
    choose(panel.param_combo, "v")
    assert not panel.warning_label.isVisible() and panel.warnings() == []


def test_eps_warning_follows_the_schedule(panel):
    state = panel.state
    state.update("objective", parameterization="eps")
    state.update("schedule", family="scaled_linear", ztsnr=False)
    assert not panel.warning_label.isVisible()
    assert panel.note_label.isVisible() and "6.83 %" in panel.note_label.text()
    state.update("schedule", family="flow")  # zero terminal SNR by construction
    assert panel.warning_label.isVisible()


def test_flow_with_a_shift_is_warned_about(panel):
    state = panel.state
    state.update("objective", parameterization="flow")
    state.update("schedule", family="flow", shift=3.0)
    assert panel.warning_label.isVisible() and "shift 3" in panel.warning_label.text()
    assert panel.warnings() == advice.objective_advice(state.config)[0]  # the engine's advice, as is
    state.update("schedule", shift=1.0)
    assert not panel.warning_label.isVisible()


def test_score_warns_about_small_t_and_flow_on_betas_is_fine(panel):
    state = panel.state
    state.update("schedule", family="linear", ztsnr=False)
    choose(panel.param_combo, "score")
    assert any("unstable at small t" in w for w in panel.warnings())
    choose(panel.param_combo, "flow")
    assert panel.warnings() == []
    assert "flow prediction on a beta schedule is fine" in panel.note_label.text()


def test_training_note(panel):
    assert not panel.training_label.isVisible()
    panel.state.set_training(True)
    assert panel.training_label.isVisible()
    assert "next run" in panel.training_label.text()


def test_weighting_controls_and_visibility(panel):
    state = panel.state
    choose(panel.weighting_combo, "min_snr")
    assert state.config.objective.weighting == "min_snr" and panel.gamma.isVisible()
    panel.gamma.setValue(2.0)
    assert state.config.objective.gamma == 2.0
    choose(panel.weighting_combo, "uniform")
    assert not panel.gamma.isVisible()
    choose(panel.time_combo, "logit_normal")
    assert panel.logit_mean.isVisible()
    panel.logit_mean.setValue(0.5)
    assert state.config.objective.logit_mean == 0.5
    panel.offset_noise.setValue(0.1)
    assert state.config.objective.offset_noise == 0.1
    assert "not needed" in panel.note_label.text()  # offset noise with a ZTSNR schedule


def test_weight_curve_in_x0_terms(panel):
    """Uniform eps-MSE is SNR-weighted x0-MSE; min-SNR-gamma is min(SNR, gamma) on x0 for any target."""
    state = panel.state
    state.update("schedule", family="scaled_linear", ztsnr=False)
    state.update("objective", parameterization="eps", weighting="uniform", time_sampling="uniform")
    t, w_p, w_x0 = panel.weight_curves()
    schedule = make_schedule("scaled_linear")
    snr = schedule.snr(torch.from_numpy(t)).numpy()
    assert np.allclose(w_p, 1.0)
    assert np.allclose(w_x0, snr / snr.max())
    for param in ("eps", "v", "x0", "flow"):
        state.update("objective", parameterization=param, weighting="min_snr", gamma=5.0)
        _, _, w_x0 = panel.weight_curves()
        expected = np.minimum(snr, 5.0)
        assert np.allclose(w_x0, expected / expected.max(), rtol=1e-6), param
    item = panel.curves["weight_x0"]  # log-y plot: getData() is log10, xData / yData the values
    assert np.allclose(item.xData, t) and np.allclose(item.yData, w_x0)


def test_logit_normal_density():
    t = (torch.arange(100000, dtype=torch.float64) + 0.5) / 100000
    for m, s in ((0.0, 1.0), (0.5, 0.7)):
        assert float(time_density(t, "logit_normal", m, s).mean()) == pytest.approx(1.0, abs=1e-3)
    assert torch.all(time_density(t, "uniform") == 1)
    c = Coefficients.at(make_schedule("flow"), t)
    assert c.alpha.shape == t.shape
