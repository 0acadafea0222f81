"""Sample-quality measures: each measures what its name says, and the quickstart reaches a digits
recognition rate of at least 0.8 in its own metrics log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffstudio.engine import digits_judge as dj
from diffstudio.engine.quality import histogram_distance, lighting_measures, measures_for, score_samples, \
    sliced_wasserstein


def test_digits_judge_recognises_held_out_real_digits_and_not_noise():
    x, y = dj.real_digits()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1347], perm[1347:]
    judge = dj.DigitsJudge(*dj.fit_logistic(x[train], y[train]))
    real = judge.score(x[test], y[test])
    assert real["top1_as_requested"] > 0.93 and real["as_requested"] > 0.85  # sklearn's C=10 fit: 0.97, 0.91
    noise = judge.score(torch.rand(200, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1,
                        np.arange(200) % 10)
    assert noise["as_requested"] < 0.2
    wrong = judge.score(x[test], (y[test] + 1) % 10)
    assert wrong["as_requested"] < 0.05


def test_digits_judge_is_trained_once_and_read_back_from_the_cache():
    dj.digits_judge.cache_clear()
    first = dj.digits_judge()
    assert dj.cache_file().is_file()
    dj.digits_judge.cache_clear()
    again = dj.digits_judge()
    assert torch.equal(first.weight, again.weight) and torch.equal(first.bias, again.bias)
    x, y = dj.real_digits()
    images = x.reshape(-1, 1, 8, 8).repeat_interleave(2, -1).repeat_interleave(2, -2).expand(-1, 3, 16, 16)
    assert again.score(images, y)["as_requested"] == pytest.approx(again.score(x, y)["as_requested"])


def test_sliced_wasserstein_is_zero_for_the_same_cloud_and_grows_with_a_shift():
    a = np.random.default_rng(0).normal(size=(2000, 2))
    assert sliced_wasserstein(a, a) < 1e-9
    near, far = sliced_wasserstein(a + [0.2, 0], a), sliced_wasserstein(a + [1.0, 0], a)
    assert 0.05 < near < far and far == pytest.approx(5 * near, rel=0.05)


def test_lighting_measures_show_a_squeezed_brightness_range():
    rng = np.random.default_rng(0)
    data = np.broadcast_to(rng.uniform(-1, 1, 2000)[:, None, None, None], (2000, 1, 4, 4))
    squeezed = 0.3 * data[:500]
    m = lighting_measures(squeezed, data)
    assert m["brightness_spread_ratio"] == pytest.approx(0.3, rel=0.1)
    assert m["dark_fraction"] == 0 and m["bright_fraction"] == 0
    assert m["data_dark_fraction"] == pytest.approx(0.15, abs=0.03)
    assert lighting_measures(data, data)["brightness_spread_ratio"] == pytest.approx(1.0)


def test_histogram_distance_measures_a_brightness_shift_in_pixel_units():
    rng = np.random.default_rng(0)
    data = rng.uniform(-0.6, 0.6, size=(300, 3, 8, 8))
    assert histogram_distance(data, data) == 0.0
    shifted = data.copy()
    shifted[:, 0] += 0.3  # one channel of three is 0.3 brighter
    assert histogram_distance(shifted, data) == pytest.approx(0.1, abs=0.01)


def test_each_kind_of_data_gets_its_measures():
    assert measures_for("digits", "image") == "digits" and measures_for("moons", "points") == "points"
    assert measures_for("lighting", "image") == "lighting" and measures_for("/some/folder", "image") == "histogram"
    pts = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    assert set(score_samples("moons", "points", pts.numpy(), None, pts)) == {"sliced_wasserstein"}


def test_quickstart_reaches_a_digits_recognition_rate_of_0_8_in_its_metrics(tmp_path):
    """The slow end-to-end check: the quickstart preset at its default step count, as a user runs it."""
    run = tmp_path / "quickstart"
    r = subprocess.run([sys.executable, "-m", "diffstudio", "train", "--preset", "quickstart", "--out", str(run),
                        "--threads", "1"], capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in Path(run, "metrics.jsonl").read_text().splitlines()]
    quality = [row for row in rows if "quality" in row]
    assert quality[-1]["step"] == 1500
    assert quality[-1]["quality"]["digits_recognition"] >= 0.8, quality[-1]
    assert any("validation" in row and row["step"] == 1500 for row in rows)


def test_neither_scikit_learn_nor_pot_is_imported_at_app_start_up():
    code = ("import sys\nimport diffstudio.gui.main_window, diffstudio.engine.trainer, diffstudio.engine.quality\n"
            "import diffstudio.engine.digits_judge\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'ot')))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"
