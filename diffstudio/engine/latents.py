"""Latent diffusion with the user's VAE (``data.vae``): encode a dataset once into a latent cache,
and decode what the model produces back to images.

The cache holds each image's posterior (mean and std, scaled by the VAE's ``scaling_factor`` and
``shift_factor``: :class:`~diffstudio.models.vae.LatentCodec`) in one safetensors file under
``<diffstudio cache>/latents/``, keyed by a hash of the pixels, the labels, the VAE (folder,
config, weight files' sizes and times) and ``hflip``; a second run with the same data and VAE
reads it back instead of encoding.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from diffstudio.data.latents import LatentDataset
from diffstudio.data.stats import dataset_shape, pixel_chunks
from diffstudio.engine.config import ConfigError
from diffstudio.models.vae import LatentCodec, VaeError, load_vae

Tensor = torch.Tensor
Say = Callable[[str, str], None]
CACHE_VERSION = 1


def load_codec(path: str | Path, device: torch.device | str = "cpu") -> LatentCodec:
    """The VAE ``data.vae`` names, on ``device``; a bad folder is a ``ConfigError`` on ``data.vae``."""
    try:
        return load_vae(path).to(device)
    except VaeError as e:
        raise ConfigError([("data.vae", str(e))]) from None


def latent_cache_dir() -> Path:
    """``<diffstudio cache>/latents`` (beside the folder cache's ``datasets``; ``$DIFFSTUDIO_CACHE``)."""
    from diffstudio.data.folder_cache import cache_dir

    return cache_dir().parent / "latents"


def _pixels(x: Tensor) -> Tensor:
    """float32 in [-1, 1] from float images or uint8 pixels."""
    return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()


def _stored_dtype(data) -> str:
    """The torch dtype the images are stored in ("torch.uint8" for a streamed folder cache)."""
    x = getattr(data, "x", None)
    return str(torch.uint8 if x is None else x.dtype)


def cache_key(data, codec: LatentCodec, hflip: bool) -> str:
    """A hash of everything the latents depend on (see the module docstring); the same for a folder
    held on the device and streamed from its cache (the pixels are read in chunks either way)."""
    shape = [len(data), *dataset_shape(data)]
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "vae": codec.fingerprint(), "hflip": bool(hflip),
                                   "shape": shape, "dtype": _stored_dtype(data)},
                                  sort_keys=True, default=str).encode())
    for chunk in pixel_chunks(data):
        h.update(np.ascontiguousarray(chunk).tobytes())
    if getattr(data, "labels", None) is not None:
        h.update(data.labels.cpu().numpy().astype(np.int64).tobytes())
    return h.hexdigest()[:32]


def check_compatible(data, codec: LatentCodec) -> None:
    """The images must have the VAE's channels and a side divisible by its downsampling factor."""
    if data.kind != "image":
        raise ConfigError([("data.vae", "a VAE encodes images; the data are 2-D points")])
    if data.channels != codec.in_channels:
        raise ConfigError([("data.vae", f"the VAE takes {codec.in_channels}-channel images and the data have "
                                        f"{data.channels}: set data.channels={codec.in_channels}")])
    if data.resolution % codec.factor:
        raise ConfigError([("data.vae", f"the VAE downsamples by {codec.factor}; {data.resolution} px is not a "
                                        f"multiple: set data.resolution to one")])


@torch.no_grad()
def encode_images(codec: LatentCodec, x: Tensor, batch_size: int = 16,
                  progress: Callable[[int, int], None] | None = None) -> tuple[Tensor, Tensor]:
    """``(mean, std)`` (N, c, H/f, W/f) float32 on the CPU of ``x`` (N, C, H, W) (float in [-1, 1]
    or uint8), encoded ``batch_size`` at a time on the codec's device."""
    device = next(codec.parameters()).device
    means, stds = [], []
    for i in range(0, len(x), batch_size):
        m, s = codec.encode(_pixels(x[i:i + batch_size]).to(device))
        means.append(m.cpu())
        stds.append(s.cpu())
        if progress is not None:
            progress(min(len(x), i + batch_size), len(x))
    return torch.cat(means), torch.cat(stds)


