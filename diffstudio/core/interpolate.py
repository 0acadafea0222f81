"""1-D interpolation with derivatives, on float64 tensors (used by discrete and custom schedules)."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def _segment(t: Tensor, xs: Tensor) -> Tensor:
    """Index k of the segment ``(xs[k], xs[k+1]]`` holding each t (clamped to the ends).

    A point exactly on a knot belongs to the segment on its left, the one a sampler that walks
    from noise (t=1) to data (t=0) is about to cross."""
    k = torch.searchsorted(xs, t.contiguous(), right=False) - 1
    return k.clamp(0, len(xs) - 2)


def linear_with_slope(t: Tensor, xs: Tensor, ys: Tensor) -> tuple[Tensor, Tensor]:
    """Piecewise-linear interpolation of knots (xs increasing) and its slope, shapes like ``t``."""
    t = torch.as_tensor(t, dtype=xs.dtype)
    k = _segment(t, xs)
    x0, x1, y0, y1 = xs[k], xs[k + 1], ys[k], ys[k + 1]
    h = x1 - x0
    w = (t - x0) / h
    # the weighted form is exact on the knots (w = 0 or 1): a zero-terminal-SNR alpha stays exactly 0
    return y0 * (1.0 - w) + y1 * w, (y1 - y0) / h


def pchip_slopes(xs: Tensor, ys: Tensor) -> Tensor:
    """Fritsch & Carlson (1980) knot derivatives that keep a monotone cubic monotone."""
    h = xs[1:] - xs[:-1]
    delta = (ys[1:] - ys[:-1]) / h
    d = torch.zeros_like(ys)
    if len(xs) == 2:
        return d + delta[0]
    w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    same_sign = delta[:-1] * delta[1:] > 0
    with torch.no_grad():  # where delta is 0 the harmonic mean is not selected below
        harmonic = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
    d[1:-1] = torch.where(same_sign, harmonic, torch.zeros_like(harmonic))
    d[0], d[-1] = _end_slope(h[0], h[1], delta[0], delta[1]), _end_slope(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _end_slope(h0: Tensor, h1: Tensor, m0: Tensor, m1: Tensor) -> Tensor:
    """The shape-preserving three-point end condition (as in SciPy's PCHIP)."""
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if torch.sign(d) != torch.sign(m0):
        return torch.zeros_like(d)
    if torch.sign(m0) != torch.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return d


def monotone_cubic(t: Tensor, xs: Tensor, ys: Tensor, d: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Monotone cubic Hermite interpolation and its derivative; linear beyond the end knots.
    ``d``: the knot slopes, if already computed (``pchip_slopes(xs, ys)``).
    Shapes like ``t``. The slopes are :func:`pchip_slopes` (Fritsch & Carlson 1980, as SciPy's
    ``PchipInterpolator``), so monotone data give a monotone curve."""
    t = torch.as_tensor(t, dtype=xs.dtype)
    d = pchip_slopes(xs, ys) if d is None else d
    k = _segment(t, xs)
    h = xs[k + 1] - xs[k]
    s = ((t - xs[k]) / h).clamp(0.0, 1.0)
    y0, y1, m0, m1 = ys[k], ys[k + 1], h * d[k], h * d[k + 1]
    # Hermite form: y = y0 + s (m0 + s (3 dy - 2 m0 - m1 + s (m0 + m1 - 2 dy))), dy = y1 - y0
    dy_knots = y1 - y0
    c2, c3 = 3 * dy_knots - 2 * m0 - m1, m0 + m1 - 2 * dy_knots
    y = y0 + s * (m0 + s * (c2 + s * c3))
    dy = (m0 + s * (2 * c2 + 3 * s * c3)) / h
    below, above = t < xs[0], t > xs[-1]
    y = torch.where(below, ys[0] + d[0] * (t - xs[0]), y)
    y = torch.where(above, ys[-1] + d[-1] * (t - xs[-1]), y)
    dy = torch.where(below, d[0].expand_as(dy), torch.where(above, d[-1].expand_as(dy), dy))
    return y, dy
