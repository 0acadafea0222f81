"""Sampling from a trained model: previews during training, the CLI's ``sample``, the app's
"Sample now". Fixed seeds give the same start noise every time, so previews are comparable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffstudio.core.denoiser import Denoiser
from diffstudio.core.grids import sampling_grid
from diffstudio.core.samplers import sample
from diffstudio.data.pixels import image_grid
from diffstudio.engine.config import Config, SamplingConfig
from diffstudio.engine.preview import Preview
from diffstudio.models.info import DataInfo


def to_grid(samples: torch.Tensor | np.ndarray, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile (N, C, H, W) images in [-1, 1] into one uint8 (H', W', 3) picture
    (:func:`diffstudio.data.pixels.image_grid`, the one conversion to pixels)."""
    return image_grid(samples, nrow=nrow, pad=pad)


def _labels(info: DataInfo, n: int, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Class labels cycling through the classes (so a grid shows each), and the null label."""
    if info.num_classes <= 0:
        return None, None
    cond = torch.arange(n, device=device) % info.num_classes
    return cond, torch.full_like(cond, info.num_classes)


def start_noise(info: DataInfo, n: int, seed: int | torch.Generator, device) -> torch.Tensor:
    """Pure noise N(0, I), float32, drawn on the CPU from ``seed`` (an int, or a CPU generator that
    then goes on to give the sampler's fresh noise) and moved to ``device``."""
    shape = (n, 2) if info.kind == "points" else (n, info.channels, info.resolution, info.resolution)
    g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(device)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    config: Config,
    info: DataInfo,
    *,
    n: int | None = None,
    seed: int | None = None,
    sampling: SamplingConfig | None = None,
    device: str | torch.device = "cpu",
    step: int = 0,
    on_singular: str = "warn",
) -> Preview:
    """Sample ``n`` items with the configured sampler; record the trajectory of the first.

    Random numbers come from one CPU ``torch.Generator`` seeded with ``seed`` (default: the config's):
    first the start noise, then each step's fresh noise, in the order diffusers' pipelines draw them
    (``DDPMPipeline(...)(generator=torch.Generator().manual_seed(seed))`` gives the same images)."""
    s = sampling or config.sampling
    n = n or s.num_samples
    schedule = config.schedule.build()
    cond, uncond = _labels(info, n, device)
    denoise = Denoiser(model, schedule, config.objective.parameterization, cond, uncond,
                       s.guidance_scale, s.guidance_rescale, on_singular)
    grid = sampling_grid(schedule, s.steps, s.spacing, shift=s.shift)
    g = torch.Generator().manual_seed(s.seed if seed is None else seed)
    x = start_noise(info, n, g, device)  # pure noise first, as every pipeline
    trajectory: list[tuple[float, np.ndarray, np.ndarray]] = []

    def record(i: int, t: float, x_t: torch.Tensor, x0: torch.Tensor) -> None:
        trajectory.append((t, x_t[0].float().cpu().numpy(), x0[0].float().cpu().numpy()))

    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sample(s.sampler, denoise, x, grid, schedule, eta=s.eta, generator=g, callback=record)
    trajectory.append((0.0, out[0].float().cpu().numpy(), out[0].float().cpu().numpy()))
    return _preview(out.float().cpu(), info, step, cond, trajectory, sorted({str(w.message) for w in caught}))


def _preview(out: torch.Tensor, info: DataInfo, step: int, cond, trajectory, warns) -> Preview:
    labels = None if cond is None else cond.cpu().numpy()
    if info.kind == "points":
        return Preview(step, "points", out.numpy(), labels, trajectory=trajectory, warnings=warns)
    return Preview(step, "image", out.numpy(), labels, grid=to_grid(out),
                   mean_brightness=out.flatten(1).mean(1).numpy(), trajectory=trajectory, warnings=warns)


@dataclass
class Loaded:
    """A model read for sampling (:func:`load_for_sampling`): the network, the run's config, the
    data it was fitted to, the step and the checkpoint's path."""
    model: torch.nn.Module
    config: Config
    data_info: DataInfo
    step: int
    path: Path


def load_for_sampling(source: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """A run folder or checkpoint folder -> its model with EMA weights (if any), in eval mode."""
    from diffstudio.engine.checkpoint import load_checkpoint
    from diffstudio.models.build import model_from_spec

    ckpt = load_checkpoint(source)
    meta = ckpt.meta
    model = model_from_spec(meta["model_spec"])
    model.load_state_dict(ckpt.model)
    if ckpt.ema:
        ema = {k.removeprefix("module."): v for k, v in ckpt.ema.items() if k.startswith("module.")}
        model.load_state_dict(ema)
    model.to(device).eval()
    info = DataInfo(**meta["data_info"])
    return Loaded(model, Config.from_dict(meta["config"]), info, int(meta["step"]), Path(ckpt.path))
