"""The run configuration: one tree of typed dataclasses that round-trips to TOML or JSON.

``Config.validate()`` returns ``[(field, message)]`` with dotted field names ("schedule.beta_end"),
so the CLI can print them and the GUI can mark the very widget that is wrong."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import tomli_w

from diffstudio.core.choices import (
    FAMILY_CHOICES,
    PARAMETERIZATION_CHOICES,
    SAMPLER_CHOICES,
    SPACING_CHOICES,
    TIME_SAMPLING_CHOICES,
    WEIGHTING_CHOICES,
    Choice,
)
from diffstudio.core.grids import CONTINUOUS_SPACINGS, DISCRETE_SPACINGS
from diffstudio.core.objectives import TIME_SAMPLINGS, WEIGHTINGS, Objective
from diffstudio.core.parameterization import PARAMETERIZATIONS
from diffstudio.core.samplers import SAMPLERS
from diffstudio.core.schedules import DISCRETE_FAMILIES, FAMILIES, Schedule, ScheduleError, make_schedule
from diffstudio.engine.settings import SEED_MAX, register_root, setting


class ConfigError(ValueError):
    """A configuration is invalid. ``errors`` lists ``(field, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))


def _builtin_names() -> list[str]:
    from diffstudio.data.registry import known_names

    return known_names()


_DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"
MODEL_PRESETS = (
    Choice("tiny", "tiny", "Smallest UNet (32-64 channels, no attention): trains in minutes on a CPU."),
    Choice("small", "small", "2 layers per block, 64-256 channels, attention at 8 px and below."),
    Choice("base", "base", "2 layers per block, 128-256 channels, attention at 16 px and below (GPU)."),
)
PRECISIONS = (
    Choice("auto", "auto", "bf16 for image models on a CPU with native bf16 (AVX512-BF16/AMX), measured 1.25x "
           "(8 px) to 2.5x (128 px) faster at the same quality; fp32 for point data and elsewhere."),
    Choice("fp32", "fp32", "Full precision everywhere."),
    Choice("bf16", "bf16 autocast", "bfloat16 autocast for the forward pass and loss (CUDA, or a CPU with bf16)."),
    Choice("fp16", "fp16 autocast", "float16 autocast with a gradient scaler (CUDA only)."),
)
LR_SCHEDULES = (
    Choice("cosine", "cosine", "After warm-up, cosine decay to 10 % of the learning rate at the last step."),
    Choice("constant", "constant", "After warm-up, the learning rate stays constant."),
)
VAL_MODELS = (
    Choice("ema", "EMA weights", "Validate the exponential moving average of the weights (what previews and export "
           "use); the raw weights when EMA is off."),
    Choice("raw", "raw weights", "Validate the weights the optimizer is training."),
    Choice("both", "EMA and raw", "Validate both (twice the cost); each gets its own rows."),
)
CHANNELS = (Choice(1, "1 (grayscale)", "One channel."), Choice(3, "3 (RGB)", "Three channels."))  # type: ignore[arg-type]


@dataclass
class DataConfig:
    """``data.*``: where the images (or points) come from and how they are prepared; each field's ``setting`` describes it."""
    source: str = setting("digits", "Dataset", "A built-in dataset name or a folder of images (sub-folders "
                          "are classes).", "Dataset", live=True, suggestions=_builtin_names)
    resolution: int | None = setting(None, "Resolution", "Side of the square images the model trains on.",
                                     "Dataset", unit="px", ge=4, le=1024, none_label="the dataset's own", live=True)
    channels: int | None = setting(None, "Channels", "1 (grayscale) or 3 (RGB).", "Dataset", choices=CHANNELS,
                                   none_label="the dataset's own", live=True)
    labels: bool = setting(True, "Use class labels", "Use the dataset's class labels (sub-folders of a folder) "
                           "for class-conditional training.", "Dataset")
    hflip: bool = setting(False, "Random horizontal flip", "Flip each training image left-right with "
                          "probability 1/2 (on the device).", "Augmentation")
    num_points: int | None = setting(None, "Count", "Number of points of a 2-D toy, or the first N images of a "
                                     "folder.", "Dataset", ge=1, le=10_000_000, none_label="all / the toy's "
                                     "default (8192)", advanced=True)
    memory_budget_mb: float = setting(0.0, "Memory budget", "Data held on the training device; 0: auto (25 % of free "
                                      "CUDA memory; CPU: 10 % of available RAM, at most 512 MiB). A folder larger "
                                      "than this streams from its on-disk uint8 cache.", "Loading", unit="MiB",
                                      ge=0.0, le=1e9, advanced=True)
    val_fraction: float = setting(0.05, "Validation share", "Share of the dataset held out for validation (never "
                                  "trained on); 0 trains on everything and turns validation off.", "Validation",
                                  ge=0.0, le=0.5)
    val_seed: int = setting(0, "Validation split seed", "Seed of the fixed split into training and validation "
                            "items (and of the validation noise), independent of the run's seed.", "Validation",
                            ge=0, le=SEED_MAX, advanced=True)
    vae: str = setting("", "VAE (latent diffusion)", "A diffusers AutoencoderKL folder (or a pipeline folder with "
                       "vae/): the images are encoded once into a latent cache and the model trains on latents; "
                       "previews decode to images. Nothing is downloaded. Empty: train on pixels.", "Latents")


