"""Start training from a pretrained model (``model.init_from``).

Accepted sources, all read as safetensors + JSON (nothing is executed, nothing is downloaded):

- a diffusers ``UNet2DModel`` folder (``config.json`` + ``diffusion_pytorch_model.safetensors``),
  read with ``UNet2DModel.from_pretrained(..., use_safetensors=True)``;
- a pipeline folder with a ``unet/`` sub-folder (a diffusers pipeline, or a diffstudio export,
  whose ``diffstudio.json`` then says how many classes the label embedding holds);
- a diffstudio run folder (its latest checkpoint), checkpoint folder or exported ``.safetensors``
  file (EMA weights when the checkpoint has them).

The architecture is the source's; the data must fit it (channels and resolution), else one
:class:`InitFromError`. Class conditioning may differ and is adapted (:func:`adapt_class_embedding`).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from diffstudio.engine.config import Config, ConfigError
from diffstudio.models.diffusers_folder import diffusers_class, folder_problem
from diffstudio.models.info import DataInfo

Tensor = torch.Tensor
Say = Callable[[str, str], None]
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


class InitFromError(ConfigError):
    """``model.init_from`` cannot be used; the message says why and what to do."""

    def __init__(self, message: str):
        super().__init__([("model.init_from", message)])


@dataclass
class Pretrained:
    """A pretrained network read from disk.

    ``kind``: "unet" (``config`` = ``UNet2DModel`` kwargs, ``weights`` = its state_dict) or "mlp"
    (``config`` = the diffstudio spec, ``weights`` = the MLPModel state_dict).
    ``num_classes``: classes of a diffstudio model (its label embedding has ``num_classes + 1``
    rows, the last the null label); None for a foreign model (rows are ``num_class_embeds``, no
    null row known)."""

    kind: str
    config: dict[str, Any]
    weights: dict[str, Tensor]
    num_classes: int | None
    source: str
    vae: str = ""  # a diffstudio latent run's data.vae: the model takes that VAE's latents
    schedule: tuple[tuple, str] | None = None  # (comparable key, words) of the noise schedule it was trained on


# --------------------------------------------------------------------------------------------- reading


def read_pretrained(path: str | Path) -> Pretrained:
    """Read the network at ``path`` (see the module docstring). Raises :class:`InitFromError`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InitFromError(f"{p} does not exist")
    if p.is_dir() and (p / "unet").is_dir():
        pre = _read_diffusers_unet(p / "unet", _diffstudio_classes(p / "diffstudio.json"), str(p))
        pre.schedule = _scheduler_config_schedule(p / "scheduler" / "scheduler_config.json")
        return pre
    if p.is_dir() and (p / "config.json").is_file():
        return _read_diffusers_unet(p, None, str(p))
    return _read_diffstudio(p)


def _diffstudio_classes(info_file: Path) -> int | None:
    """The class count a diffstudio export recorded, or None when the folder is not one."""
    if not info_file.is_file():
        return None
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
        return int(info["model_spec"].get("num_classes") or 0)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


_TEXT_UNET = (": diffstudio fine-tunes unconditional or class-conditional UNet2DModels (text-conditioned UNets "
              "are not supported)")
_WRONG_CLASS = {"AutoencoderKL": " (a VAE goes into data.vae)", "UNet2DConditionModel": _TEXT_UNET}


def _read_diffusers_unet(folder: Path, num_classes: int | None, source: str) -> Pretrained:
    problem = folder_problem(folder, "UNet2DModel", "model", _WRONG_CLASS)
    if problem:
        raise InitFromError(problem)
    UNet2DModel = diffusers_class("UNet2DModel")

    from diffstudio.models.unet import foreign_unet_config

    try:
        unet = UNet2DModel.from_pretrained(folder, use_safetensors=True, low_cpu_mem_usage=False)
    except Exception as e:  # diffusers raises OSError, ValueError, EnvironmentError ...
        raise InitFromError(f"{folder} could not be read as a UNet2DModel ({str(e).splitlines()[0]})") from None
    weights = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    return Pretrained("unet", foreign_unet_config(dict(unet.config)), weights, num_classes, source)


