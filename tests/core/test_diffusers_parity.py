"""Parity with diffusers 0.42, the reference implementation of the published schedules, spacings
and samplers. diffusers is imported once (see the ``diffusers`` fixture in conftest.py)."""

from __future__ import annotations

import ast
import importlib.util
import inspect
from functools import cached_property

import numpy as np
import pytest
import torch

from diffstudio.core.denoiser import Denoiser
from diffstudio.core.grids import discrete_timesteps, sampling_grid
from diffstudio.core.guidance import classifier_free_guidance, rescale_guidance
from diffstudio.core.samplers import sample
from diffstudio.core.schedules import DISCRETE_FAMILIES, DiscreteSchedule, FlowSchedule

F64 = torch.float64
T = 1000

# diffusers' DPM-Solver calls np.array on a tensor in a way numpy 2 deprecates; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
DIFFUSERS_PREDICTION = {"eps": "epsilon", "v": "v_prediction"}


def model_fn(x: torch.Tensor, timestep) -> torch.Tensor:
    """A fixed analytic 'network' of (x, timestep), given to both implementations."""
    ts = torch.as_tensor(timestep).to(x.dtype)
    ts = ts.reshape(-1, *([1] * (x.dim() - 1))) if ts.dim() else ts
    return 0.3 * x + 0.001 * ts * torch.sin(x) - 0.1 * torch.cos(0.5 * x)


def _noise(shape=(2, 3, 8, 8), seed=0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("family", DISCRETE_FAMILIES)
@pytest.mark.parametrize("ztsnr", [False, True])
def test_alphas_cumprod_match_diffusers(diffusers, family, ztsnr):
    """diffusers builds betas and their cumulative product in float32 (1000 products: a few
    float32 ulps of drift); diffstudio builds the same float32 betas and multiplies in float64."""
    ours = DiscreteSchedule(family, ztsnr=ztsnr)
    start, end = ours.betas_range
    ref = diffusers.DDPMScheduler(beta_schedule=family, beta_start=start, beta_end=end,
                                  rescale_betas_zero_snr=ztsnr).alphas_cumprod
    torch.testing.assert_close(ours.alphas_cumprod, ref.to(F64), rtol=0, atol=2e-6)
    if ztsnr:
        assert float(ref[-1]) == 0.0 == float(ours.alphas_cumprod[-1])


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_timesteps_match_ddim_scheduler_for_every_step_count(diffusers, spacing):
    """Every N in 1..1000 (T = 1000). The one difference: for some N (61, 103, ...) diffusers'
    trailing spacing has an extra last entry -1 (t = 0 twice); diffstudio stops after N entries."""
    sched = diffusers.DDIMScheduler(timestep_spacing=spacing)
    assert sched.config.steps_offset == 0
    extra = []
    for steps in range(1, T + 1):
        sched.set_timesteps(steps)
        ref = sched.timesteps.tolist()
        ours = discrete_timesteps(T, steps, spacing).tolist()
        if len(ref) == steps + 1:
            assert spacing == "trailing" and ref[-1] == -1, steps
            extra.append(steps)
            ref = ref[:-1]
        assert ours == ref, steps
    assert (61 in extra and 103 in extra) if spacing == "trailing" else not extra


@pytest.mark.parametrize("steps", [1, 2, 4, 10, 25, 50])
def test_leading_steps_offset_matches_ddim_scheduler(diffusers, steps):
    sched = diffusers.DDIMScheduler(timestep_spacing="leading", steps_offset=1)
    sched.set_timesteps(steps)
    assert sched.timesteps.tolist() == discrete_timesteps(T, steps, "leading", steps_offset=1).tolist()


def test_trailing_where_diffusers_overshoots(diffusers):
    """diffusers' trailing spacing uses np.arange with a float step; for 61 steps that yields 62
    timesteps ending in -1. diffstudio returns the same first 61 and stops."""
    sched = diffusers.DDIMScheduler(timestep_spacing="trailing")
    sched.set_timesteps(61)
    ref = sched.timesteps.tolist()
    assert len(ref) == 62 and ref[-1] == -1
    assert discrete_timesteps(T, 61, "trailing").tolist() == ref[:-1]


def _run_diffusers_ddim(diffusers, schedule, prediction, spacing, steps, x):
    start, end = schedule.betas_range
    sched = diffusers.DDIMScheduler(beta_schedule=schedule.family, beta_start=start, beta_end=end,
                                    prediction_type=prediction, timestep_spacing=spacing,
                                    rescale_betas_zero_snr=schedule.ztsnr, clip_sample=False,
                                    set_alpha_to_one=True)
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        x = sched.step(model_fn(x, t), t, x, eta=0.0).prev_sample
    return x


DDIM_CASES = [
    ("eps", False, "leading"),
    ("eps", False, "trailing"),
    ("v", False, "leading"),
    ("v", False, "trailing"),
    ("v", True, "leading"),
    ("v", True, "trailing"),  # Lin et al.'s recipe: ZTSNR + v + trailing
]


@pytest.mark.parametrize("family", ["scaled_linear", "linear"])
@pytest.mark.parametrize(("param", "ztsnr", "spacing"), DDIM_CASES)
def test_ddim_matches_diffusers(diffusers, family, param, ztsnr, spacing):
    """10 DDIM steps with the same model function. diffusers steps from timestep i to
    ``i - T // N``, which is the next grid point for leading and trailing spacing (N divides T).
    It is *not* for linspace (999 -> 899 although the next timestep is 888): there diffstudio
    follows its grid and diffusers does not, by design (see the next test)."""
    schedule = DiscreteSchedule(family, ztsnr=ztsnr)
    x = _noise()
    ref = _run_diffusers_ddim(diffusers, schedule, DIFFUSERS_PREDICTION[param], spacing, 10, x)
    denoiser = Denoiser(lambda x_t, ts, cond: model_fn(x_t, ts), schedule, param)
    ours = sample("ddim", denoiser, x, sampling_grid(schedule, 10, spacing), schedule)
    # 1e-5, or float32's rounding where this (untrained) eps model drives |x| up to ~40
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-5)