@dataclass
class ModelConfig:
    """``model.*``: the network's size, its conditioning and where its weights start."""
    preset: str = setting("tiny", "Model size", "The UNet preset for images (2-D toys always use the MLP).",
                          "Architecture", choices=MODEL_PRESETS)
    class_conditional: bool = setting(True, "Class-conditional", "Condition on the class label when the data "
                                      "has labels (needed for classifier-free guidance).", "Conditioning")
    cond_drop_prob: float = setting(0.1, "Label dropout", "Probability of training a sample without its label, "
                                    "so classifier-free guidance works.", "Conditioning", ge=0.0, lt=1.0)
    init_from: str = setting("", "Start from a model", "Fine-tune a pretrained model: a diffusers UNet2DModel "
                             "folder, a pipeline folder with unet/, or a diffstudio run, checkpoint or export "
                             "(safetensors only). Its config sets the architecture (model size is then ignored); "
                             "new class-embedding rows start as the model's unconditional one. Empty: train from "
                             "scratch.", "Initialisation")
    mlp_width: int = setting(128, "MLP width", "Hidden units per layer of the 2-D toys' MLP.", "Architecture",
                             ge=1, le=4096, advanced=True)
    mlp_depth: int = setting(3, "MLP depth", "Hidden layers of the 2-D toys' MLP.", "Architecture", ge=1, le=32,
                             advanced=True)


@dataclass
class ScheduleConfig:
    """``schedule.*``: the noise schedule; :meth:`build` makes the :class:`~diffstudio.core.schedules.Schedule`."""
    family: str = setting("scaled_linear", "Family", "The noise schedule: how fast the image fades into noise as "
                          "t goes from 0 to 1.", "Schedule", choices=FAMILY_CHOICES, live=True)
    ztsnr: bool = setting(True, "Zero terminal SNR", "Rescale so nothing of the image is left at t = 1 (Lin et "
                          "al. 2024, Algorithm 1). Use with v or flow prediction.", "Schedule", live=True)
    num_train_timesteps: int = setting(1000, "Training timesteps T", "Number of discrete noise levels of a beta "
                                       "schedule (1000 in DDPM and Stable Diffusion).", "Schedule", ge=2,
                                       le=100_000, live=True, advanced=True)
    beta_start: float | None = setting(None, "beta_start", "Noise added at the first step (t = 1/T).", "Betas",
                                       gt=0.0, lt=1.0, none_label="the family's published value", live=True)
    beta_end: float | None = setting(None, "beta_end", "Noise added at the last step (t = 1); larger than "
                                     "beta_start.", "Betas", gt=0.0, lt=1.0,
                                     none_label="the family's published value", live=True)
    shift: float = setting(1.0, "Flow shift", "Rectified flow: SD3's time shift t -> s t / (1 + (s - 1) t); "
                           "above 1 spends more time at high noise.", "Flow", gt=0.0, le=1000.0, live=True)
    sigma_min: float = setting(0.002, "sigma_min", "EDM: smallest noise level (sigma/alpha) at t = 0.", "EDM",
                               gt=0.0, le=1e4, live=True, advanced=True)
    sigma_max: float = setting(80.0, "sigma_max", "EDM: largest noise level at t = 1.", "EDM", gt=0.0, le=1e6,
                               live=True, advanced=True)
    rho: float = setting(7.0, "rho", "EDM: spacing of the noise levels (Karras et al. use 7).", "EDM", gt=0.0,
                         le=100.0, live=True, advanced=True)
    points: list[list[float]] | None = setting(None, "Custom log-SNR points", "Custom family: [[t, log-SNR], ...] "
                                               "control points; log-SNR must fall as t grows.", "Custom",
                                               none_label="a default three-point curve", live=True)

    def build(self) -> Schedule:
        """The :class:`~diffstudio.core.schedules.Schedule` these values describe (:func:`~diffstudio.core.schedules.make_schedule`; raises ScheduleError)."""
        pts = tuple(tuple(p) for p in self.points) if self.points else None
        return make_schedule(self.family, ztsnr=self.ztsnr, num_train_timesteps=self.num_train_timesteps,
                             beta_start=self.beta_start, beta_end=self.beta_end, shift=self.shift,
                             sigma_min=self.sigma_min, sigma_max=self.sigma_max, rho=self.rho, points=pts)

    @property
    def is_discrete(self) -> bool:
        """The family is a beta schedule over ``num_train_timesteps`` steps."""
        return self.family in DISCRETE_FAMILIES