def _read_diffstudio(p: Path) -> Pretrained:
    from diffstudio.engine.checkpoint import PICKLE_SUFFIXES, CheckpointError, load_checkpoint

    if p.is_file() and p.suffix in PICKLE_SUFFIXES:
        raise InitFromError(f"{p} is a pickle file ({p.suffix}); only safetensors models are read, because loading "
                            f"a pickle can run code")
    try:
        ckpt = load_checkpoint(p)
    except CheckpointError as e:
        if p.is_dir() and (p / "checkpoints").is_dir():  # a diffstudio run folder: its own reason is the one
            raise InitFromError(str(e)) from None
        raise InitFromError(f"{p} is neither a diffusers UNet2DModel folder (config.json), a pipeline folder "
                            f"(unet/) nor a diffstudio run, checkpoint or export ({e})") from None
    spec = ckpt.meta.get("model_spec")
    if not isinstance(spec, dict) or spec.get("kind") not in ("unet", "mlp"):
        folder = p.parent if p.is_file() else None
        hint = (f": give its checkpoint folder {folder}" if folder is not None and (folder / "state.json").is_file()
                else " (a diffstudio export or checkpoint folder has one)")
        raise InitFromError(f"{ckpt.path} carries no diffstudio model spec, so its architecture is unknown{hint}")
    weights = {}
    for key, value in ckpt.weights(prefer_ema=True).items():
        if key == "n_averaged":
            continue
        for prefix in ("module.", "_orig_mod."):
            key = key.removeprefix(prefix)
        weights[key] = value
    if spec["kind"] == "mlp":
        return Pretrained("mlp", spec, weights, int(spec.get("num_classes") or 0), str(ckpt.path))
    unet = {k.removeprefix("unet."): v for k, v in weights.items()}
    saved = ckpt.meta.get("config")
    vae = saved.get("data", {}).get("vae", "") if isinstance(saved, dict) else ""
    schedule = None
    if isinstance(saved, dict):
        try:
            schedule = schedule_signature(Config.from_dict(saved).schedule)
        except Exception:  # a config this version cannot read: the schedule stays unknown
            schedule = None
    return Pretrained("unet", dict(spec["unet"]), unet, int(spec.get("num_classes") or 0), str(ckpt.path),
                      vae if isinstance(vae, str) else "", schedule)


def schedule_signature(schedule) -> tuple[tuple, str]:
    """``(key, words)`` of a :class:`~diffstudio.engine.config.ScheduleConfig`'s noise levels apart
    from the zero-terminal-SNR rescale: a beta schedule by its family, beta range (defaults
    resolved as :class:`~diffstudio.core.schedules.DiscreteSchedule` resolves them) and T; a
    continuous one by its family. Equal keys train on the same betas."""
    from diffstudio.core.schedules import DISCRETE_FAMILIES, DiscreteSchedule

    if schedule.family not in DISCRETE_FAMILIES:
        return (schedule.family,), f"the {schedule.family} schedule"
    d = DiscreteSchedule(schedule.family, int(schedule.num_train_timesteps), schedule.beta_start, schedule.beta_end)
    start, end = d.betas_range
    T = d.num_train_timesteps
    return (d.family, round(start, 10), round(end, 10), T), f"{d.family} betas {start:g}..{end:g} over T = {T}"


def _scheduler_config_schedule(path: Path) -> tuple[tuple, str] | None:
    """The beta schedule of a diffusers ``scheduler_config.json`` (diffusers' defaults where a key
    is missing), or None when there is none or it is not one diffstudio names (trained_betas)."""
    from diffstudio.engine.config import ScheduleConfig

    try:
        c = json.loads(path.read_text(encoding="utf-8"))
        if c.get("trained_betas") is not None:
            return None
        return schedule_signature(ScheduleConfig(family=c.get("beta_schedule", "linear"),
                                                 num_train_timesteps=int(c.get("num_train_timesteps", 1000)),
                                                 beta_start=float(c.get("beta_start", 1e-4)),
                                                 beta_end=float(c.get("beta_end", 0.02))))
    except Exception:  # no scheduler, unreadable JSON or an unknown family: the schedule stays unknown
        return None


# --------------------------------------------------------------------------------------------- fitting the data


def _side(sample_size: Any) -> int | None:
    if isinstance(sample_size, (list, tuple)):
        return int(sample_size[0]) if len(set(sample_size)) == 1 else -1
    return None if sample_size is None else int(sample_size)


