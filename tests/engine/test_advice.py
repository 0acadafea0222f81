"""Advice from the actual settings (engine/advice.py), shared by the app and the command line."""

import numpy as np
import pytest

from diffstudio.engine import advice
from diffstudio.engine.advice import BrightnessStats, objective_advice, run_advice
from diffstudio.engine.config import Config

SQUEEZED = BrightnessStats(sample_std=0.05, data_std=0.5, samples=64, step=500)


def _cfg(family="scaled_linear", ztsnr=True, param="v", spacing="trailing", **schedule):
    return Config().updated(schedule={"family": family, "ztsnr": ztsnr, **schedule},
                            objective={"parameterization": param}, sampling={"spacing": spacing})


@pytest.mark.parametrize("family,spacing,param", [("scaled_linear", "trailing", "v"),
                                                  ("linear", "trailing", "flow"),
                                                  ("flow", "uniform", "flow"),
                                                  ("cosine", "uniform", "v")])
def test_a_run_with_every_fix_is_never_told_to_use_them(family, spacing, param):
    cfg = _cfg(family, True, param, spacing)
    text = " ".join(run_advice(cfg, SQUEEZED))
    assert "mid-grey" in text and "step 500" in text
    assert "Try" not in text and "trailing" not in text and "zero terminal SNR (" not in text
    assert "already uses zero terminal SNR" in text


def test_a_flawed_run_is_told_exactly_what_it_lacks():
    sd = _cfg(ztsnr=False, param="eps", spacing="leading")
    text = " ".join(run_advice(sd, SQUEEZED))
    assert "zero terminal SNR (this run leaves 6.83 %" in text
    assert "v or flow prediction with it" in text
    assert "'trailing' spacing (sampling starts at t = 0.961" in text  # 25 leading steps of 1000
    only_spacing = _cfg(spacing="leading")
    text = " ".join(run_advice(only_spacing, SQUEEZED))
    assert "trailing" in text and "zero terminal SNR (" not in text and "v or flow" not in text
    eps_ztsnr = _cfg(param="eps")
    assert "v or flow prediction (eps cannot use zero terminal SNR)" in " ".join(run_advice(eps_ztsnr, SQUEEZED))


def test_no_advice_without_a_problem_or_without_data():
    cfg = _cfg(ztsnr=False, param="eps", spacing="leading")
    assert run_advice(cfg, BrightnessStats(0.45, 0.5, 64)) == []  # spread 0.9 of the data's: fine
    assert run_advice(cfg, BrightnessStats(0.05, None, 64)) == []  # nothing to judge against
    assert run_advice(cfg, BrightnessStats(0.05, 0.5, 1)) == []  # one sample has no spread
    stats = BrightnessStats.of(np.array([0.0, 0.1]), np.array([-1.0, 1.0]), step=3)
    assert stats.ratio == pytest.approx(0.05) and stats.step == 3


def test_objective_advice_from_the_settings():
    warnings, notes = objective_advice(_cfg(param="eps"))
    assert warnings == [advice.WARN_EPS_ZTSNR] and notes == []
    warnings, notes = objective_advice(_cfg(ztsnr=False, param="eps"))
    assert warnings == [] and any("6.83 %" in n for n in notes)
    warnings, _ = objective_advice(_cfg("flow", True, "flow", "uniform", shift=3.0))
    assert len(warnings) == 1 and "shift 3" in warnings[0] and "export" in warnings[0]
    assert objective_advice(_cfg("flow", True, "flow", "uniform", shift=1.0)) == ([], [])
    warnings, _ = objective_advice(_cfg(param="score"))
    assert advice.WARN_SCORE_ZTSNR in warnings and advice.WARN_SCORE_SMALL_T in warnings
    bad = _cfg().updated(schedule={"beta_end": -1.0})  # an invalid schedule never raises
    assert objective_advice(bad) == ([], [])
