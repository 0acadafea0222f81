"""The words of the app: tooltips that teach, plain-language warnings, About and Notation.

Kept in one place so the vocabulary stays consistent (DESIGN.md: t = 0 data, t = 1 noise,
``x_t = alpha_t x0 + sigma_t eps``) and so the panels hold layout and bindings only."""

from __future__ import annotations

APP_NAME = "diffstudio"
ORG_NAME = "diffstudio"

ABOUT_HTML = """
<h3>diffstudio</h3>
<p>A desktop studio for training diffusion and flow-matching models where every choice that decides
whether training works &mdash; noise schedule, terminal SNR, prediction target, loss weighting,
sampler, timestep spacing &mdash; is visible and explained by a live plot.</p>
<p>Most of it follows Lin et al. 2024, <i>Common Diffusion Noise Schedules and Sample Steps are
Flawed</i>: zero terminal SNR, v-prediction, trailing timesteps and rescaled classifier-free
guidance.</p>
<p>Python, PyTorch, PySide6 and pyqtgraph. Licensed Apache-2.0.</p>
"""

NOTATION_HTML = """
<h3>Notation used everywhere in diffstudio</h3>
<p><b>Time runs from t = 0 (clean data) to t = 1 (pure noise)</b>, as in diffusers, k-diffusion and
Lin et al. Some texts (and the seed notes) run the other way, noise &rarr; data: View &#9656;
<i>Time axis: noise &rarr; data</i> flips the displayed axis; the numbers never flip.</p>
<p><b>Forward process:</b> x<sub>t</sub> = &alpha;<sub>t</sub>&middot;x<sub>0</sub> +
&sigma;<sub>t</sub>&middot;&epsilon;, with x<sub>0</sub> the clean image and &epsilon; ~ N(0, I).
&alpha;<sub>t</sub> is how much of the image is left, &sigma;<sub>t</sub> how much noise.</p>
<p><b>Signal-to-noise ratio:</b> SNR(t) = &alpha;<sub>t</sub>&sup2; / &sigma;<sub>t</sub>&sup2;;
log-SNR &lambda;(t) = log SNR(t). It falls from +&infin; (data) to its terminal value at t = 1.</p>
<p><b>Terminal signal</b> = &alpha;<sub>1</sub>: what is left of the image at the last step.
Stable Diffusion's schedule leaves 6.83 % of it; the sampler nevertheless starts from pure noise,
so the model never learns to make very dark or very bright images. <b>Zero terminal SNR
(ZTSNR)</b> means &alpha;<sub>1</sub> = 0: the last step really is pure noise.</p>
<p><b>What the network predicts</b> is always p = a<sub>t</sub>&middot;x<sub>0</sub> +
b<sub>t</sub>&middot;&epsilon;; any sampler recovers (x&#770;<sub>0</sub>, &epsilon;&#770;) by solving a
2&times;2 system with determinant det = &alpha;&middot;b &minus; &sigma;&middot;a:</p>
<table border="1" cellspacing="0" cellpadding="4">
<tr><th>prediction</th><th>a<sub>t</sub></th><th>b<sub>t</sub></th><th>det</th><th>note</th></tr>
<tr><td>eps (noise, DDPM)</td><td>0</td><td>1</td><td>&alpha;</td><td>0 at ZTSNR's last step: nothing to recover</td></tr>
<tr><td>x0 (clean image)</td><td>1</td><td>0</td><td>&minus;&sigma;</td><td>never singular where noise exists</td></tr>
<tr><td>v (Salimans &amp; Ho)</td><td>&minus;&sigma;</td><td>&alpha;</td><td>&alpha;&sup2; + &sigma;&sup2;</td><td>never 0: works with ZTSNR</td></tr>
<tr><td>flow (dx<sub>t</sub>/dt)</td><td>&alpha;'</td><td>&sigma;'</td><td>&alpha;&sigma;' &minus; &sigma;&alpha;'</td><td>rectified flow: &epsilon; &minus; x<sub>0</sub>, det = 1</td></tr>
<tr><td>score (&nabla; log p)</td><td>0</td><td>&minus;1/&sigma;</td><td>&minus;&alpha;/&sigma;</td><td>explodes as &sigma; &rarr; 0</td></tr>
</table>
<p>The seed's flow-matching velocity u = x<sub>1</sub> &minus; &epsilon; (its time runs noise &rarr;
data) is &minus;flow here. Loss weights are stated on the error of x<sub>0</sub>: min-SNR-&gamma;
weights x<sub>0</sub>-MSE by min(SNR, &gamma;) whatever the network predicts.</p>
<p><b>Timesteps:</b> a beta schedule over T = 1000 steps maps index i to t = (i + 1)/T;
<i>leading</i>, <i>linspace</i> and <i>trailing</i> spacings mean exactly what diffusers means.
<i>Trailing</i> starts at the last index (t = 1); <i>leading</i> starts below it and skips the
noisiest part.</p>
"""