def check_fits(pre: Pretrained, info: DataInfo, latent: bool = False) -> None:
    """One :class:`InitFromError` when the model cannot take the data: kind, channels (in and out)
    or resolution (``sample_size``, pixels; a non-square one is refused) differ; returns None when it can. ``latent``: the data are a VAE's latents.
    ``info``: a :class:`DataInfo`, or anything with its ``kind``, ``channels``, ``resolution``;
    ``resolution`` 0 or ``channels`` None: not known yet (a folder's native size or channels), not
    checked."""
    what = "latents" if latent else "images"
    if pre.kind == "mlp":
        if info.kind != "points" or int(pre.config["data"]["channels"]) != info.channels:
            raise InitFromError(f"{pre.source} is a 2-D point model (MLP) and the data are {info.kind}s")
        return
    if info.kind != "image":
        raise InitFromError(f"{pre.source} is an image UNet and the data are 2-D points")
    c_in, c_out = pre.config.get("in_channels", 3), pre.config.get("out_channels", 3)
    side = _side(pre.config.get("sample_size"))
    if side == -1:
        h, w = pre.config["sample_size"][:2]
        raise InitFromError(f"{pre.source} was built for {h}x{w} {what} (sample_size {list(pre.config['sample_size'])})"
                            f"; diffstudio trains on square {what}")
    channels_known = info.channels is not None
    given = (f"{f'{info.channels}-channel ' if channels_known else ''}"
             f"{f'{info.resolution} px ' if info.resolution else ''}{what}")
    if pre.vae and not latent:  # the usual slip: fine-tuning a latent run without its VAE
        problem = (channels_known and (c_in, c_out) != (info.channels,) * 2) or (
            side is not None and info.resolution and side != info.resolution)
        if problem:
            raise InitFromError(f"{pre.source} was trained on the latents of the VAE {pre.vae} ({c_in}-channel "
                                f"{side or '?'} px) and the data give {given}: set {shlex.quote(f'data.vae={pre.vae}')}")
    if channels_known and (c_in != info.channels or c_out != info.channels):
        fix = "data.vae" if latent else "data.channels"
        plural = "s" if c_out != 1 else ""
        raise InitFromError(f"{pre.source} takes {c_in}-channel {side or '?'} px {what} (predicts {c_out} "
                            f"channel{plural}), the data give {given}: set {fix} to match")
    if side is not None and info.resolution and side != info.resolution:
        fix = "data.resolution (the latents' side is the images' over the VAE's downsampling) or data.vae" \
            if latent else "data.resolution"
        raise InitFromError(f"{pre.source} was built for {side} px {what} (sample_size), the data give "
                            f"{info.resolution} px {what}: set {fix} to match")