def test_ddim_linspace_steps_off_the_grid(diffusers):
    """The documented difference: with linspace spacing diffusers' DDIM jumps to ``t - T // N``,
    a timestep that is not in its own list, so the runs differ."""
    steps = 10
    timesteps = discrete_timesteps(T, steps, "linspace")
    assert timesteps[1] == 888 and timesteps[0] - T // steps == 899
    schedule = DiscreteSchedule("scaled_linear")
    x = _noise()
    ref = _run_diffusers_ddim(diffusers, schedule, "epsilon", "linspace", steps, x)
    denoiser = Denoiser(lambda x_t, ts, cond: model_fn(x_t, ts), schedule, "eps")
    ours = sample("ddim", denoiser, x, sampling_grid(schedule, steps, "linspace"), schedule)
    assert float((ours - ref).abs().max()) > 1e-3


def _rescale_noise_cfg_reference(diffusers):
    """diffusers' own ``rescale_noise_cfg`` from pipelines/stable_diffusion/pipeline_stable_diffusion.py.
    Importing that module needs ``transformers``; without it, the function's source is read from
    the same file and compiled on its own."""
    try:
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

        return rescale_noise_cfg
    except ImportError:
        spec = importlib.util.find_spec("diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion")
        source = open(spec.origin, encoding="utf-8").read()
        node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "rescale_noise_cfg")
        namespace = {"torch": torch}
        exec(compile(ast.Module(body=[node], type_ignores=[]), spec.origin, "exec"), namespace)  # noqa: S102
        return namespace["rescale_noise_cfg"]


def test_guidance_rescale_matches_diffusers(diffusers):
    ref = _rescale_noise_cfg_reference(diffusers)
    from diffusers.guiders.guider_utils import rescale_noise_cfg as guider_copy

    assert inspect.getsource(guider_copy).split('"""')[-1] == inspect.getsource(ref).split('"""')[-1]
    g = torch.Generator().manual_seed(3)
    for shape in ((2, 4, 8, 8), (3, 16)):
        uncond, cond = torch.randn(shape, generator=g), 1.5 * torch.randn(shape, generator=g) + 0.2
        for scale in (1.0, 5.0, 7.5):
            guided = uncond + scale * (cond - uncond)
            for phi in (0.0, 0.3, 0.7, 1.0):
                expected = ref(guided, cond, guidance_rescale=phi)
                torch.testing.assert_close(rescale_guidance(guided, cond, phi), expected)
                torch.testing.assert_close(classifier_free_guidance(uncond, cond, scale, phi), expected)


def _run_diffusers_dpmpp(diffusers, schedule, prediction, steps, x, timesteps=None):
    start, end = schedule.betas_range
    sched = diffusers.DPMSolverMultistepScheduler(
        beta_schedule=schedule.family, beta_start=start, beta_end=end, prediction_type=prediction,
        algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True, final_sigmas_type="zero",
        timestep_spacing="trailing", rescale_betas_zero_snr=schedule.ztsnr)
    if timesteps is None:
        sched.set_timesteps(steps)
    else:
        sched.set_timesteps(timesteps=list(timesteps))
    for t in sched.timesteps:
        x = sched.step(model_fn(x, t), t, x).prev_sample
    return x, sched


