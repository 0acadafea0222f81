"""The named choices of the subject, each describing itself once: value, label and one-line help.

Schedule families, timestep spacings, samplers, parameterizations, loss weightings and time
samplings are registries of :class:`Choice`. The settings description
(:mod:`diffstudio.engine.settings`), the CLI, the GUI's combo boxes and ``docs/settings.md`` all
read them from here, so a new entry reaches every surface at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    """One allowed value of a setting: ``value`` as stored in configs, ``label`` for people,
    ``help`` one line on what it does and where it comes from."""

    value: str
    label: str
    help: str


def _registry(*items: tuple[str, str, str]) -> tuple[Choice, ...]:
    return tuple(Choice(*item) for item in items)


def values(choices: tuple[Choice, ...]) -> tuple[str, ...]:
    """The stored values of a registry, in order."""
    return tuple(c.value for c in choices)


def find(choices: tuple[Choice, ...], value: str) -> Choice | None:
    """The entry whose value is ``value``, or None."""
    return next((c for c in choices if c.value == value), None)


FAMILY_CHOICES = _registry(
    ("linear", "linear (DDPM)",
     "Ho et al. 2020: betas rise linearly from beta_start to beta_end over T steps. "
     "Leaves about 0.6 % of the image at t = 1."),
    ("scaled_linear", "scaled_linear (Stable Diffusion 1.x / SDXL)",
     "Stable Diffusion 1.x / SDXL: the square roots of the betas rise linearly. "
     "Leaves 6.83 % of the image at t = 1 — the cause of SD's 'uniform lighting'."),
    ("squaredcos_cap_v2", "squaredcos_cap_v2 (improved DDPM cosine)",
     "Nichol & Dhariwal 2021: alpha_bar = cos²((t + 0.008)/1.008 · π/2). "
     "Betas capped at 0.999; beta_start / beta_end are not used."),
    ("sigmoid", "sigmoid (betas on a sigmoid)",
     "Betas follow a sigmoid from beta_start to beta_end (diffusers' 'sigmoid')."),
    ("flow", "flow (rectified flow, SD3)",
     "Rectified flow: x_t = (1 − t)·x0 + t·ε, a straight line from data to noise; "
     "'shift' spends more time at high noise (SD3 uses 3). Terminal SNR is zero by construction."),
    ("cosine", "cosine (continuous)",
     "Continuous cosine: α = cos(πt/2), σ = sin(πt/2). Zero terminal SNR by construction."),
    ("edm", "edm (Karras et al.)",
     "Karras et al. 2022 noise levels σ_VE from sigma_min to sigma_max, spaced by rho, in "
     "variance-preserving form: α = 1/√(1 + σ_VE²)."),
    ("custom", "custom (drag log-SNR points)",
     "Your own schedule: log-SNR control points joined by a monotone cubic. Drag the green "
     "points on the log-SNR plot; the curve must fall as t grows."),
)

SPACING_CHOICES = _registry(
    ("leading", "leading",
     "diffusers' 'leading': 0, T/N, 2T/N, … — never reaches the last timestep, so sampling starts "
     "below t = 1 where the image is still visible (SD's default; Lin et al. show it is flawed)."),
    ("linspace", "linspace",
     "Evenly spaced from 0 to T − 1 with rounding: includes the last timestep."),
    ("trailing", "trailing",
     "diffusers' 'trailing': T − 1, T − 1 − T/N, … — starts at the last timestep (t = 1). "
     "Lin et al. 2024 recommend it ('sgm_uniform' in common UIs)."),
    ("uniform", "uniform", "Uniform in t from 1 down to 0."),
    ("shifted", "shifted", "Uniform in t, then shifted toward high noise by SD3's time shift."),
    ("karras", 'karras',
     "Noise levels spaced like Karras et al. 2022 (rho = 7) over the uniform grid's finite range: many steps at low noise. Under zero terminal SNR the first step still starts at t = 1. With a perfect model at 10 steps it was about as good as uniform t (gaussians8: within 0.01)."),
)

SAMPLER_CHOICES = _registry(
    ("euler", 'Euler',
     "Euler on the probability-flow ODE in σ = σ_t/α_t (Karras et al. 2022; diffusers' EulerDiscreteScheduler, and FlowMatchEulerDiscreteScheduler on rectified flow). One model call per step; its step is DDIM's, so the two give the same images."),
    ("heun", 'Heun (2nd order)',
     "Heun's 2nd-order method (Karras et al. 2022, Algorithm 1; diffusers' HeunDiscreteScheduler): two model calls per step, 2N − 1 in all (the last step is Euler). Per step it was the most accurate ODE sampler at 4–8 steps with a perfect model (4 steps: 0.13 vs 0.21 for DDIM), per model call no better than DPM-Solver++(2M) (7 calls: 0.13; 8 calls of DPM-Solver++: 0.07). From a huge first noise level (squaredcos_cap_v2, σ/α ≈ 2·10⁴) its first step is far off at few steps."),
    ("ddim", 'DDIM (eta = 0)',
     'DDIM with η = 0 (Song et al. 2021): the deterministic sampler most UIs default to; the same step as Euler.'),
    ("dpmpp_2m", 'DPM-Solver++(2M)',
     'DPM-Solver++(2M) (Lu et al. 2022): a multistep ODE solver in log-SNR, one model call per step; with a perfect model closer to the data than DDIM at 4–8 steps (8 steps: 0.07 vs 0.08), equal at 32.'),
    ("ddpm", 'DDPM ancestral',
     "DDPM ancestral sampling (Ho et al. 2020): adds fresh noise each step (an SDE). With the same seed it gives the images of diffusers' DDPMPipeline."),
    ("ddim_eta", 'DDIM (eta > 0)',
     "DDIM with η between 0 and 1: η = 1 is DDPM's posterior; in between, partly stochastic."),
    ("euler_maruyama", 'Euler–Maruyama (reverse SDE)',
     'Euler–Maruyama on the reverse-time SDE (Song et al. 2021); like every sampler, its last step returns the clean estimate x̂0 without adding noise.'),
)

PARAMETERIZATION_CHOICES = _registry(
    ("eps", "eps — predict the noise ε (DDPM, SD 1.x / SDXL)",
     "The network predicts the noise that was added. The image is recovered as "
     "x0 = (x_t − σ·ε̂)/α — impossible where α = 0 (zero terminal SNR)."),
    ("x0", "x0 — predict the clean image",
     "The network predicts the clean image directly. Well defined at pure noise; at low noise it "
     "must copy x_t almost exactly."),
    ("v", "v — velocity α·ε − σ·x0 (SD 2.x, Lin et al.)",
     "The network predicts v = α·ε − σ·x0 (Salimans & Ho 2022): near noise it must make an image, "
     "near data it removes the last noise. Works at every t, zero terminal SNR included."),
    ("flow", "flow — dx_t/dt (rectified flow, SD3, Flux)",
     "The network predicts the velocity dx_t/dt = α'·x0 + σ'·ε of the path from data to "
     "noise. For rectified flow that is ε − x0, a constant along each path."),
    ("score", "score — ∇ log p(x_t) = −ε/σ",
     "The network predicts the score ∇ log p(x_t) = −ε/σ. The target grows without bound as "
     "σ → 0, which is why DDPM trains eps instead."),
)

WEIGHTING_CHOICES = _registry(
    ("uniform", "uniform (plain MSE on the prediction)",
     "Plain mean squared error on whatever the network predicts. What this means for the "
     "image depends on the prediction: uniform eps-MSE weights x0-MSE by SNR."),
    ("min_snr", "min-SNR-γ (Hang et al. 2023)",
     "Weight x0-MSE by min(SNR, γ): low-noise steps, which are easy, stop dominating. "
     "γ = 5 is the paper's default. Converted to any prediction target."),
    ("snr_plus_one", "SNR + 1 (v-loss, on x0)",
     "Weight x0-MSE by SNR + 1 — the same as plain v-MSE, for any prediction target."),
)

TIME_SAMPLING_CHOICES = _registry(
    ("uniform", "uniform", "Every training time t is drawn equally often."),
    ("logit_normal", "logit-normal (SD3)",
     "t = sigmoid(m + s·n), n ~ N(0, 1) (Esser et al. 2024, SD3): more training at "
     "middle noise levels, where the task is hardest. m > 0 shifts it toward noise."),
)
