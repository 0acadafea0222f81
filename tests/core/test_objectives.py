"""Objectives: loss weights (min-SNR-gamma for every parameterization), time sampling, offset noise,
and the loss itself against an exact denoiser."""

from __future__ import annotations

import math

import pytest
import torch

from diffstudio.core.denoiser import oracle_model
from diffstudio.core.objectives import (
    Objective,
    diffusion_loss,
    loss_weight,
    sample_noise,
    sample_times,
)
from diffstudio.core.parameterization import PARAMETERIZATIONS, Coefficients, determinant
from diffstudio.core.schedules import make_schedule

F64 = torch.float64
GAMMA = 5.0

VP_ZTSNR = {
    "scaled_linear+ztsnr": make_schedule("scaled_linear", ztsnr=True),
    "cosine": make_schedule("cosine"),
    "edm+ztsnr": make_schedule("edm", ztsnr=True),
}


def _times(schedule) -> torch.Tensor:
    """Training times including the terminal t = 1 (SNR = 0 under ZTSNR)."""
    if schedule.is_discrete:
        return schedule.index_to_t(torch.arange(schedule.num_train_timesteps))
    return torch.linspace(1e-5, 1.0, 1001, dtype=F64)


@pytest.mark.parametrize("name", sorted(VP_ZTSNR))
@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_min_snr_weight_is_finite_everywhere_and_matches_closed_forms(name, param):
    s = VP_ZTSNR[name]
    t = _times(s)
    c = Coefficients.at(s, t)
    w = loss_weight("min_snr", param, c, gamma=GAMMA)
    assert bool(torch.isfinite(w).all()) and bool((w >= 0).all())
    snr = c.alpha**2 / c.sigma**2
    assert float(snr[-1]) == 0.0  # the terminal step is pure noise
    clipped = torch.clamp(snr, max=GAMMA)
    interior = slice(0, -1)
    closed = {  # Hang et al. 2023, Table 1 (VP)
        "eps": clipped / snr,
        "v": clipped / (snr + 1),
        "x0": clipped,
        # the generic rule: w_x0 (sigma/det)^2
        "flow": clipped * (c.sigma / determinant("flow", c)) ** 2,
        "score": clipped * (c.sigma / determinant("score", c)) ** 2,
    }[param]
    torch.testing.assert_close(w[interior], closed[interior], rtol=1e-9, atol=1e-12)
    terminal = {"eps": 1.0, "v": 0.0, "x0": 0.0, "flow": 0.0, "score": 1.0}[param]  # limits at SNR -> 0
    assert float(w[-1]) == pytest.approx(terminal, abs=1e-12)


@pytest.mark.parametrize("name", sorted(VP_ZTSNR))
def test_snr_plus_one_is_the_v_loss(name):
    """w_x0 = SNR + 1 on x0-MSE is exactly plain v-MSE for a VP schedule — including the
    terminal pure-noise step, the one ZTSNR exists to train."""
    s = VP_ZTSNR[name]
    c = Coefficients.at(s, _times(s))
    torch.testing.assert_close(loss_weight("snr_plus_one", "v", c), torch.ones_like(c.alpha), rtol=1e-9, atol=0)
    w_x0 = loss_weight("snr_plus_one", "x0", c)
    torch.testing.assert_close(w_x0, (c.alpha**2 / c.sigma**2 + 1).clamp(max=1e4), rtol=1e-9, atol=0)
    assert float(w_x0[-1]) == 1.0
    w_eps = loss_weight("snr_plus_one", "eps", c, max_weight=1e4)
    assert bool(torch.isfinite(w_eps).all()) and float(w_eps[-1]) == 1e4  # 1/alpha^2, capped


def test_weights_at_the_clean_end():
    """t = 0 (SNR = inf) is never trained on, but the weights stay finite and take their limits."""
    c = Coefficients.at(make_schedule("cosine"), torch.zeros(1, dtype=F64))
    assert float(loss_weight("min_snr", "x0", c, gamma=GAMMA)) == GAMMA
    assert float(loss_weight("min_snr", "eps", c)) == 0.0
    assert float(loss_weight("min_snr", "v", c)) == 0.0


def test_uniform_weight_and_no_gradient_through_weights():
    c = Coefficients.at(make_schedule("flow"), torch.linspace(0.1, 1, 5, dtype=F64))
    for p in PARAMETERIZATIONS:
        assert torch.equal(loss_weight("uniform", p, c), torch.ones(5, dtype=F64))
        assert not loss_weight("min_snr", p, c).requires_grad


