"""Latent diffusion with the user's VAE (``data.vae``): encode a dataset once into a latent cache,
and decode what the model produces back to images.

The cache holds each image's posterior (mean and std, scaled by the VAE's ``scaling_factor`` and
``shift_factor``: :class:`~diffstudio.models.vae.LatentCodec`) in one safetensors file under
``<diffstudio cache>/latents/``, keyed by a hash of the pixels, the labels, the VAE (folder,
config, weight files' sizes and times) and ``hflip``; a second run with the same data and VAE
reads it back instead of encoding. While an encode runs, what it has done is appended to
``<key>.partial/`` (numbered safetensors shards, :mod:`diffstudio.engine.shard_log`), so a run
that is stopped or killed resumes where it was.
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
from diffstudio.data.stats import dataset_shape, image_bytes, pixel_chunks
from diffstudio.engine.config import ConfigError
from diffstudio.engine.shard_log import ShardLog
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
    """The images must have the VAE's channels and a side divisible by its downsampling factor.
    Raises ``ConfigError`` (field ``data.vae``) naming the setting to change otherwise."""
    if data.kind != "image":
        raise ConfigError([("data.vae", "a VAE encodes images; the data are 2-D points")])
    if data.channels != codec.in_channels:
        raise ConfigError([("data.vae", f"the VAE takes {codec.in_channels}-channel images and the data have "
                                        f"{data.channels}: set data.channels={codec.in_channels}")])
    if data.resolution % codec.factor:
        below = data.resolution // codec.factor * codec.factor
        choice = f"{below} or {below + codec.factor}" if below >= 4 else f"{below + codec.factor}"
        raise ConfigError([("data.vae", f"the VAE downsamples by {codec.factor}; {data.resolution} px is not a "
                                        f"multiple: set data.resolution to one (e.g. {choice})")])


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


SHARD_EVERY_S = 30.0
"""Seconds of encoding between two shards of a running encode: at most this (plus one batch) is
redone after a kill. Measured overhead: ``benchmarks/latent_shards.py``."""


def encode_dataset(data, codec: LatentCodec, *, hflip: bool = False, batch_size: int = 16,
                   say: Say | None = None, cache: bool = True,
                   should_cancel: Callable[[], bool] | None = None,
                   shard_every_s: float = SHARD_EVERY_S) -> LatentDataset:
    """The :class:`LatentDataset` of ``data`` (an in-memory image dataset with ``.x``, or a
    :class:`~diffstudio.data.streaming.StreamingDataset`, read chunk by chunk from its memory map;
    plus ``.labels``, ``.class_names``), read from the latent cache or encoded and written to it.
    With ``hflip`` the mirrored images are encoded too. ``say`` gets the progress (at most every
    2 s).

    Nothing encoded is lost on a crash: while encoding, the latents are appended to
    ``<key>.partial/`` beside the cache entry (:class:`~diffstudio.engine.shard_log.ShardLog`), one
    shard after the first batch that ends ``shard_every_s`` seconds (wall clock) or more after the
    previous shard (0: after every batch). Shards end on batch boundaries counted from image 0, so
    a run killed at any moment (or stopped by ``should_cancel()``) and run again encodes only the
    rest, in the same batches, and gives latents bit-identical to an uninterrupted encode; a
    damaged shard is dropped and its images encoded again. When ``should_cancel()`` turns true the
    latents done so far are kept and :class:`~diffstudio.data.errors.LoadCancelled` is raised.
    The complete entry replaces the shards. With ``cache=False`` nothing is read or written.

    Raises ``ConfigError`` (``data.vae``) when the images do not fit the VAE, and ``OSError``
    naming the file when a shard or the cache entry cannot be written (the shards written so far
    are kept)."""
    check_compatible(data, codec)
    path = latent_cache_dir() / f"{cache_key(data, codec, hflip)}.safetensors" if cache else None
    names = ("mean", "std", "flip_mean", "flip_std") if hflip else ("mean", "std")
    cached = _read_entry(path, names)
    if cached is not None:
        if say:
            say("info", f"latents of {len(data)} images read from the cache {path}")
        return _dataset(data, cached)
    log = None if path is None else ShardLog(path.with_name(path.stem + ".partial"), names)
    done = None if log is None else _resume(log, path.with_name(path.stem + ".partial.safetensors"))
    start = 0 if log is None else log.rows
    t0 = time.perf_counter()
    if say:
        resumed = f", resuming after {start:,} encoded before" if start else ""
        say("info", f"encoding {len(data):,} images{' (and their mirror images)' if hflip else ''} with the VAE "
                    f"{codec.source} (once; the latents are cached{resumed})")
    parts = {k: [done[k]] if done else [] for k in names}
    fresh: dict[str, list[Tensor]] = {k: [] for k in names}  # encoded since the last shard

    def keep() -> None:  # the fresh latents become the next shard
        if log is not None and fresh[names[0]]:
            log.append({k: torch.cat(v) for k, v in fresh.items()})
        for k in names:
            parts[k] += fresh[k]
            fresh[k] = []

    shown = last_shard = time.monotonic()
    encoded = start
    for chunk in pixel_chunks(data, start=start, chunk_bytes=batch_size * image_bytes(data)):
        chunk = torch.from_numpy(np.ascontiguousarray(chunk))
        if should_cancel is not None and should_cancel():
            keep()
            from diffstudio.data.errors import LoadCancelled

            raise LoadCancelled(f"Encoding the latents cancelled after {encoded:,} of {len(data):,} images; "
                                f"it resumes from there next time")
        for prefix, x in [("", chunk)] + ([("flip_", chunk.flip(-1))] if hflip else []):
            m, s = encode_images(codec, x, batch_size)
            fresh[prefix + "mean"].append(m)
            fresh[prefix + "std"].append(s)
        encoded += len(chunk)
        now = time.monotonic()
        if now - last_shard >= shard_every_s:
            keep()
            last_shard = time.monotonic()
        if say and now - shown >= 2.0:
            shown = now
            say("info", f"encoding latents: {encoded:,} / {len(data):,} images")
    t = {k: torch.cat(parts[k] + fresh[k]) for k in names}
    if say:
        say("info", f"encoded {len(data) - start:,} images in {time.perf_counter() - t0:.1f} s: latents "
                    f"{tuple(t['mean'].shape[1:])}")
    if path is not None:
        _save(t, path)
        log.remove()
    return _dataset(data, t)


def _read_entry(path: Path | None, names: tuple[str, ...]) -> dict[str, Tensor] | None:
    """The complete cache entry at ``path`` (a leftover ``.partial/`` beside it removed), or None
    when there is none or it is damaged (then it is encoded again)."""
    if path is None or not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            t = {k: f.get_tensor(k) for k in names}
    except Exception:  # a damaged cache file is simply encoded again
        return None
    ShardLog(path.with_name(path.stem + ".partial"), names).remove()  # killed before it was removed
    return t


def _resume(log: ShardLog, legacy: Path) -> dict[str, Tensor] | None:
    """The latents of an earlier, interrupted encode: ``log``'s valid shards; or, from a version
    that kept them in one ``<key>.partial.safetensors`` on cancel only, that file's (moved into
    ``log``)."""
    done = log.read()
    if done is None and legacy.is_file():
        done = _read_partial(legacy, log.names)
        if done is not None:
            log.append(done)
        legacy.unlink(missing_ok=True)
    return done


def _save(t: dict[str, Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    from diffstudio.engine.atomic import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in t.items()}, tmp,
                                             metadata={"format": "pt", "diffstudio-latents": str(CACHE_VERSION)}))


def _read_partial(partial: Path, names: tuple[str, ...]) -> dict[str, Tensor] | None:
    """The latents in a legacy ``<key>.partial.safetensors`` (all ``names``, equally long), or None."""
    from safetensors import safe_open

    try:
        with safe_open(str(partial), framework="pt") as f:
            t = {k: f.get_tensor(k) for k in names}
    except Exception:  # damaged or from another layout: start again
        return None
    return t if len({len(v) for v in t.values()}) == 1 and len(t["mean"]) else None


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