@dataclass
class ObjectiveConfig:
    """``objective.*``: prediction target, loss weighting and how training times are drawn."""
    parameterization: str = setting("v", "Prediction", "What the network predicts; every sampler converts it to "
                                    "(x0, eps).", "Objective", choices=PARAMETERIZATION_CHOICES, live=True)
    weighting: str = setting("uniform", "Loss weighting", "How much each noise level counts in the loss.",
                             "Objective", choices=WEIGHTING_CHOICES, live=True)
    gamma: float = setting(5.0, "min-SNR γ", "The cap of min-SNR-γ weighting (Hang et al. 2023 use 5).",
                           "Objective", gt=0.0, le=1e6, live=True)
    time_sampling: str = setting("uniform", "Timestep sampling", "How training times t are drawn.", "Timesteps",
                                 choices=TIME_SAMPLING_CHOICES, live=True)
    logit_mean: float = setting(0.0, "logit-normal mean m", "Shifts logit-normal sampling toward noise (> 0) or "
                                "data (< 0).", "Timesteps", ge=-10.0, le=10.0, live=True, advanced=True)
    logit_std: float = setting(1.0, "logit-normal std s", "Spread of logit-normal sampling.", "Timesteps",
                               gt=0.0, le=10.0, live=True, advanced=True)
    offset_noise: float = setting(0.0, "Offset noise", "Add a random per-channel constant of this scale to the "
                                  "noise (Guttenberg 2023); unnecessary with zero terminal SNR.", "Noise",
                                  ge=0.0, le=10.0, live=True, advanced=True)

    def build(self) -> Objective:
        """The :class:`~diffstudio.core.objectives.Objective` with these values."""
        return Objective(**asdict(self))


@dataclass
class OptimConfig:
    """``optim.*``: batch, optimizer, learning-rate schedule, EMA."""
    batch_size: int = setting(64, "Batch size", "Images per step (per process under torchrun).", "Optimizer",
                              ge=1, le=65_536)
    lr: float = setting(2e-3, "Learning rate", "AdamW's peak learning rate.", "Optimizer", gt=0.0, le=1.0)
    weight_decay: float = setting(0.0, "Weight decay", "AdamW's decoupled weight decay.", "Optimizer", ge=0.0,
                                  le=10.0, advanced=True)
    beta1: float = setting(0.9, "Adam beta1", "AdamW's first-moment decay.", "Optimizer", ge=0.0, lt=1.0,
                           advanced=True)
    beta2: float = setting(0.999, "Adam beta2", "AdamW's second-moment decay.", "Optimizer", ge=0.0, lt=1.0,
                           advanced=True)
    warmup_steps: int = setting(50, "Warm-up steps", "Steps of linear learning-rate warm-up.", "Learning rate",
                                ge=0, le=10**9, unit="steps")
    lr_schedule: str = setting("cosine", "LR schedule", "How the learning rate evolves after warm-up.",
                               "Learning rate", choices=LR_SCHEDULES)
    grad_clip: float = setting(1.0, "Gradient clipping", "Clip the gradient norm to this value; 0 disables.",
                               "Optimizer", ge=0.0, le=1e6, advanced=True)
    grad_accum: int = setting(1, "Gradient accumulation", "Batches per optimizer step.", "Optimizer", ge=1,
                              le=1024, advanced=True)
    ema_decay: float = setting(0.995, "EMA decay", "Exponential moving average of the weights used for previews "
                               "and export; 0 disables.", "EMA", ge=0.0, lt=1.0)