def test_logit_normal_median():
    """Esser et al. 2024: t = sigmoid(m + s n) has median sigmoid(m). The sample median's standard
    error is 1 / (2 f(median) sqrt(n)); with n = 20000 it is below 0.002, the tolerance is 0.008."""
    flow = make_schedule("flow")
    for m in (0.0, 1.0, -0.5):
        g = torch.Generator().manual_seed(1)
        t = sample_times(flow, 20000, g, "logit_normal", m=m, s=1.0)
        assert float(t.median()) == pytest.approx(1 / (1 + math.exp(-m)), abs=0.008)
        assert float(t.min()) > 0 and float(t.max()) <= 1


def test_discrete_time_sampling_is_on_the_index_grid():
    s = make_schedule("scaled_linear")
    for mode in ("uniform", "logit_normal"):
        t = sample_times(s, 50000, torch.Generator().manual_seed(2), mode)
        i = t * 1000
        torch.testing.assert_close(i, i.round(), rtol=0, atol=1e-9)  # t = (i + 1) / T
        assert float(i.min()) >= 1 and float(i.max()) <= 1000
    t = sample_times(s, 50000, torch.Generator().manual_seed(3), "uniform")
    assert set((t * 1000).round().long().tolist()) == set(range(1, 1001))  # both ends reached
    assert float(t.mean()) == pytest.approx(1001 / 2000, abs=0.005)  # 4 standard errors
    t_ln = sample_times(s, 20001, torch.Generator().manual_seed(4), "logit_normal", m=0.5)
    # median index floor(1000 sigmoid(0.5)) + 1 = 623, up to sampling error
    assert abs(float(t_ln.median()) * 1000 - 623) <= 6


def test_continuous_uniform_times_and_generator_reproducibility():
    s = make_schedule("cosine")
    t1 = sample_times(s, 1000, torch.Generator().manual_seed(5))
    t2 = sample_times(s, 1000, torch.Generator().manual_seed(5))
    assert torch.equal(t1, t2) and t1.dtype == F64
    assert float(t1.min()) >= 1e-5 and float(t1.max()) <= 1


def test_offset_noise():
    x0 = torch.zeros(64, 3, 16, 16)
    plain = sample_noise(x0, torch.Generator().manual_seed(0))
    assert torch.equal(plain, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    off = sample_noise(x0, torch.Generator().manual_seed(0), offset=0.5)
    assert off.shape == x0.shape and off.dtype == x0.dtype
    # the per-channel mean carries the shared offset: variance 0.25 + 1/256 instead of 1/256
    channel_means = off.mean(dim=(2, 3))
    assert float(channel_means.var()) == pytest.approx(0.25 + 1 / 256, rel=0.2)
    assert float(plain.mean(dim=(2, 3)).var()) == pytest.approx(1 / 256, rel=0.2)
    flat = torch.zeros(8, 2)
    assert torch.equal(sample_noise(flat, torch.Generator().manual_seed(0), offset=0.5),
                       sample_noise(flat, torch.Generator().manual_seed(0)))  # 4-D images only


def test_objective_validation():
    assert Objective("v", "min_snr").parameterization.value == "v"
    for kwargs, field in (({"gamma": 0}, "gamma"), ({"logit_std": 0}, "logit_std"), ({"offset_noise": -1}, "offset_noise")):
        with pytest.raises(ValueError, match=field):
            Objective("eps", **kwargs)
    with pytest.raises(ValueError):
        Objective(parameterization="velocity")


class _Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))
        self.b = torch.nn.Parameter(torch.tensor(0.1))

    def forward(self, x, timestep, cond):
        return self.w * x + self.b * torch.tanh(timestep / 500).reshape(-1, *([1] * (x.dim() - 1)))


@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_diffusion_loss_is_differentiable(param):
    model = _Scale()
    s = make_schedule("scaled_linear", ztsnr=param in ("v", "x0", "flow"))
    obj = Objective(param, "min_snr", time_sampling="logit_normal", offset_noise=0.1)
    x0 = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    loss = diffusion_loss(model, s, obj, x0, generator=torch.Generator().manual_seed(1))
    assert loss.dim() == 0 and bool(torch.isfinite(loss))
    loss.backward()
    assert model.w.grad is not None and bool(torch.isfinite(model.w.grad)) and float(model.w.grad.abs()) > 0


OBJ_SCHEDULES = {
    "scaled_linear": make_schedule("scaled_linear"),
    "linear+ztsnr": make_schedule("linear", ztsnr=True),
    "flow": make_schedule("flow"),
    "cosine": make_schedule("cosine"),
    "edm": make_schedule("edm"),
}