# ------------------------------------------------------------------ schedules

FAMILY_LABELS = {
    "linear": "linear (DDPM)",
    "scaled_linear": "scaled_linear (Stable Diffusion 1.x / SDXL)",
    "squaredcos_cap_v2": "squaredcos_cap_v2 (improved DDPM cosine)",
    "sigmoid": "sigmoid (betas on a sigmoid)",
    "flow": "flow (rectified flow, SD3)",
    "cosine": "cosine (continuous)",
    "edm": "edm (Karras et al.)",
    "custom": "custom (drag log-SNR points)",
}

FAMILY_TIPS = {
    "linear": "Ho et al. 2020: betas rise linearly from beta_start to beta_end over T steps. "
              "Leaves about 0.6 % of the image at t = 1.",
    "scaled_linear": "Stable Diffusion 1.x / SDXL: the square roots of the betas rise linearly. "
                     "Leaves 6.83 % of the image at t = 1 — the cause of SD's 'uniform lighting'.",
    "squaredcos_cap_v2": "Nichol & Dhariwal 2021: alpha_bar = cos²((t + 0.008)/1.008 · π/2). "
                         "Betas capped at 0.999; beta_start / beta_end are not used.",
    "sigmoid": "Betas follow a sigmoid from beta_start to beta_end (diffusers' 'sigmoid').",
    "flow": "Rectified flow: x_t = (1 − t)·x0 + t·ε, a straight line from data to noise; "
            "'shift' spends more time at high noise (SD3 uses 3). Terminal SNR is zero by construction.",
    "cosine": "Continuous cosine: α = cos(πt/2), σ = sin(πt/2). Zero terminal SNR by construction.",
    "edm": "Karras et al. 2022 noise levels σ_VE from sigma_min to sigma_max, spaced by rho, in "
           "variance-preserving form: α = 1/√(1 + σ_VE²).",
    "custom": "Your own schedule: log-SNR control points joined by a monotone cubic. Drag the green "
              "points on the log-SNR plot; the curve must fall as t grows.",
}

FIELD_TIPS = {
    "family": "The noise schedule: how fast the image fades into noise as t goes from 0 to 1.",
    "beta_start": "Noise added at the first step (t = 1/T). Smaller keeps more detail at low noise.",
    "beta_end": "Noise added at the last step (t = 1). Must be larger than beta_start; larger "
                "destroys more of the image by t = 1.",
    "num_train_timesteps": "T: the number of discrete noise levels the model is trained on "
                           "(1000 in DDPM and Stable Diffusion).",
    "shift": "SD3's time shift: t ↦ shift·t / (1 + (shift − 1)·t). Above 1 the schedule reaches high "
             "noise earlier — larger images need more time at high noise.",
    "sigma_min": "Smallest noise level (in VE units σ/α) at t = 0.",
    "sigma_max": "Largest noise level at t = 1. Large but finite: EDM's terminal SNR is 1/sigma_max², "
                 "not zero, unless you tick zero terminal SNR.",
    "rho": "How the noise levels are spaced between sigma_min and sigma_max; Karras et al. use 7, "
           "which spends more steps at low noise.",
    "ztsnr": "Zero terminal SNR (Lin et al. 2024, Algorithm 1): shift and rescale √ᾱ so that nothing "
             "of the image is left at t = 1 while t = 0 is unchanged. The model then learns to create "
             "the image's overall brightness from pure noise. Use with v or flow prediction.",
    "steps": "N: how many times the sampler calls the model. The markers on the curves are the times "
             "it visits.",
    "spacing": "Which N of the T training timesteps the sampler visits.",
    "sampling_shift": "The shift of the 'shifted' spacing (SD3: 3): more steps at high noise.",
    "reference": "A well-known schedule drawn dashed beside yours, for comparison.",
}

