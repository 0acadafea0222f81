"""The views of what is left of an image at t = 1."""

import torch

from diffstudio.core.parameterization import Coefficients
from diffstudio.core.schedules import make_schedule
from diffstudio.core.terminal import block_average, leaked_signal, low_frequencies, terminal_sample


def _image_and_noise(size=32):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, size, size, generator=g, dtype=torch.float64) * 2 - 1
    return x0, torch.randn(1, size, size, generator=g, dtype=torch.float64)


def test_leaked_signal_is_alpha1_x0_at_the_gain():
    x0, eps = _image_and_noise()
    c = Coefficients.at(make_schedule("scaled_linear", ztsnr=False), 1.0)
    x1 = terminal_sample(x0, eps, c)
    assert torch.allclose(x1, float(c.alpha) * x0 + float(c.sigma) * eps)
    assert torch.allclose(leaked_signal(x1, eps, c, gain=10.0), 10.0 * float(c.alpha) * x0, atol=1e-12)
    assert abs(float(c.alpha) - 0.068265) < 1e-5  # SD's published terminal signal
    z = Coefficients.at(make_schedule("scaled_linear", ztsnr=True), 1.0)
    assert torch.count_nonzero(leaked_signal(terminal_sample(x0, eps, z), eps, z)) == 0


def test_block_average_keeps_block_means_and_low_frequencies_scale_noise_to_a_third():
    x = torch.arange(16, dtype=torch.float64).reshape(1, 4, 4)
    b = block_average(x, 2)
    assert b[0, 0, 0] == b[0, 1, 1] == (0 + 1 + 4 + 5) / 4 and b.shape == x.shape
    noise = torch.randn(1, 256, 256, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    low, k = low_frequencies(noise)
    assert k == 64
    blocks = low[0, ::k, ::k]
    assert abs(float(blocks.std()) - 1 / 3) < 0.12  # 16 block means of unit noise, stretched by k/3