def adapt_class_embedding(pre: Pretrained, num_classes: int) -> tuple[dict[str, Any], dict[str, Tensor], str]:
    """The UNet config and weights of ``pre`` re-fitted to ``num_classes`` classes (0: none), and a
    one-line note of what changed ("" when nothing did).

    diffstudio's label embedding has ``num_classes + 1`` rows, the last the null label; it is added
    to the time embedding (``UNet2DModel.forward``: ``emb = time_embedding(t) + class_embedding(y)``).
    - none -> N classes: N + 1 rows, all zero, so training starts exactly from the unconditional model;
    - N classes -> none: the null row (a foreign model: the mean row) is folded into the time
      embedding's last bias, so the unconditional model is exactly the old one given "no class";
    - N -> M classes: the first min(N, M) rows are kept; new classes and the null row start as the
      old null row (a foreign model without a null row: the mean of its rows).

    The embedding weight ``class_embedding.weight`` is (rows, time_embed_dim), ``time_embed_dim``
    the length of ``time_embedding.linear_2.bias``. Raises :class:`InitFromError` when the rows
    must change and the model uses a ``class_embed_type`` (only a plain ``num_class_embeds``
    ``nn.Embedding`` can be adapted)."""
    cfg, w = dict(pre.config), dict(pre.weights)
    rows = int(cfg.get("num_class_embeds") or 0)
    want = num_classes + 1 if num_classes > 0 else 0
    known = pre.num_classes is not None
    if rows == want and (known or rows == 0):
        return cfg, w, ""
    if cfg.get("class_embed_type") is not None:
        raise InitFromError(f"{pre.source} uses class_embed_type={cfg['class_embed_type']!r}; only a plain label "
                            f"embedding (num_class_embeds) can be adapted to the data's classes")
    key = "class_embedding.weight"
    old = w.pop(key, None)
    old_classes = (rows - 1 if known else rows) if rows else 0
    null = None if old is None else (old[-1] if known else old.mean(0))
    null_word = "its null-label row" if known else "the mean of its rows"
    if want == 0:
        cfg["num_class_embeds"] = None
        if null is not None:
            w["time_embedding.linear_2.bias"] = w["time_embedding.linear_2.bias"] + null
        return cfg, w, (f"the model was conditioned on {old_classes} classes and this run has none: its label "
                        f"embedding was removed and {null_word} folded into the time embedding")
    width = int(w["time_embedding.linear_2.bias"].shape[0])
    cfg["num_class_embeds"] = want
    if old is None:
        w[key] = torch.zeros(want, width)
        return cfg, w, (f"the model had no class conditioning: a label embedding for {num_classes} classes (+ the "
                        f"null label) was added, all rows zero, so training starts from the unconditional model")
    new = null.expand(want, width).clone()
    kept = min(old_classes, num_classes)
    new[:kept] = old[:kept]
    w[key] = new
    if num_classes > old_classes:
        fate = f"{_span('class', 'classes', old_classes, num_classes)} (new) and the null label start from {null_word}"
    elif num_classes < old_classes:
        fate = f"{_span('row', 'rows', num_classes, old_classes)} dropped; the null label starts from {null_word}"
    else:  # a foreign model: the same classes, and a null label it never had
        fate = f"the null label (new) starts from {null_word}"
    kept_text = f"{_span('class row', 'class rows', 0, kept)} kept" if kept else "no class row kept"
    return cfg, w, (f"the model knew {old_classes} {'class' if old_classes == 1 else 'classes'}, the data have "
                    f"{num_classes}: {kept_text}, {fate}")


def _span(one: str, many: str, start: int, stop: int) -> str:
    """Rows ``start..stop-1`` in words: 'row 4' for one, 'rows 3..4' for several."""
    return f"{one} {start}" if stop - start == 1 else f"{many} {start}..{stop - 1}"


# --------------------------------------------------------------------------------------------- building


def pretrained_model(config: Config, info: DataInfo, *, say: Say | None = None,
                     pretrained: Pretrained | None = None) -> torch.nn.Module:
    """The model ``config.model.init_from`` names (or ``pretrained``, already read from it), fitted
    to ``info`` (the data, or their latents when ``config.data.vae`` is set) and carrying the
    pretrained weights.

    Raises :class:`InitFromError`. ``say(level, text)`` receives what was adapted."""
    from diffstudio.models.build import model_from_spec
    from diffstudio.models.unet import pretrained_unet_spec

    pre = pretrained if pretrained is not None else read_pretrained(config.model.init_from)
    check_fits(pre, info, latent=bool(config.data.vae))
    num_classes = info.num_classes if (config.model.class_conditional and info.num_classes > 0) else 0
    if pre.kind == "mlp":
        if int(pre.config.get("num_classes") or 0) != num_classes:
            raise InitFromError(f"{pre.source}: the 2-D model has {pre.num_classes} classes and this run {num_classes}; "
                                f"only UNets can be re-fitted to other classes")
        spec, weights = dict(pre.config, data=info.to_dict()), pre.weights
    else:
        unet_cfg, unet_w, note = adapt_class_embedding(pre, num_classes)
        if note and say is not None:
            say("warning", f"model.init_from: {note}")
        spec = pretrained_unet_spec(unet_cfg, info, num_classes, pre.source)
        weights = {f"unet.{k}": v for k, v in unet_w.items()}
    model = model_from_spec(spec)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise InitFromError(f"{pre.source}: the weights do not fit the model's own config "
                            f"({str(e).splitlines()[0]})") from None
    if say is not None:
        say("info", f"starting from {pre.source} ({sum(v.numel() for v in weights.values()):,} weights)")
        note = schedule_change(pre, config)
        if note:
            say("warning", f"model.init_from: {note}")
    return model


