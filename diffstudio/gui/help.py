"""The words of the app: tooltips that teach, plain-language warnings, About and Notation.

Kept in one place so the vocabulary stays consistent (DESIGN.md: t = 0 data, t = 1 noise,
``x_t = alpha_t x0 + sigma_t eps``) and so the panels hold layout and bindings only."""

from __future__ import annotations

from diffstudio.core.choices import (  # the registries describe their own entries
    FAMILY_CHOICES,
    PARAMETERIZATION_CHOICES,
    SAMPLER_CHOICES,
    SPACING_CHOICES,
    TIME_SAMPLING_CHOICES,
    WEIGHTING_CHOICES,
)

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

FAMILY_LABELS = {c.value: c.label for c in FAMILY_CHOICES}

FAMILY_TIPS = {c.value: c.help for c in FAMILY_CHOICES}

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

SPACING_TIPS = {c.value: c.help for c in SPACING_CHOICES}

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

PARAM_LABELS = {c.value: c.label for c in PARAMETERIZATION_CHOICES}

PARAM_TIPS = {c.value: c.help for c in PARAMETERIZATION_CHOICES}

WEIGHTING_LABELS = {c.value: c.label for c in WEIGHTING_CHOICES}

WEIGHTING_TIPS = {c.value: c.help for c in WEIGHTING_CHOICES}

TIME_SAMPLING_TIPS = {c.value: c.help for c in TIME_SAMPLING_CHOICES}

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

NOTE_TRAINING = "A run is training: these settings apply to the next run."

# ------------------------------------------------------------------ sampling

SAMPLER_TIPS = {c.value: c.help for c in SAMPLER_CHOICES}

CFG_TIP = ("Classifier-free guidance scale (Ho & Salimans 2022): 1 is the plain conditional model; "
           "larger follows the class more closely at the cost of diversity. Needs a dataset with classes "
           "and a class-conditional model.")
RESCALE_TIP = ("Guidance rescale φ (Lin et al. 2024, eq. 15–16): rescales the guided prediction to the "
               "conditional one's standard deviation, which prevents over-exposed images at high scales "
               "with zero terminal SNR. 0.7 is the paper's value.")
ORACLE_TIP = ("What a perfect model would sample with these settings, computed from the exact denoiser "
              "(available for 'gaussians8' and 'lighting-flat'). No training needed: it isolates the "
              "effect of the schedule, spacing, prediction and steps.")