@dataclass
class SamplingConfig:
    """``sampling.*``: how previews and ``diffstudio sample`` generate (sampler, steps, spacing, guidance)."""
    sampler: str = setting("ddim", "Sampler", "How samples are drawn from the model.", "Sampler",
                           choices=SAMPLER_CHOICES, live=True)
    steps: int = setting(25, "Steps", "How many times the sampler calls the model (N).", "Sampler", ge=1,
                         le=10_000, live=True)
    spacing: str = setting("trailing", "Timestep spacing", "Which times the sampler visits (leading, linspace, "
                           "trailing for beta schedules; uniform, shifted, karras for continuous ones).",
                           "Sampler", choices=SPACING_CHOICES, live=True)
    eta: float = setting(1.0, "eta", "DDIM with eta: the share of fresh noise (0: DDIM, 1: DDPM's posterior).",
                         "Sampler", ge=0.0, le=1.0, live=True, advanced=True)
    shift: float = setting(3.0, "Spacing shift", "The SD3 shift of the 'shifted' spacing (SD3: 3).", "Sampler",
                           gt=0.0, le=1000.0, live=True, advanced=True)
    guidance_scale: float = setting(1.0, "Guidance scale", "Classifier-free guidance (Ho & Salimans 2022): 1 is "
                                    "the plain conditional model.", "Guidance", ge=0.0, le=100.0, live=True)
    guidance_rescale: float = setting(0.0, "Guidance rescale φ", "Rescale the guided prediction toward the "
                                      "conditional one's spread (Lin et al. 2024, eq. 15-16; 0.7 in the paper).",
                                      "Guidance", ge=0.0, le=1.0, live=True)
    seed: int = setting(0, "Preview seed", "Seed of the preview noise: the same seed gives the same start "
                        "noise, so previews are comparable.", "Previews", ge=0, le=SEED_MAX, live=True)
    num_samples: int = setting(16, "Preview samples", "Samples per preview.", "Previews", ge=1, le=4096)
    quality_samples: int = setting(50, "Quality samples", "Samples drawn at each preview to measure sample "
                                   "quality (digits recognised, sliced Wasserstein, brightness spread, "
                                   "histograms); 0 turns the measures off.", "Quality", ge=0, le=100_000)


@dataclass
class RunConfig:
    """``run.*``: length, device, precision, where the run folder goes and how often it logs, previews and saves."""
    steps: int = setting(1500, "Total steps", "The run's total number of optimizer steps.", "Run", ge=1,
                         le=10**9, unit="steps")
    seed: int = setting(0, "Seed", "Seed of the training random stream (batches, times, noise).", "Run", ge=0,
                        le=SEED_MAX)
    device: str = setting("auto", "Device", "auto (CUDA when available), cpu, cuda, cuda:N or mps.", "Hardware",
                          pattern=_DEVICE_PATTERN)
    precision: str = setting("auto", "Precision", "Numeric precision of the forward and backward pass.",
                             "Hardware", choices=PRECISIONS)
    compile: bool = setting(False, "torch.compile", "Compile the model (slow first steps, faster later).",
                            "Hardware", advanced=True)
    threads: int = setting(0, "CPU threads", "PyTorch intra-op threads on the CPU; 0 keeps PyTorch's default.",
                           "Hardware", ge=0, le=1024, advanced=True)
    preview_every: int = setting(250, "Preview every", "Draw preview samples every N steps.", "Logging", ge=1,
                                 le=10**9, unit="steps")
    checkpoint_every: int = setting(500, "Checkpoint every", "Save a checkpoint every N steps.", "Checkpoints",
                                    ge=1, le=10**9, unit="steps")
    log_every: int = setting(10, "Log every", "Write a metrics row every N steps.", "Logging", ge=1, le=10**9,
                             unit="steps", advanced=True)
    val_every: int = setting(250, "Validate every", "Evaluate the model on the held-out set at fixed noise levels "
                             "every N steps (and at the end); 0 turns it off.", "Validation", ge=0, le=10**9,
                             unit="steps")
    val_model: str = setting("ema", "Validated weights", "Which weights the validation evaluates.", "Validation",
                             choices=VAL_MODELS)
    val_items: int = setting(128, "Validation items", "At most this many held-out items are evaluated (each at "
                             "every noise level, with the same noise every time).", "Validation", ge=1,
                             le=1_000_000, advanced=True)
    val_times: int = setting(20, "Validation noise levels", "Number of t values, spread uniformly in log-SNR over "
                             "the schedule's finite range, plus t = 1.", "Validation", ge=16, le=1000,
                             advanced=True)
    keep_checkpoints: int = setting(3, "Keep checkpoints", "How many of the latest checkpoints to keep.",
                                    "Checkpoints", ge=1, le=100_000, advanced=True)
    out_dir: str = setting("runs", "Runs folder", "Folder in which new run folders are created.", "Checkpoints",
                           pattern=r"\S", advanced=True)
    name: str = setting("", "Run name", "Run folder name; empty: the preset or dataset name plus a timestamp.",
                        "Checkpoints", advanced=True)