def encode_dataset(data, codec: LatentCodec, *, hflip: bool = False, batch_size: int = 16,
                   say: Say | None = None, cache: bool = True) -> LatentDataset:
    """The :class:`LatentDataset` of ``data`` (an image dataset with ``.x``, ``.labels``,
    ``.class_names``), read from the latent cache or encoded and written to it. With ``hflip`` the
    mirrored images are encoded too. Raises ``ConfigError`` (``data.vae``) when they do not fit."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    check_compatible(data, codec)
    path = latent_cache_dir() / f"{cache_key(data, codec, hflip)}.safetensors" if cache else None
    names = ("mean", "std", "flip_mean", "flip_std") if hflip else ("mean", "std")
    if path is not None and path.is_file():
        try:
            with safe_open(str(path), framework="pt") as f:
                t = {k: f.get_tensor(k) for k in names}
            if say:
                say("info", f"latents of {len(data)} images read from the cache {path}")
            return _dataset(data, t)
        except Exception:  # a damaged cache file is simply encoded again
            pass
    t0 = time.perf_counter()
    if say:
        say("info", f"encoding {len(data)} images{' (and their mirror images)' if hflip else ''} with the VAE "
                    f"{codec.source} (once; the latents are cached)")
    t: dict[str, Tensor] = {}
    t["mean"], t["std"] = _encode_chunks(codec, data, batch_size, flip=False)
    if hflip:
        t["flip_mean"], t["flip_std"] = _encode_chunks(codec, data, batch_size, flip=True)
    if say:
        say("info", f"encoded {len(data)} images in {time.perf_counter() - t0:.1f} s: latents "
                    f"{tuple(t['mean'].shape[1:])}")
    if path is not None:
        from diffstudio.engine.atomic import atomic_write

        atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in t.items()}, tmp,
                                                 metadata={"format": "pt", "diffstudio-latents": str(CACHE_VERSION)}))
    return _dataset(data, t)


def _encode_chunks(codec: LatentCodec, data, batch_size: int, flip: bool) -> tuple[Tensor, Tensor]:
    """:func:`encode_images` of every image of ``data`` (mirrored with ``flip``), read in chunks
    (:func:`~diffstudio.data.stats.pixel_chunks`), so a folder streamed from its cache is never
    held whole."""
    means, stds = [], []
    for chunk in pixel_chunks(data):
        x = torch.from_numpy(np.ascontiguousarray(chunk))
        m, s = encode_images(codec, x.flip(-1) if flip else x, batch_size)
        means.append(m)
        stds.append(s)
    return torch.cat(means), torch.cat(stds)


def _dataset(data, t: dict[str, Tensor]) -> LatentDataset:
    labels = getattr(data, "labels", None)
    return LatentDataset(t["mean"], t["std"], None if labels is None else labels.cpu(),
                         list(getattr(data, "class_names", []) or []), getattr(data, "name", ""),
                         t.get("flip_mean"), t.get("flip_std"))


@torch.no_grad()
def decode_latents(codec: LatentCodec, z: Tensor, batch_size: int = 16) -> Tensor:
    """Images (N, C, H, W) float32 on the CPU, not clamped, decoded ``batch_size`` at a time."""
    device = next(codec.parameters()).device
    return torch.cat([codec.decode(z[i:i + batch_size].to(device)).cpu() for i in range(0, len(z), batch_size)])


def decode_preview(preview, codec: LatentCodec):
    """A :class:`~diffstudio.engine.sampling.Preview` of latents -> the same preview in images:
    samples decoded, the grid and the mean brightness recomputed from them, and the trajectory's
    ``x_t`` and ``x0_hat`` decoded (what the model sees at each step, as an image)."""
    from diffstudio.engine.sampling import to_grid

    samples = decode_latents(codec, torch.from_numpy(np.ascontiguousarray(preview.samples)))
    trajectory = preview.trajectory
    if trajectory:
        stacked = torch.from_numpy(np.stack([a for _, x_t, x0 in trajectory for a in (x_t, x0)]))
        images = decode_latents(codec, stacked).numpy()
        trajectory = [(t, images[2 * i], images[2 * i + 1]) for i, (t, _, _) in enumerate(trajectory)]
    return replace(preview, samples=samples.numpy(), grid=to_grid(samples),
                   mean_brightness=samples.flatten(1).mean(1).numpy(), trajectory=trajectory)


__all__ = ["cache_key", "decode_latents", "decode_preview", "encode_dataset", "encode_images", "latent_cache_dir",
           "load_codec"]


def decoded_if_latent(preview, config, device: torch.device | str = "cpu"):
    """``preview`` as images: decoded with ``config.data.vae`` when the run trained on latents,
    else unchanged. The one place the CLI's ``sample`` and the app's "Sample now" decode."""
    if not getattr(config.data, "vae", ""):
        return preview
    return decode_preview(preview, load_codec(config.data.vae, device))
