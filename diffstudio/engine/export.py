"""Export a trained model for use outside diffstudio (EMA weights when the run kept them).

- ``diffusers``: a folder ``DDPMPipeline``-style: ``unet/`` (``UNet2DModel.save_pretrained``),
  ``scheduler/scheduler_config.json`` reproducing the training schedule and parameterization,
  ``model_index.json``, and ``diffstudio.json`` (the run config and model spec). A latent model
  (``data.vae``) also gets ``vae/`` (``AutoencoderKL.save_pretrained``), and ``diffstudio.json``
  its ``scaling_factor`` and ``shift_factor``: the UNet samples latents, the VAE decodes them.
- ``safetensors``: one file of weights whose metadata holds the config and the model spec
  (``model_from_spec(json.loads(metadata["model_spec"]))`` rebuilds the network).

What diffusers cannot represent is refused with :class:`ExportError` naming the reason."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from diffstudio.core.grids import DISCRETE_SPACINGS
from diffstudio.core.schedules import DISCRETE_FAMILIES
from diffstudio.engine.atomic import atomic_replace_dir, atomic_write
from diffstudio.engine.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from diffstudio.engine.config import Config, ConfigError
from diffstudio.models.diffusers_folder import diffusers_class

Tensor = torch.Tensor
FORMATS = ("diffusers", "safetensors")
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
_SUGGEST = "Export to the safetensors format instead: it keeps any model with its diffstudio config."


class ExportError(ValueError):
    """The export cannot be done; the message says why and what to do instead."""


class ExportWarning(UserWarning):
    """The export works but diffusers will misbehave on it (e.g. eps prediction with zero terminal SNR in DDIM)."""
    pass


def export(source: str | os.PathLike, fmt: str, out_dir: str | os.PathLike) -> Path:
    """Export the checkpoint ``source`` (a checkpoint folder, or a run folder: its latest one).

    ``diffusers`` writes the folder ``out_dir`` (which must be new, empty or a previous export)
    and returns it. ``safetensors`` writes ``out_dir/<run>-step-NNNNNN.safetensors`` (or
    ``out_dir`` itself when it ends in ``.safetensors``) and returns the file.
    Raises :class:`ExportError` (an unknown format, an ``out_dir`` that contradicts the format
    (:func:`target_problem`), an unreadable checkpoint, or what the format cannot express) and warns :class:`ExportWarning`."""
    if fmt not in FORMATS:
        raise ExportError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    problem = target_problem(fmt, out_dir)
    if problem:
        raise ExportError(problem)
    try:
        ckpt = load_checkpoint(source)
    except CheckpointError as e:
        raise ExportError(f"cannot export: {e}") from None
    config, spec = _config_and_spec(ckpt)
    weights = _weights(ckpt)
    if fmt == "diffusers":
        return export_diffusers(ckpt, config, spec, weights, Path(out_dir))
    return export_safetensors(ckpt, config, spec, weights, Path(out_dir))


# extensions of single files (weights, archives, data), which no export folder is named with
_FILE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".safetensor", ".st", ".onnx", ".gguf", ".h5", ".pkl", ".pickle",
                  ".npz", ".npy", ".msgpack", ".json", ".toml", ".zip", ".tar", ".gz", ".png", ".jpg", ".txt"}


def target_problem(fmt: str, out: str | os.PathLike) -> str | None:
    """Why ``out`` contradicts what ``fmt`` writes (None when it does not), checked before any work.

    ``safetensors`` writes a file ending in ``.safetensors``, or into a folder (a file named after the
    run and step): a path with another file extension (``x.bin``), an existing file of another name,
    or an existing folder named ``*.safetensors`` is refused. ``diffusers`` writes a folder: a path
    ending in ``.safetensors`` or another file extension, or an existing file, is refused. A path that
    is an existing folder is always taken as one. The message suggests the path to give instead."""
    p = Path(out)
    suffix = p.suffix.lower()
    if fmt == "safetensors":
        if suffix == ".safetensors":
            if p.is_dir():
                return (f"{p} is a folder; give a new file name ending in .safetensors, or the folder "
                        f"without the extension to export into it")
            return None
        if p.exists() and not p.is_dir():
            return (f"{p} is an existing file, not a .safetensors one; give a name ending in .safetensors "
                    f"(e.g. {p.with_suffix('.safetensors')}) or a folder to write it into")
        if not p.is_dir() and suffix in _FILE_SUFFIXES:
            return (f"{p} is not a .safetensors file name: a safetensors export is one file ending in "
                    f".safetensors (e.g. {p.with_suffix('.safetensors')}) or a folder to write it into")
        return None
    if p.exists() and not p.is_dir():
        return f"{p} is a file; a diffusers export is a folder (e.g. {p.with_suffix('')})"
    if not p.is_dir() and (suffix == ".safetensors" or suffix in _FILE_SUFFIXES):
        return (f"{p} looks like a file name; a diffusers export is a folder (e.g. {p.with_suffix('')}), "
                f"or use --format safetensors for one file")
    return None


def _config_and_spec(ckpt: Checkpoint) -> tuple[Config, dict[str, Any]]:
    spec = ckpt.meta.get("model_spec")
    if not isinstance(spec, dict):
        raise ExportError(f"{ckpt.path}: the checkpoint has no model_spec in its meta, so the network "
                          f"cannot be rebuilt (was it saved by diffstudio?)")
    if not isinstance(ckpt.meta.get("config"), dict):
        raise ExportError(f"{ckpt.path}: the checkpoint has no run config in its meta")
    try:
        return Config.from_dict(ckpt.meta["config"]), spec
    except ConfigError as e:
        raise ExportError(f"{ckpt.path}: the checkpoint's config is invalid: {e}") from None


def _weights(ckpt: Checkpoint) -> dict[str, Tensor]:
    """EMA weights when present, keys freed of DDP / torch.compile / AveragedModel wrappers."""
    out = {}
    for key, value in ckpt.weights(prefer_ema=True).items():
        if key == "n_averaged":
            continue
        for prefix in ("module.", "_orig_mod."):
            key = key[len(prefix):] if key.startswith(prefix) else key
        out[key] = value
    return out


def _model_with(spec: dict[str, Any], weights: dict[str, Tensor]) -> torch.nn.Module:
    from diffstudio.models.build import model_from_spec

    try:
        model = model_from_spec(spec)
        model.load_state_dict(weights, strict=True)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise ExportError(f"the checkpoint's weights do not fit its model spec: {str(e).splitlines()[0]}") from None
    return model.eval()


# ---------------------------------------------------------------------------------------------
# diffusers


def scheduler_config(config: Config) -> tuple[str, dict[str, Any]]:
    """``(diffusers scheduler class name, its config)`` for the run's schedule, or ExportError."""
    s, param = config.schedule, config.objective.parameterization
    if param == "score":
        raise ExportError("score parameterization: diffusers schedulers have no score prediction type. " + _SUGGEST)
    if s.family in DISCRETE_FAMILIES:
        if param not in PREDICTION_TYPES:
            raise ExportError(f"{param} parameterization on the beta schedule {s.family!r}: diffusers' DDIM "
                              f"predicts only epsilon, v_prediction or sample. " + _SUGGEST)
        beta_start, beta_end = s.build().betas_range
        spacing = config.sampling.spacing if config.sampling.spacing in DISCRETE_SPACINGS else "trailing"
        cfg = {"num_train_timesteps": s.num_train_timesteps, "beta_start": beta_start, "beta_end": beta_end,
               "beta_schedule": s.family, "prediction_type": PREDICTION_TYPES[param],
               "timestep_spacing": spacing, "rescale_betas_zero_snr": bool(s.ztsnr), "clip_sample": False,
               "set_alpha_to_one": True, "steps_offset": 0, "thresholding": False}
        if s.family == "sigmoid":  # DDIMScheduler has no sigmoid betas; DDPMScheduler has
            cfg.pop("set_alpha_to_one")
            return "DDPMScheduler", cfg
        return "DDIMScheduler", cfg
    if s.family == "flow":
        if param != "flow":
            raise ExportError(f"{param} parameterization on the rectified-flow schedule: diffusers' "
                              f"FlowMatchEulerDiscreteScheduler expects a velocity (flow) prediction. " + _SUGGEST)
        if float(s.shift) != 1.0:
            raise ExportError(
                f"flow schedule with shift {s.shift:g}: diffstudio's flow target is dx/dt of the shifted "
                f"schedule, s'(t) (eps - x0), while diffusers' FlowMatchEulerDiscreteScheduler expects "
                f"dx/dsigma = eps - x0; they agree only for shift 1. " + _SUGGEST)
        return "FlowMatchEulerDiscreteScheduler", {"num_train_timesteps": 1000, "shift": float(s.shift),
                                                   "use_dynamic_shifting": False}
    raise ExportError(f"the {s.family!r} schedule is continuous in t; diffusers' schedulers here use beta "
                      f"schedules or rectified flow only. " + _SUGGEST)