@register_root
@dataclass
class Config:
    """All settings of a run, one section a dataclass; described once by the ``setting`` fields
    (:mod:`diffstudio.engine.settings`) and round-tripped through TOML or JSON."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """The nested plain dict (``dataclasses.asdict``): ``{"schedule": {"family": ...}, ...}``."""
        return asdict(self)

    def flat(self) -> dict[str, Any]:
        """Every setting by its dotted name, ``{"schedule.family": ..., "run.steps": ...}``, with the
        values of ``to_dict``."""
        return _flat(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        """Build from a (possibly partial) dict; unknown sections or keys are errors.
        Raises :class:`ConfigError` naming the unknown field."""
        return _from_dict(cls, d, "")

    def validate(self) -> list[tuple[str, str]]:
        """Every problem as ``(dotted field, one-line message)``; empty when the config is valid."""
        from diffstudio.engine.validation import validate

        return validate(self)

    def check(self) -> "Config":
        """Self when valid; else raises :class:`ConfigError` carrying all of :meth:`validate`'s problems."""
        errors = self.validate()
        if errors:
            raise ConfigError(errors)
        return self

    def updated(self, **sections: dict[str, Any]) -> "Config":
        """A copy with some fields of some sections replaced: ``cfg.updated(run={"steps": 10})``."""
        return replace(self, **{k: replace(getattr(self, k), **v) for k, v in sections.items()})

    def save(self, path: str | os.PathLike) -> Path:
        """Write TOML (``.toml``) or JSON. A dataset folder whose name is not valid UTF-8 is
        written as its ``file:`` URI, which loads the same folder (data.paths.to_portable)."""
        from diffstudio.data.paths import to_portable

        path = Path(path)
        portable = self.updated(data={"source": to_portable(self.data.source)}) if isinstance(
            self.data.source, str) else self
        data = _drop_none(portable.to_dict())
        text = tomli_w.dumps(data) if path.suffix.lower() == ".toml" else json.dumps(portable.to_dict(), indent=2)
        from diffstudio.engine.atomic import atomic_write_text

        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Config":
        """Read a ``.toml`` (else JSON) config file. Raises :class:`ConfigError` when it is missing, not
        valid TOML/JSON, or names unknown sections or keys (values are checked by :meth:`check`)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if path.is_dir():
            raise ConfigError([("file", f"{path} is a folder; give a config file (.toml or .json)")])
        if suffix not in (".toml", ".json"):
            raise ConfigError([("file", f"{path}: a config file is .toml or .json, not "
                                        f"{suffix or 'a name without an extension'}")])
        try:
            raw = path.read_text(encoding="utf-8")
            data = tomllib.loads(raw) if suffix == ".toml" else json.loads(raw)
        except FileNotFoundError:
            raise ConfigError([("file", f"{path} does not exist")]) from None
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError([("file", f"{path} is not valid {suffix.lstrip('.')}: {e}")]) from None
        return cls.from_dict(data)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _drop_none(d: Any) -> Any:
    """TOML has no null: fields left at None are simply omitted (they default back to None)."""
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    return d


def _from_dict(cls: type, d: Any, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError([(prefix.rstrip(".") or "config", "expected a table of settings")])
    known = {f.name: f for f in fields(cls)}
    unknown = [k for k in d if k not in known]
    if unknown:
        raise ConfigError([(prefix + k, f"unknown setting (known: {', '.join(known)})") for k in unknown])
    kwargs = {}
    for name, value in d.items():
        default = getattr(cls(), name)
        kwargs[name] = _from_dict(type(default), value, f"{prefix}{name}.") if is_dataclass(default) else value
    return cls(**kwargs)


__all__ = [
    "Config", "ConfigError", "DataConfig", "ModelConfig", "ScheduleConfig", "ObjectiveConfig",
    "OptimConfig", "SamplingConfig", "RunConfig", "FAMILIES", "PARAMETERIZATIONS", "WEIGHTINGS",
    "TIME_SAMPLINGS", "SAMPLERS", "DISCRETE_SPACINGS", "CONTINUOUS_SPACINGS", "ScheduleError",
]
