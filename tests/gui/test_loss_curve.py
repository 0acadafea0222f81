"""The live loss curve's view: it follows the data with ranges that change rarely, and a hand
zoom stops the following until Fit."""

from __future__ import annotations

import numpy as np
import pytest

from diffstudio.gui.runs_curve import LossCurve, follow_range, nice_ceiling


@pytest.mark.parametrize("value,expected", [(1, 1), (1.01, 1.5), (120, 150), (2001, 3000), (0.004, 0.005),
                                            (7600, 10000), (0, 1)])
def test_nice_ceiling(value, expected):
    assert nice_ceiling(value) == pytest.approx(expected)


def test_follow_range_keeps_the_range_until_the_data_need_a_new_one():
    first = follow_range(None, 0.2, 1.0)
    assert first == pytest.approx((0.12, 1.08))
    assert follow_range(first, 0.3, 0.9) == first  # still inside, still fills it: unchanged
    assert follow_range(first, 0.1, 0.9) != first  # left it below
    tight = follow_range(first, 0.50, 0.52)  # fills less than a third: shrink
    assert tight[0] < 0.50 and tight[1] > 0.52 and tight[1] - tight[0] < 0.1


def view(curve):
    (x0, x1), (y0, y1) = curve.plot.getViewBox().viewRange()
    return x0, x1, y0, y1


def test_curve_follows_a_growing_run_and_a_hand_zoom_stops_it(qtbot):
    curve = LossCurve()
    qtbot.addWidget(curve)
    steps = np.arange(1, 101)
    losses = 1.0 / np.sqrt(steps)
    curve.add(steps[:50], losses[:50])
    curve.redraw()
    x0, x1, y0, y1 = view(curve)
    assert x0 == pytest.approx(0) and x1 >= 50 and y0 <= losses[49] and y1 >= losses[0]
    curve.add(steps[50:60], losses[50:60])
    curve.redraw()
    assert view(curve) == pytest.approx((x0, x1, y0, y1))  # the new points fit: the axes stay put
    curve.add(steps[60:], losses[60:])
    curve.redraw()
    assert view(curve)[1] >= 100  # the step axis grew
    curve.plot.getViewBox().sigRangeChangedManually.emit([True, True])  # as a mouse zoom does
    curve.plot.getViewBox().setRange(xRange=(10, 20), padding=0)
    curve.add([101, 300], [0.09, 5.0])
    curve.redraw()
    assert view(curve)[:2] == pytest.approx((10, 20)) and not curve.following
    curve.fit_button.click()
    x0, x1, y0, y1 = view(curve)
    assert curve.following and x1 >= 300 and y1 >= 5.0 and y0 <= 0.09


def test_log_scale_fits_in_log_coordinates(qtbot):
    curve = LossCurve()
    qtbot.addWidget(curve)
    curve.add([1, 2, 3], [1.0, 0.1, 0.01])
    curve.redraw()
    curve.log_box.setChecked(True)
    _, _, y0, y1 = view(curve)
    assert y0 <= -2 and 0 <= y1 < 1  # log10 of the losses


def test_one_point_gets_a_readable_range_and_clear_follows_again(qtbot):
    curve = LossCurve()
    qtbot.addWidget(curve)
    curve.add([1], [0.25])
    curve.redraw()
    _, _, y0, y1 = view(curve)
    assert y0 < 0.25 < y1 and y1 - y0 >= 0.0125  # 5 % of the loss, not 1e-13
    curve.plot.getViewBox().sigRangeChangedManually.emit([True, True])
    curve.plot.getViewBox().setRange(xRange=(600, 700), padding=0)
    curve.clear()
    curve.add([10, 20, 30], [0.5, 0.4, 0.3])
    curve.redraw()
    x0, x1, y0, y1 = view(curve)
    assert curve.following and x0 == pytest.approx(0) and 30 <= x1 < 600 and y0 <= 0.3 and y1 >= 0.5
