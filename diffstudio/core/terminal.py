"""What is left of an image at the last training step, made visible.

At ``t = 1`` the model sees ``x_1 = alpha_1 x0 + sigma_1 eps``. Stable Diffusion's schedule keeps
``alpha_1 = 0.068`` (6.8 % of the image); per pixel that is buried under noise of std ~1, yet the
low frequencies (the image's overall brightness and layout) survive, and a model learns to rely
on them (Lin et al. 2024, section 3.1). Two honest ways to see it:

- :func:`low_frequencies`: average ``x_1`` over k x k blocks (noise std falls by k, the leaked
  signal does not) and stretch so that pure noise has std 1/3 — the picture shows through when
  ``alpha_1 > 0`` and the image is large enough;
- :func:`leaked_signal`: the residual ``x_1 - sigma_1 eps = alpha_1 x0`` at a fixed gain: an image
  whenever anything leaks, exactly flat mid-grey at zero terminal SNR — visible on any image size.
"""

from __future__ import annotations

import torch

from diffstudio.core.parameterization import Coefficients, add_noise

Tensor = torch.Tensor

LEAK_GAIN = 10.0
"""The fixed gain of :func:`leaked_signal`: SD's 6.8 % becomes 68 % contrast."""


def block_average(x: Tensor, k: int) -> Tensor:
    """(C, H, W) -> (C, H', W') with H' = k floor(H / k): each k x k block replaced by its mean
    (the rows and columns that do not fill a block are dropped)."""
    c, h, w = x.shape
    hh, ww = (h // k) * k, (w // k) * k
    blocks = x[:, :hh, :ww].reshape(c, hh // k, k, ww // k, k).mean(dim=(2, 4))
    return blocks.repeat_interleave(k, 1).repeat_interleave(k, 2)


def terminal_sample(x0: Tensor, eps: Tensor, c: Coefficients) -> Tensor:
    """``x_1 = alpha_1 x0 + sigma_1 eps`` for one (C, H, W) image; ``c`` holds the schedule's
    alpha and sigma at t = 1 (``Coefficients.at(schedule, 1.0)``)."""
    return add_noise(x0[None], eps[None], c)[0]


def low_frequencies(x1: Tensor, blocks: int = 4) -> tuple[Tensor, int]:
    """(the k x k block average of ``x1`` times k / 3, k) with k = max(2, side // blocks): pure
    unit noise comes out with std 1/3, so a leaked picture of amplitude a shows at a k / 3."""
    k = max(2, min(x1.shape[-2:]) // blocks)
    return block_average(x1, k) * (k / 3.0), k


def leaked_signal(x1: Tensor, eps: Tensor, c: Coefficients, gain: float = LEAK_GAIN) -> Tensor:
    """``gain (x_1 - sigma_1 eps) = gain alpha_1 x0``: what of the image the last step still
    holds, at a fixed gain (0 everywhere at zero terminal SNR)."""
    return gain * (x1 - c.sigma.reshape(()) * eps)
