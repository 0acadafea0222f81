"""Helpers shared by several test files: hooks that record what a Trainer says, small image folders,
tiny diffusers models and the blob dataset. Import them with ``from tests.helpers import ...``;
fixtures live in ``tests/conftest.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diffstudio.data.dataset import InMemoryDataset
from diffstudio.engine.config import Config
from diffstudio.engine.trainer import TrainerHooks


class Said(TrainerHooks):
    """Records every ``on_message``: ``messages`` holds the texts, ``said`` the ``(level, text)`` pairs."""

    def __init__(self):
        self.messages: list[str] = []
        self.said: list[tuple[str, str]] = []

    def on_message(self, level, text):
        self.messages.append(text)
        self.said.append((level, text))


class Previews(Said):
    """``Said`` that also keeps every ``on_preview`` in ``previews``."""

    def __init__(self):
        super().__init__()
        self.previews = []

    def on_preview(self, step, p):
        self.previews.append(p)


def choose(combo, data) -> None:
    """Select the item of a QComboBox whose data is ``data``; fails when there is none."""
    index = combo.findData(data)
    assert index >= 0, data
    combo.setCurrentIndex(index)


def folder(root: Path, count: int, seed: int = 0, size: tuple[int, int] = (20, 20)) -> Path:
    """``count`` random RGB PNGs of ``size`` (height, width) pixels named ``00.png``, ``01.png`` ... in a
    new folder ``root`` (from ``numpy.random.default_rng(seed)``); returns ``root``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
    return root


def tiny_vae(path, channels=3, shift=0.1, scaling=0.5):
    """A random AutoencoderKL (2 levels: downsampling by 2, 4 latent channels) saved as safetensors
    with ``save_pretrained`` at ``path``; returns it in eval mode."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=channels, out_channels=channels, block_out_channels=(8, 16), layers_per_block=1,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        latent_channels=4, norm_num_groups=4, sample_size=16, scaling_factor=scaling,
                        shift_factor=shift)
    vae.save_pretrained(path, safe_serialization=True)
    return vae.eval()


def tiny_unet(channels=1, size=8, classes=None, seed=0, distinctive=True):
    """A small random UNet2DModel (eval mode). ``distinctive`` adds ``0.02 * N(0, 1)`` to every weight,
    since diffusers zero-initialises some layers."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(16, 32),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=8,
                       num_class_embeds=classes)
    if distinctive:
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(0.02 * torch.randn_like(p))
    return unet.eval()


def blobs(n=16, channels=3, size=16, classes=0):
    """``n`` smooth random images (4x4 noise upsampled bilinearly to ``size`` px, in [-1, 1]) as the
    in-memory dataset "blobs", with ``classes`` round-robin labels when non-zero."""
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(n, channels, 4, 4, generator=g) * 2 - 1, size=size, mode="bilinear")
    labels = torch.arange(n) % classes if classes else None
    return InMemoryDataset(x.contiguous(), labels, [f"c{i}" for i in range(classes)], name="blobs")


def latent_config(tmp_path, vae, **run) -> Config:
    """A tiny v-prediction ZTSNR run on the blobs encoded by the VAE at ``vae``; ``run`` overrides run.*."""
    return Config().updated(
        data={"source": "blobs", "vae": str(vae)}, model={"preset": "tiny", "class_conditional": False},
        schedule={"family": "scaled_linear", "ztsnr": True}, objective={"parameterization": "v"},
        optim={"batch_size": 8, "warmup_steps": 2},
        sampling={"sampler": "ddim", "eta": 0.0, "steps": 10, "spacing": "trailing", "num_samples": 4},
        run={"steps": 5, "out_dir": str(tmp_path), "preview_every": 5, "checkpoint_every": 5, "log_every": 1, **run})