SPACING_TIPS = {
    "leading": "diffusers' 'leading': 0, T/N, 2T/N, … — never reaches the last timestep, so sampling "
               "starts below t = 1 where the image is still visible (SD's default; Lin et al. show it is flawed).",
    "linspace": "Evenly spaced from 0 to T − 1 with rounding: includes the last timestep.",
    "trailing": "diffusers' 'trailing': T − 1, T − 1 − T/N, … — starts at the last timestep (t = 1). "
                "Lin et al. 2024 recommend it ('sgm_uniform' in common UIs).",
    "uniform": "Uniform in t from 1 down to 0.",
    "shifted": "Uniform in t, then shifted toward high noise by SD3's time shift.",
    "karras": "Noise levels spaced like Karras et al. 2022 (rho = 7) over the uniform grid's finite range: "
              "many steps at low noise. Under zero terminal SNR the first step still starts at t = 1. With a "
              "perfect model at 10 steps it was about as good as uniform t (gaussians8: within 0.01).",
}

REFERENCES = {
    # key: (label, make_schedule keyword arguments or None)
    "sd": ("Stable Diffusion (scaled_linear)", {"family": "scaled_linear"}),
    "sd_ztsnr": ("Stable Diffusion + zero terminal SNR", {"family": "scaled_linear", "ztsnr": True}),
    "ddpm": ("DDPM (linear)", {"family": "linear"}),
    "cos": ("improved DDPM cosine", {"family": "squaredcos_cap_v2"}),
    "flow": ("rectified flow", {"family": "flow"}),
    "sd3": ("SD3 rectified flow, shift 3", {"family": "flow", "shift": 3.0}),
    "none": ("none", None),
}

# ------------------------------------------------------------------ objective

PARAM_LABELS = {
    "eps": "eps — predict the noise ε (DDPM, SD 1.x / SDXL)",
    "x0": "x0 — predict the clean image",
    "v": "v — velocity α·ε − σ·x0 (SD 2.x, Lin et al.)",
    "flow": "flow — dx_t/dt (rectified flow, SD3, Flux)",
    "score": "score — ∇ log p(x_t) = −ε/σ",
}

PARAM_TIPS = {
    "eps": "The network predicts the noise that was added. The image is recovered as "
           "x0 = (x_t − σ·ε̂)/α — impossible where α = 0 (zero terminal SNR).",
    "x0": "The network predicts the clean image directly. Well defined at pure noise; at low noise it "
          "must copy x_t almost exactly.",
    "v": "The network predicts v = α·ε − σ·x0 (Salimans & Ho 2022): near noise it must make an image, "
         "near data it removes the last noise. Works at every t, zero terminal SNR included.",
    "flow": "The network predicts the velocity dx_t/dt = α'·x0 + σ'·ε of the path from data to "
            "noise. For rectified flow that is ε − x0, a constant along each path.",
    "score": "The network predicts the score ∇ log p(x_t) = −ε/σ. The target grows without bound as "
             "σ → 0, which is why DDPM trains eps instead.",
}

WEIGHTING_LABELS = {
    "uniform": "uniform (plain MSE on the prediction)",
    "min_snr": "min-SNR-γ (Hang et al. 2023)",
    "snr_plus_one": "SNR + 1 (v-loss, on x0)",
}

WEIGHTING_TIPS = {
    "uniform": "Plain mean squared error on whatever the network predicts. What this means for the "
               "image depends on the prediction: uniform eps-MSE weights x0-MSE by SNR.",
    "min_snr": "Weight x0-MSE by min(SNR, γ): low-noise steps, which are easy, stop dominating. "
               "γ = 5 is the paper's default. Converted to any prediction target.",
    "snr_plus_one": "Weight x0-MSE by SNR + 1 — the same as plain v-MSE, for any prediction target.",
}

TIME_SAMPLING_TIPS = {
    "uniform": "Every training time t is drawn equally often.",
    "logit_normal": "t = sigmoid(m + s·n), n ~ N(0, 1) (Esser et al. 2024, SD3): more training at "
                    "middle noise levels, where the task is hardest. m > 0 shifts it toward noise.",
}

OFFSET_NOISE_TIP = ("Offset noise (Guttenberg 2023): add a random per-channel constant to ε so the "
                    "model learns to change the overall brightness. A workaround for non-zero "
                    "terminal SNR; unnecessary with ZTSNR.")

WEIGHT_CAPTION = (
    "How much each noise level t counts in training: the loss weight times how often t is drawn. "
    "<b>Solid</b>: on the loss you train (MSE on the chosen prediction). <b>Dashed</b>: the same "
    "weighting stated on the error of the clean image x0, w<sub>x0</sub> = w·(det/σ)², which is "
    "comparable across predictions — e.g. uniform eps-MSE is SNR-weighted x0-MSE and almost ignores "
    "the noisiest steps. Log scale; each curve is normalised to its largest value."
)