@pytest.mark.parametrize("param", ["eps", "v"])
@pytest.mark.parametrize("spacing", ["trailing", "leading"])
def test_dpmpp_2m_matches_diffusers(diffusers, param, spacing):
    """DPM-Solver++(2M), first order on the first and the last step (lower_order_final, < 15
    steps, final sigma 0). diffusers' own "leading" for this scheduler is a different grid
    (T // (N + 1) apart), so for leading the DDIM timesteps are passed to it explicitly."""
    schedule = DiscreteSchedule("scaled_linear")
    steps = 10
    x = _noise(seed=1)
    timesteps = None if spacing == "trailing" else discrete_timesteps(T, steps, "leading")
    ref, sched = _run_diffusers_dpmpp(diffusers, schedule, DIFFUSERS_PREDICTION[param], steps, x, timesteps)
    assert sched.timesteps.tolist() == discrete_timesteps(T, steps, spacing).tolist()
    denoiser = Denoiser(lambda x_t, ts, cond: model_fn(x_t, ts), schedule, param)
    ours = sample("dpmpp_2m", denoiser, x, sampling_grid(schedule, steps, spacing), schedule)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-5)  # float32 rounding as for DDIM


class _Diffusers2m24(DiscreteSchedule):
    """ZTSNR with diffusers' DPM-Solver convention: the terminal alpha_bar is set to 2**-24
    ('close to 0 without being 0 so first sigma is not inf')."""

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        abar = DiscreteSchedule(self.family, self.num_train_timesteps, self.beta_start, self.beta_end, True).alphas_cumprod.clone()
        abar[-1] = 2.0**-24
        return abar


def test_dpmpp_2m_with_ztsnr_differs_only_by_diffusers_terminal_clamp(diffusers):
    """With rescale_betas_zero_snr diffusers' DPM-Solver replaces alpha_bar_T = 0 by 2**-24, so its
    first step has finite log-SNR and its second step already uses the 2nd-order correction;
    diffstudio keeps alpha_T = 0 exactly (the first step is the exact DDIM step from pure noise and
    the multistep history restarts after it). The documented relation: diffstudio's sampler on
    the schedule with the same clamp reproduces diffusers, and the unclamped run stays close."""
    schedule = DiscreteSchedule("scaled_linear", ztsnr=True)
    x = _noise(seed=2)
    ref, _ = _run_diffusers_dpmpp(diffusers, schedule, "v_prediction", 10, x)
    clamped = _Diffusers2m24("scaled_linear", ztsnr=True)
    grid = sampling_grid(schedule, 10, "trailing")
    run = lambda s: sample("dpmpp_2m", Denoiser(lambda x_t, ts, cond: model_fn(x_t, ts), s, "v"), x, grid, s)  # noqa: E731
    torch.testing.assert_close(run(clamped), ref, rtol=0, atol=1e-5)
    exact = run(schedule)
    assert 1e-4 < float((exact - ref).abs().max()) < 0.05


def test_flow_shift_sigmas_match_flow_match_euler(diffusers):
    """SD3's shift (Esser et al. 2024, eq. 23) in FlowMatchEulerDiscreteScheduler(shift=3): its
    training sigmas are FlowSchedule(3).sigma at t = i / T, and the sampling sigmas for uniform
    t (passed as ``sigmas``) are the shifted grid."""
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    t_train = torch.arange(T, 0, -1, dtype=F64) / T
    torch.testing.assert_close(sched.sigmas.to(F64), FlowSchedule(3.0).sigma(t_train), rtol=0, atol=1e-6)
    for steps in (1, 4, 10, 28):
        sched.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps))
        grid = sampling_grid(FlowSchedule(3.0), steps, "uniform")
        torch.testing.assert_close(sched.sigmas.to(F64), FlowSchedule(3.0).sigma(grid), rtol=0, atol=1e-6)
        torch.testing.assert_close(sched.sigmas.to(F64), sampling_grid(FlowSchedule(1.0), steps, "shifted", shift=3.0),
                                   rtol=0, atol=1e-6)
        torch.testing.assert_close(sched.timesteps.to(F64), FlowSchedule(3.0).timestep(grid[:-1]), rtol=0, atol=1e-3)


def test_flow_match_euler_run_matches(diffusers):
    """An SD3-style velocity model (u = eps - x0, fed timestep 1000 sigma) sampled by diffusers'
    FlowMatchEulerDiscreteScheduler(shift=3) equals diffstudio's Euler (and DDIM: for rectified flow
    they coincide) on the unshifted rectified flow with the shifted grid."""
    steps = 10
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps))
    x = _noise(seed=4)
    ref = x
    for t in sched.timesteps:
        ref = sched.step(model_fn(ref, t), t, ref).prev_sample
    schedule = FlowSchedule(1.0)
    grid = sampling_grid(schedule, steps, "shifted", shift=3.0)
    denoiser = Denoiser(lambda x_t, ts, cond: model_fn(x_t, ts), schedule, "flow")
    for sampler in ("euler", "ddim"):
        torch.testing.assert_close(sample(sampler, denoiser, x, grid, schedule), ref, rtol=0, atol=1e-5)