def schedule_change(pre: Pretrained, config: Config) -> str:
    """A one-line note when the run's noise levels are not those the model was trained on (its
    betas, apart from the zero-terminal-SNR rescale that fine-tuning may add), else "". Unknown
    for a bare UNet folder (no scheduler beside it): ""."""
    if pre.schedule is None:
        return ""
    try:
        mine = schedule_signature(config.schedule)
    except Exception:  # an invalid schedule: validation reports it
        return ""
    if mine[0] == pre.schedule[0]:
        return ""
    return (f"the model was trained on {pre.schedule[1]} and this run uses {mine[1]}, so the fine-tune does not "
            f"keep its noise levels; set schedule.family, schedule.beta_start, schedule.beta_end and "
            f"schedule.num_train_timesteps to the model's to keep them")


# the settings that decide a run's network (with the data it gets): a resumed run keeps its checkpoint's
ARCHITECTURE = ("model.preset", "model.class_conditional", "model.mlp_width", "model.mlp_depth", "data.source",
                "data.channels", "data.labels", "data.vae", "data.num_points")


def resume_mismatch(saved: dict | None, config: Config, resume: str | Path) -> ConfigError:
    """The error for a resumed run whose settings (``config``) no longer fit its checkpoint's network:
    names the settings of :data:`ARCHITECTURE` that differ from the checkpoint's (``saved``, its
    config dict) and how to go on instead. Returns the error for the caller to raise; raises nothing."""
    diffs = []
    if isinstance(saved, dict):
        try:
            old = Config.from_dict(saved)
        except Exception:  # a config this version cannot read: no names, the rest of the message holds
            old = None
        for name in ARCHITECTURE if old is not None else ():
            section, key = name.split(".")
            before, now = getattr(getattr(old, section), key), getattr(getattr(config, section), key)
            if before != now:
                diffs.append((name, f"{name} {before!r} -> {now!r}"))
    what = ", ".join(text for _, text in diffs) if diffs else "the data's channels or classes changed"
    field = diffs[0][0] if diffs else "data"
    return ConfigError([(field, f"does not fit the network of {resume} ({what}): a resumed run continues its "
                                f"checkpoint's network; keep these settings as they were, or start a new run (with "
                                f"--set {shlex.quote(f'model.init_from={resume}')} to start from its weights)")])


def initial_model(config: Config, info: DataInfo, *, resume: str | Path | None = None,
                  say: Say | None = None, pretrained: Pretrained | None = None) -> torch.nn.Module:
    """The model a run starts with: resuming a run that began from a pretrained model rebuilds the
    checkpoint's own architecture (its weights are loaded afterwards, so the pretrained folder is
    not needed any more); else the pretrained model when ``model.init_from`` is set; else a fresh
    preset (:func:`diffstudio.models.build.build_model`). ``pretrained``: the model already read
    from ``model.init_from`` (the Trainer reads it before loading data). A run still named after a preset that
    needs a model (``finetune-ztsnr-v``) but given none is a ``ConfigError``.

    Raises :class:`InitFromError` (``model.init_from`` unusable), ``ConfigError`` (a resumed run's
    settings no longer fit its checkpoint's network, or a required model is missing) and
    ``CheckpointError`` (``resume`` unreadable)."""
    from diffstudio.models.build import build_model, model_from_spec

    if resume and config.model.init_from:
        from diffstudio.engine.checkpoint import load_checkpoint
        from diffstudio.models.build import data_info_of

        meta = load_checkpoint(resume).meta
        spec = meta["model_spec"]
        saved = data_info_of(spec)
        classes = info.num_classes if (config.model.class_conditional and info.num_classes > 0) else 0
        if (saved.kind, saved.channels, int(spec.get("num_classes") or 0)) != (info.kind, info.channels, classes):
            raise resume_mismatch(meta.get("config"), config, resume)
        return model_from_spec(spec)
    if config.model.init_from:
        return pretrained_model(config, info, say=say, pretrained=pretrained)
    from diffstudio.engine.presets import missing_required

    missing = missing_required(config.run.name, config)  # a run still named after a preset that needs a model
    if missing:
        raise ConfigError(missing)
    return build_model(config, info)


__all__ = ["ARCHITECTURE", "InitFromError", "Pretrained", "resume_mismatch", "adapt_class_embedding", "check_fits", "initial_model",
           "pretrained_model", "read_pretrained"]