WARN_EPS_ZTSNR = ("eps-prediction cannot recover the image at the last step: at t=1 the input is pure "
                  "noise, and removing noise from pure noise leaves nothing. Use v or flow prediction.")
WARN_SCORE_ZTSNR = ("score prediction cannot recover the image at the last step either: at t=1 the "
                    "score of pure noise says nothing about the image. Use v or flow prediction.")
WARN_SCORE_SMALL_T = ("score prediction is numerically unstable at small t: its target −ε/σ grows "
                      "without bound as the noise vanishes, so training breaks near clean images "
                      "(why DDPM switched to eps). Prefer eps, v or flow.")
NOTE_FLOW_ON_BETAS = ("flow prediction on a beta schedule is fine: the target is dx_t/dt of this "
                      "schedule and every sampler converts it to (x0, ε).")
NOTE_OFFSET_WITH_ZTSNR = ("offset noise is a workaround for non-zero terminal SNR; with this "
                          "zero-terminal-SNR schedule it is not needed (Lin et al. 2024).")
NOTE_EPS_LEAKY = ("eps works with this schedule, but it leaves {pct} of the image at t=1 while "
                  "sampling starts from pure noise: samples stay close to mid-grey. Zero terminal SNR "
                  "with v-prediction fixes it.")
NOTE_TRAINING = "A run is training: these settings apply to the next run."

# ------------------------------------------------------------------ sampling

# Figures: benchmarks/few_step.py, exact gaussians8 denoiser, v + zero terminal SNR + trailing,
# sliced Wasserstein to the data (docs/benchmarks.md, section 2).
SAMPLER_TIPS = {
    "euler": "Euler on the probability-flow ODE in σ = σ_t/α_t (Karras et al. 2022; diffusers' "
             "EulerDiscreteScheduler, and FlowMatchEulerDiscreteScheduler on rectified flow). One model call "
             "per step; its step is DDIM's, so the two give the same images.",
    "heun": "Heun's 2nd-order method (Karras et al. 2022, Algorithm 1; diffusers' HeunDiscreteScheduler): "
            "two model calls per step, 2N − 1 in all (the last step is Euler). Per step it was the most "
            "accurate ODE sampler at 4–8 steps with a perfect model (4 steps: 0.13 vs 0.21 for DDIM), per "
            "model call no better than DPM-Solver++(2M) (7 calls: 0.13; 8 calls of DPM-Solver++: 0.07). From "
            "a huge first noise level (squaredcos_cap_v2, σ/α ≈ 2·10⁴) its first step is far off at few steps.",
    "ddim": "DDIM with η = 0 (Song et al. 2021): the deterministic sampler most UIs default to; the same step "
            "as Euler.",
    "dpmpp_2m": "DPM-Solver++(2M) (Lu et al. 2022): a multistep ODE solver in log-SNR, one model call per step; "
                "with a perfect model closer to the data than DDIM at 4–8 steps (8 steps: 0.07 vs 0.08), equal at 32.",
    "ddpm": "DDPM ancestral sampling (Ho et al. 2020): adds fresh noise each step (an SDE). With the same seed "
            "it gives the images of diffusers' DDPMPipeline.",
    "ddim_eta": "DDIM with η between 0 and 1: η = 1 is DDPM's posterior; in between, partly stochastic.",
    "euler_maruyama": "Euler–Maruyama on the reverse-time SDE (Song et al. 2021); like every sampler, its last "
                      "step returns the clean estimate x̂0 without adding noise.",
}

CFG_TIP = ("Classifier-free guidance scale (Ho & Salimans 2022): 1 is the plain conditional model; "
           "larger follows the class more closely at the cost of diversity. Needs a dataset with classes "
           "and a class-conditional model.")
RESCALE_TIP = ("Guidance rescale φ (Lin et al. 2024, eq. 15–16): rescales the guided prediction to the "
               "conditional one's standard deviation, which prevents over-exposed images at high scales "
               "with zero terminal SNR. 0.7 is the paper's value.")
ORACLE_TIP = ("What a perfect model would sample with these settings, computed from the exact denoiser "
              "(available for 'gaussians8' and 'lighting-flat'). No training needed: it isolates the "
              "effect of the schedule, spacing, prediction and steps.")
