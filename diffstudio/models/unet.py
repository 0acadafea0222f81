"""Image backbones: diffusers' ``UNet2DModel`` in three presets sized by resolution.

diffusers is imported only when a model is built (importing it takes seconds and the GUI imports
the engine at start-up). The wrapper keeps the one model contract
``model(x_t, timestep, cond) -> prediction`` and a JSON-able ``spec`` that rebuilds it."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from diffstudio.models.diffusers_folder import diffusers_class

from diffstudio.models.info import DataInfo

Tensor = torch.Tensor
SPEC_VERSION = 1

# block_out_channels per resolution band (8: 8x8 digits, 16, 32, 64: 64 and larger); attention at
# every level whose feature map is at most `attn_res` pixels wide (never the full-resolution level).
# 128 and 256 px add levels (down to 8 px at the bottom, as diffusers' 128-256 px examples) rather than width.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"channels": {8: (32, 64), 16: (32, 32, 64), 32: (32, 32, 64), 64: (32, 32, 64, 64),
                          128: (32, 32, 64, 64, 128), 256: (32, 32, 64, 64, 128, 128)},
             "layers_per_block": 1, "attn_res": 0, "mid_attention": False},
    "small": {"channels": {8: (64, 128), 16: (64, 128, 128), 32: (64, 128, 128), 64: (64, 128, 128, 256),
                           128: (64, 64, 128, 128, 256), 256: (64, 64, 128, 128, 256, 256)},
              "layers_per_block": 2, "attn_res": 8, "mid_attention": True},
    "base": {"channels": {8: (128, 256), 16: (128, 256, 256), 32: (128, 256, 256), 64: (128, 256, 256, 256),
                          128: (128, 128, 256, 256, 512), 256: (128, 128, 256, 256, 512, 512)},
             "layers_per_block": 2, "attn_res": 16, "mid_attention": True},
}
BANDS = (8, 16, 32, 64, 128, 256)
UNET_PRESETS = tuple(PRESETS)


def _band(resolution: int) -> int:
    """The preset column for ``resolution``: the smallest band that holds it (256 beyond)."""
    return next((b for b in BANDS if resolution <= b), BANDS[-1])


def _levels(resolution: int, wanted: int) -> int:
    """As many of the ``wanted`` levels as halve the image evenly down to at least 2 pixels."""
    levels = wanted
    while levels > 1 and (resolution % 2 ** (levels - 1) or resolution // 2 ** (levels - 1) < 2):
        levels -= 1
    return levels


def _norm_groups(channels: tuple[int, ...]) -> int:
    """The largest of 32, 16, ... 1 that divides every channel count (GroupNorm's requirement)."""
    g = math.gcd(*channels)
    return next(n for n in (32, 16, 8, 4, 2, 1) if g % n == 0)


def unet_config(preset: str, channels: int, resolution: int, num_classes: int = 0) -> dict[str, Any]:
    """``UNet2DModel`` keyword arguments for a preset; ``num_classes > 0`` adds a label embedding
    with ``num_classes + 1`` rows (the last is the null label).
    ``resolution`` in pixels. Raises ValueError for an unknown preset."""
    if preset not in PRESETS:
        raise ValueError(f"preset: unknown {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    wanted = p["channels"][_band(resolution)]
    boc = tuple(wanted[: _levels(resolution, len(wanted))])
    attn = [i > 0 and resolution // 2**i <= p["attn_res"] for i in range(len(boc))]
    return {
        "sample_size": resolution,
        "in_channels": channels,
        "out_channels": channels,
        "block_out_channels": list(boc),
        "layers_per_block": p["layers_per_block"],
        "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
        "add_attention": p["mid_attention"],
        "attention_head_dim": 32,
        "norm_num_groups": _norm_groups(boc),
        "num_class_embeds": num_classes + 1 if num_classes > 0 else None,
    }


def unet_spec(preset: str, data: DataInfo, num_classes: int = 0) -> dict[str, Any]:
    """The JSON-able description :func:`~diffstudio.models.build.model_from_spec` rebuilds from."""
    return {
        "kind": "unet",
        "version": SPEC_VERSION,
        "preset": preset,
        "data": data.to_dict(),
        "num_classes": int(num_classes),
        "unet": unet_config(preset, data.channels, data.resolution, num_classes),
    }


def unet_init_keys() -> frozenset[str]:
    """The keyword arguments ``UNet2DModel.__init__`` accepts (imports diffusers)."""
    import inspect

    UNet2DModel = diffusers_class("UNet2DModel")

    return frozenset(k for k in inspect.signature(UNet2DModel.__init__).parameters if k != "self")


def foreign_unet_config(config: dict[str, Any]) -> dict[str, Any]:
    """A diffusers ``UNet2DModel`` ``config.json`` reduced to the constructor's keyword arguments
    (drops ``_class_name``, ``_diffusers_version`` and keys of other diffusers versions), as
    JSON-able values (tuples become lists)."""
    keys = unet_init_keys()
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items() if k in keys}


def pretrained_unet_spec(unet_kwargs: dict[str, Any], data: DataInfo, num_classes: int, source: str) -> dict[str, Any]:
    """The spec of a UNet whose architecture comes from a pretrained model's config rather than a
    preset: ``unet_kwargs`` are ``UNet2DModel`` keyword arguments (see :func:`foreign_unet_config`),
    ``num_classes`` the classes it is conditioned on (label embedding of ``num_classes + 1`` rows,
    the last the null label; 0: none), ``source`` where the weights came from (kept for the record)."""
    return {
        "kind": "unet",
        "version": SPEC_VERSION,
        "preset": "pretrained",
        "init_from": str(source),
        "data": data.to_dict(),
        "num_classes": int(num_classes),
        "unet": copy.deepcopy(unet_kwargs),
    }


class UNetModel(nn.Module):
    """``model(x_t (B,C,H,W), timestep (B,), cond (B,) int64 | None) -> (B,C,H,W)``.

    ``.unet`` is the diffusers ``UNet2DModel`` (export calls its ``save_pretrained``); ``.spec``
    rebuilds the same architecture. A conditional model reads ``cond=None`` as all-null labels
    (index ``num_classes``); an unconditional one ignores ``cond``."""

    def __init__(self, spec: dict[str, Any]):
        super().__init__()
        UNet2DModel = diffusers_class("UNet2DModel")  # slow import: only when a model is built

        self.spec = copy.deepcopy(spec)
        self.num_classes = int(spec.get("num_classes", 0))
        self.unet = UNet2DModel(**spec["unet"])

    def forward(self, x_t: Tensor, timestep: Tensor, cond: Tensor | None = None) -> Tensor:
        """``x_t`` (B, C, H, W), ``timestep`` (B,) or a scalar (broadcast; the schedule's
        :meth:`~diffstudio.core.schedules.Schedule.timestep`), ``cond`` (B,) int64 or None -> the
        prediction (B, C, H, W): ``UNet2DModel(x_t, timestep, class_labels=...).sample``."""
        timestep = torch.as_tensor(timestep, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        labels = None
        if self.num_classes > 0:
            labels = null_labels(x_t.shape[0], self.num_classes, x_t.device) if cond is None else cond
        return self.unet(x_t, timestep, class_labels=labels).sample


def null_labels(batch: int, num_classes: int, device: torch.device | str = "cpu") -> Tensor:
    """The "no class" label (index ``num_classes``) for a whole batch."""
    return torch.full((batch,), num_classes, dtype=torch.int64, device=device)
