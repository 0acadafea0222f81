"""The user's VAE for latent diffusion: a diffusers ``AutoencoderKL`` read from a folder.

Latents are scaled as Stable Diffusion and its successors scale them (diffusers' pipelines):
``z = (mean - shift_factor) * scaling_factor`` on the way in, ``x = decode(z / scaling_factor +
shift_factor)`` on the way out; ``shift_factor`` is 0 where the VAE's config has none (SD 1.x/XL)
and set for SD3 and Flux. Only safetensors weights are read (never a pickle); nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffstudio.models.diffusers_folder import diffusers_class, folder_problem

Tensor = torch.Tensor


class VaeError(ValueError):
    """The folder is not a usable AutoencoderKL; the message says why."""


def vae_folder(path: str | Path) -> Path:
    """The AutoencoderKL folder ``path`` refers to: itself, or a pipeline folder's ``vae/``.

    Raises :class:`VaeError` when ``path`` does not exist, is not a folder, or has neither
    ``config.json`` nor ``vae/config.json`` (the weights are checked by the loaders)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise VaeError(f"{p} does not exist (give a folder you have; nothing is downloaded)")
    if not p.is_dir():
        raise VaeError(f"{p} is not a folder (give a diffusers AutoencoderKL folder or a pipeline folder with vae/)")
    if (p / "vae" / "config.json").is_file():
        return p / "vae"
    if not (p / "config.json").is_file():
        raise VaeError(f"{p} has neither config.json nor vae/config.json: not a diffusers AutoencoderKL folder")
    return p


class LatentCodec(nn.Module):
    """Encode images in [-1, 1] to scaled latents and decode them back.

    ``encode(x (B, C, H, W)) -> (mean, std)``, each ``(B, c, H/f, W/f)`` in scaled units (the
    posterior N(mean, std²) of the VAE, shifted and scaled); ``decode(z) -> x (B, C, H, W)``
    (not clamped). ``f = 2 ** (len(block_out_channels) - 1)``."""

    def __init__(self, vae: nn.Module, source: str):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.source = source
        cfg = vae.config
        self.scaling_factor = float(cfg.get("scaling_factor") or 1.0)
        self.shift_factor = float(cfg.get("shift_factor") or 0.0)
        self.in_channels, self.latent_channels, self.factor = latent_geometry(cfg)

    @torch.no_grad()
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, std)`` float32, each ``(B, latent_channels, H/f, W/f)``, of the scaled posterior of
        ``x`` (B, in_channels, H, W) in [-1, 1]: ``(mean - shift_factor) * scaling_factor`` and
        ``std * scaling_factor``, as diffusers' SD3 img2img pipeline scales ``vae.encode(...).latent_dist``
        (``StableDiffusion3Img2ImgPipeline.prepare_latents``; SD 1.x has no shift). No gradient."""
        post = self.vae.encode(x.to(self._dtype)).latent_dist
        mean = (post.mean.float() - self.shift_factor) * self.scaling_factor
        return mean, post.std.float() * self.scaling_factor

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Images ``(B, in_channels, H*f, W*f)`` float32, about [-1, 1] and not clamped, from scaled
        latents ``z`` (B, latent_channels, H, W): ``vae.decode(z / scaling_factor + shift_factor)``, as
        diffusers' pipelines decode (``StableDiffusion3Pipeline.__call__``). No gradient."""
        return self.vae.decode((z / self.scaling_factor + self.shift_factor).to(self._dtype)).sample.float()

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def fingerprint(self) -> dict:
        """What identifies the weights without reading them: folder, config and the weight files'
        sizes and modification times (a cache key; see engine.latents)."""
        folder = Path(self.source)
        files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.glob("*.safetensors"))
        return {"folder": str(folder.resolve()), "config": json.loads(json.dumps(dict(self.vae.config), default=str)),
                "files": files}


def _checked_folder(path: str | Path) -> Path:
    """:func:`vae_folder`, refused (VaeError) unless it holds an AutoencoderKL in safetensors."""
    folder = vae_folder(path)
    problem = folder_problem(folder, "AutoencoderKL", "VAE", {"UNet2DModel": " (a UNet goes into model.init_from)"})
    if problem:
        raise VaeError(problem)
    return folder


def latent_geometry(config: Mapping[str, Any]) -> tuple[int, int, int]:
    """``(image channels, latent channels, downsampling factor)`` of an AutoencoderKL config, with
    diffusers' defaults (3, 4, one level): the factor is ``2 ** (len(block_out_channels) - 1)``, as
    ``AutoencoderKL`` downsamples once between consecutive encoder blocks."""
    return (int(config.get("in_channels", 3)), int(config.get("latent_channels", 4)),
            2 ** (len(config.get("block_out_channels", (64,))) - 1))


def read_latent_geometry(path: str | Path) -> tuple[int, int, int]:
    """:func:`latent_geometry` of the VAE at ``path`` from its ``config.json`` alone (JSON; no
    weights are read, so it is instant even for an SD-sized VAE). Raises :class:`VaeError`."""
    folder = _checked_folder(path)
    try:
        return latent_geometry(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise VaeError(f"{folder / 'config.json'} could not be read ({e})") from None


def load_vae(path: str | Path) -> LatentCodec:
    """The :class:`LatentCodec` of the AutoencoderKL at ``path`` (``AutoencoderKL.from_pretrained``
    with ``use_safetensors=True``). Raises :class:`VaeError`."""
    folder = _checked_folder(path)
    AutoencoderKL = diffusers_class("AutoencoderKL")

    try:
        vae = AutoencoderKL.from_pretrained(folder, use_safetensors=True, low_cpu_mem_usage=False)
    except Exception as e:  # diffusers raises OSError, ValueError, EnvironmentError ...
        raise VaeError(f"{folder} could not be read as an AutoencoderKL ({str(e).splitlines()[0]})") from None
    return LatentCodec(vae, str(folder))


__all__ = ["LatentCodec", "VaeError", "latent_geometry", "load_vae", "read_latent_geometry", "vae_folder"]
