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

from diffstudio.core.grids import CONTINUOUS_SPACINGS, DISCRETE_SPACINGS
from diffstudio.core.objectives import TIME_SAMPLINGS, WEIGHTINGS, Objective
from diffstudio.core.parameterization import PARAMETERIZATIONS
from diffstudio.core.samplers import SAMPLERS
from diffstudio.core.schedules import DISCRETE_FAMILIES, FAMILIES, Schedule, ScheduleError, make_schedule


class ConfigError(ValueError):
    """A configuration is invalid. ``errors`` lists ``(field, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))


@dataclass
class DataConfig:
    source: str = "digits"  # a built-in name (digits, shapes, lighting, moons, ...) or a folder
    resolution: int | None = None  # None: the dataset's own
    channels: int | None = None  # 1 or 3; None: the dataset's own
    labels: bool = True  # use class labels when the dataset has them
    hflip: bool = False  # random horizontal flip (on the device)
    num_points: int | None = None  # size of a 2-D toy dataset
    memory_budget_mb: float = 0.0  # MiB of data held on the training device, >= 0 (fractions allowed); 0: auto (25 % of free CUDA memory; CPU: 10 % of available RAM, at most 512 MiB). A folder larger than this streams from its on-disk uint8 cache


@dataclass
class ModelConfig:
    preset: str = "tiny"  # images: tiny | small | base; 2-D toys always use the MLP
    class_conditional: bool = True  # only when the data has labels
    cond_drop_prob: float = 0.1  # label dropout, so classifier-free guidance works
    mlp_width: int = 128
    mlp_depth: int = 3


@dataclass
class ScheduleConfig:
    family: str = "scaled_linear"
    ztsnr: bool = True
    num_train_timesteps: int = 1000
    beta_start: float | None = None
    beta_end: float | None = None
    shift: float = 1.0  # flow: SD3 time shift
    sigma_min: float = 0.002  # edm
    sigma_max: float = 80.0
    rho: float = 7.0
    points: list[list[float]] | None = None  # custom: [[t, log_snr], ...]

    def build(self) -> Schedule:
        pts = tuple(tuple(p) for p in self.points) if self.points else None
        return make_schedule(self.family, ztsnr=self.ztsnr, num_train_timesteps=self.num_train_timesteps,
                             beta_start=self.beta_start, beta_end=self.beta_end, shift=self.shift,
                             sigma_min=self.sigma_min, sigma_max=self.sigma_max, rho=self.rho, points=pts)

    @property
    def is_discrete(self) -> bool:
        return self.family in DISCRETE_FAMILIES


@dataclass
class ObjectiveConfig:
    parameterization: str = "v"
    weighting: str = "uniform"
    gamma: float = 5.0
    time_sampling: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    offset_noise: float = 0.0

    def build(self) -> Objective:
        return Objective(**asdict(self))


@dataclass
class OptimConfig:
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 50
    lr_schedule: str = "cosine"  # cosine | constant
    grad_clip: float = 1.0  # 0 disables
    grad_accum: int = 1
    ema_decay: float = 0.995  # 0 disables EMA (previews then use the raw weights)


@dataclass
class SamplingConfig:
    sampler: str = "ddim"
    steps: int = 25
    spacing: str = "trailing"
    eta: float = 1.0  # for ddim_eta
    shift: float = 3.0  # for the "shifted" spacing
    guidance_scale: float = 1.0
    guidance_rescale: float = 0.0
    seed: int = 0
    num_samples: int = 16


@dataclass
class RunConfig:
    steps: int = 1500
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast, CUDA only)
    compile: bool = False  # torch.compile the model
    threads: int = 0  # CPU intra-op threads; 0 keeps PyTorch's default
    preview_every: int = 250
    checkpoint_every: int = 500
    log_every: int = 10
    keep_checkpoints: int = 3
    out_dir: str = "runs"
    name: str = ""  # run folder name; empty: preset/data name + timestamp


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        """Build from a (possibly partial) dict; unknown sections or keys are errors."""
        return _from_dict(cls, d, "")

    def validate(self) -> list[tuple[str, str]]:
        from diffstudio.engine.validation import validate

        return validate(self)

    def check(self) -> "Config":
        errors = self.validate()
        if errors:
            raise ConfigError(errors)
        return self

    def updated(self, **sections: dict[str, Any]) -> "Config":
        """A copy with some fields of some sections replaced: ``cfg.updated(run={"steps": 10})``."""
        return replace(self, **{k: replace(getattr(self, k), **v) for k, v in sections.items()})

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        data = _drop_none(self.to_dict())
        text = tomli_w.dumps(data) if path.suffix == ".toml" else json.dumps(self.to_dict(), indent=2)
        from diffstudio.engine.atomic import atomic_write_text

        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Config":
        path = Path(path)
        try:
            raw = path.read_text(encoding="utf-8")
            data = tomllib.loads(raw) if path.suffix == ".toml" else json.loads(raw)
        except FileNotFoundError:
            raise ConfigError([("file", f"{path} does not exist")]) from None
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError([("file", f"{path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {e}")]) from None
        return cls.from_dict(data)


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