def export_diffusers(ckpt: Checkpoint, config: Config, spec: dict[str, Any], weights: dict[str, Tensor],
                     out_dir: Path) -> Path:
    """Write ``out_dir`` as a diffusers pipeline folder (``unet/``, ``scheduler/``, ``vae/`` for a latent
    run, ``model_index.json``, ``diffstudio.json``) atomically. Raises :class:`ExportError` for a
    model or schedule diffusers cannot express, or an ``out_dir`` that is not empty nor a previous export."""
    if spec.get("kind") != "unet":
        raise ExportError(f"the {spec.get('kind')!r} model (2-D points) has no diffusers equivalent; "
                          f"diffusers exports UNet image models only. " + _SUGGEST)
    scheduler_name, scheduler_cfg = scheduler_config(config)
    _warn_if_degenerate(config)
    model = _model_with(spec, weights)
    scheduler = diffusers_class(scheduler_name)(**scheduler_cfg)
    info = {"format": "diffstudio-export", "version": 1, "step": ckpt.step, "source": str(ckpt.path),
            "weights": "ema" if ckpt.ema else "model", "null_label": spec.get("num_classes") or None,
            "config": config.to_dict(), "model_spec": spec}
    index = {"_class_name": "DDPMPipeline", "_diffusers_version": importlib.metadata.version("diffusers"),
             "scheduler": ["diffusers", scheduler_name], "unet": ["diffusers", "UNet2DModel"]}
    codec = _vae_of(config)
    if codec is not None:
        index, info["latent"] = latent_index(index, codec), latent_info(codec)

    def fill(tmp: Path) -> None:
        model.unet.save_pretrained(tmp / "unet", safe_serialization=True)
        if codec is not None:
            codec.vae.save_pretrained(tmp / "vae", safe_serialization=True)
        scheduler.save_config(tmp / "scheduler")
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        (tmp / "diffstudio.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp made it private; an export is meant to be shared
        _clear_target(out_dir)

    atomic_replace_dir(fill, out_dir)
    return out_dir


def _vae_of(config: Config):
    """The run's VAE (``data.vae``), read from its folder, or None for a pixel-space run."""
    if not config.data.vae:
        return None
    from diffstudio.models.vae import VaeError, load_vae

    try:
        return load_vae(config.data.vae)
    except VaeError as e:
        raise ExportError(f"the run trained on the latents of the VAE {config.data.vae}, which is needed to export "
                          f"it: {e}") from None


def latent_index(index: dict[str, Any], codec) -> dict[str, Any]:
    """``model_index.json`` of a latent model: unet/, vae/ and scheduler/. diffusers has no
    unconditional latent pipeline for an AutoencoderKL (its ``LDMPipeline`` expects a VQModel and
    ignores ``shift_factor``), so the index names the generic ``DiffusionPipeline`` and the
    components are loaded one by one (README, "Latent diffusion")."""
    return {"_class_name": "DiffusionPipeline", "_diffusers_version": index["_diffusers_version"],
            "scheduler": index["scheduler"], "unet": index["unet"], "vae": ["diffusers", "AutoencoderKL"]}


def latent_info(codec) -> dict[str, Any]:
    """What ``diffstudio.json`` says about a latent model's VAE and how to sample it."""
    return {"vae_source": codec.source, "scaling_factor": codec.scaling_factor, "shift_factor": codec.shift_factor,
            "latent_channels": codec.latent_channels, "downsampling": codec.factor,
            "decode": "image = vae.decode(latents / scaling_factor + shift_factor).sample  (in [-1, 1])"}


EXPORT_ENTRIES = frozenset({"model_index.json", "diffstudio.json", "unet", "vae", "scheduler"})
"""What a diffusers export writes; a folder holding anything else is not only a previous export."""


def _not_replaceable(out_dir: Path) -> str:
    """Why the existing, non-empty ``out_dir`` must not be replaced ("" when it may): only a
    diffstudio export and nothing else may (its ``diffstudio.json`` says ``"format":
    "diffstudio-export"`` and it holds only :data:`EXPORT_ENTRIES`). Someone else's diffusers
    pipeline (it too has ``model_index.json``) or the user's files beside an export are kept."""
    try:
        info = json.loads((out_dir / "diffstudio.json").read_text(encoding="utf-8"))
        ours = isinstance(info, dict) and info.get("format") == "diffstudio-export"
    except (OSError, ValueError):
        ours = False
    if not ours:
        return ("a diffusers folder that diffstudio did not export" if (out_dir / "model_index.json").is_file()
                else "not empty")
    extra = sorted(entry.name for entry in out_dir.iterdir() if entry.name not in EXPORT_ENTRIES)
    return f"not empty: it holds {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''} beside an export" \
        if extra else ""


def _clear_target(out_dir: Path) -> None:
    """Make room for the new export: an empty folder or a previous diffstudio export (nothing but
    its own files) is moved away; any other existing folder is refused, never deleted."""
    if not out_dir.exists():
        return
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
        return
    why = _not_replaceable(out_dir) if out_dir.is_dir() else "a file"
    if why:
        raise ExportError(f"{out_dir} exists and is {why}; choose a new or empty folder (only a previous "
                          f"diffstudio export, holding nothing else, is replaced)")
    trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    os.replace(out_dir, trash / out_dir.name)
    shutil.rmtree(trash, ignore_errors=True)


def _warn_if_degenerate(config: Config) -> None:
    s, o = config.schedule, config.objective
    if s.family in DISCRETE_FAMILIES and s.ztsnr and o.parameterization == "eps":
        warnings.warn("eps prediction with zero terminal SNR: at the last training timestep diffusers' "
                      "DDIM divides by alpha = 0 (NaN with trailing spacing). Prefer v prediction.",
                      ExportWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------------
# safetensors


def export_safetensors(ckpt: Checkpoint, config: Config, spec: dict[str, Any], weights: dict[str, Tensor],
                       out_dir: Path) -> Path:
    """Write the model's weights, with its config and spec in the safetensors metadata, as
    ``out_dir`` (a ``.safetensors`` path) or a file in it named after the run and step. Raises
    :class:`ExportError` when the weights do not fit the spec."""
    from safetensors.torch import save_file

    model = _model_with(spec, weights)  # checks that the weights fit the spec
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", "diffstudio": "1", "weights": "ema" if ckpt.ema else "model",
                "step": json.dumps(ckpt.step), "config": json.dumps(config.to_dict()), "model_spec": json.dumps(spec)}
    path = out_dir if out_dir.suffix == ".safetensors" else out_dir / f"{_export_name(ckpt)}.safetensors"
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    os.chmod(path, 0o644)  # mkstemp made it private; an export is meant to be shared
    return path


def _export_name(ckpt: Checkpoint) -> str:
    p = ckpt.path
    run = p.parent.parent.name if p.parent.name == "checkpoints" else p.stem
    step = f"step-{int(ckpt.step):06d}" if isinstance(ckpt.step, int) else "model"
    return f"{run}-{step}" if run and run != step else step


__all__ = ["ExportError", "ExportWarning", "FORMATS", "export", "scheduler_config"]