@pytest.mark.parametrize("name", sorted(OBJ_SCHEDULES))
@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_exact_denoiser_of_a_constant_dataset_has_zero_loss(name, param):
    """Every x0 equal to one constant image: E[x0 | x_t] is that image, so the oracle's loss is 0
    up to rounding (every sample has its own t: the oracle works per sample). The model is fed
    float32 timesteps, so the oracle answers at t within float32 rounding: 'zero' is below 1e-9
    of the loss of a model that predicts 0."""
    s = OBJ_SCHEDULES[name]
    const = torch.full((1, 2, 3, 3), 0.8, dtype=F64)
    model = oracle_model(lambda x, c: const.expand_as(x), s, param)
    x0 = const.expand(32, -1, -1, -1).clone()
    for weighting in ("uniform", "min_snr"):
        obj = Objective(param, weighting)
        loss = diffusion_loss(model, s, obj, x0, generator=torch.Generator().manual_seed(7))
        zero = diffusion_loss(lambda x, ts, c: torch.zeros_like(x), s, obj, x0, generator=torch.Generator().manual_seed(7))
        assert float(loss) <= 1e-9 * float(zero) and float(zero) > 0


@pytest.mark.parametrize("name", ["scaled_linear", "flow", "cosine"])
@pytest.mark.parametrize("param", ["eps", "v", "x0"])
def test_oracle_loss_matches_the_analytic_value(name, param):
    """Gaussian pixels x0 ~ N(mu, s^2): the exact denoiser's x0-MSE at t is the posterior variance
    s^2 sigma^2 / (alpha^2 s^2 + sigma^2), and the p-MSE is (det/sigma)^2 times that. With 128
    samples of 512 pixels the Monte-Carlo error is about 1%; the tolerance is 5%."""
    mu, sd = 0.3, 0.8
    s = OBJ_SCHEDULES[name]
    obj = Objective(param, "min_snr")

    def x0_fn(x, c):
        return mu + c.alpha * sd**2 / (c.alpha**2 * sd**2 + c.sigma**2) * (x - c.alpha * mu)

    x0 = mu + sd * torch.randn(128, 1, 16, 32, generator=torch.Generator().manual_seed(8), dtype=F64)
    loss = diffusion_loss(oracle_model(x0_fn, s, param), s, obj, x0, generator=torch.Generator().manual_seed(9))
    t = sample_times(s, 128, torch.Generator().manual_seed(9))  # the same draws as inside the loss
    c = Coefficients.at(s, t)
    post_var = sd**2 * c.sigma**2 / (c.alpha**2 * sd**2 + c.sigma**2)
    expected = loss_weight("min_snr", param, c) * (determinant(param, c) / c.sigma) ** 2 * post_var
    assert float(loss) == pytest.approx(float(expected.mean()), rel=0.05)


def test_loss_feeds_float32_timesteps_whatever_the_data_dtype():
    """bfloat16 has an 8-bit mantissa: timestep 999 would become 1000. The model always gets
    float32 timesteps (as the samplers give it), on the data's device."""
    s = make_schedule("scaled_linear")
    seen = {}

    def model(x, timestep, cond):
        seen["dtype"], seen["device"], seen["ts"] = timestep.dtype, timestep.device, timestep.clone()
        return torch.zeros_like(x)

    x0 = torch.zeros(256, 1, 2, 2, dtype=torch.bfloat16)
    loss = diffusion_loss(model, s, Objective("v"), x0, generator=torch.Generator().manual_seed(0))
    assert seen["dtype"] == torch.float32 and seen["device"] == x0.device and bool(torch.isfinite(loss))
    torch.testing.assert_close(seen["ts"], seen["ts"].round(), rtol=0, atol=0)  # exact integer indices
    assert float(seen["ts"].max()) > 990


def test_times_and_coefficients_live_on_the_cpu_in_float64():
    """Schedules keep their knots on the CPU; times are drawn on the data's device with its
    generator and evaluated on the CPU, so a CUDA/MPS batch never meets CPU knots."""
    s = make_schedule("scaled_linear")
    t = sample_times(s, 16, torch.Generator().manual_seed(0))
    assert t.device.type == "cpu" and t.dtype == F64
    c = Coefficients.at(s, t.float().requires_grad_())
    assert c.alpha.dtype == F64 and c.alpha.device.type == "cpu" and not c.alpha.requires_grad
