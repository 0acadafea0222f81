"""The 2-D toy backbone: an MLP on points (B, D) with a sinusoidal time embedding."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from diffstudio.models.info import DataInfo

Tensor = torch.Tensor
SPEC_VERSION = 1


def sinusoidal_embedding(timestep: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer-style features of ``timestep`` (B,) -> (B, dim) (Vaswani et al. 2017, sec. 3.5),
    frequencies from 1 down to ``1 / max_period``: fine for timesteps from 0 to 1000."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=timestep.device, dtype=torch.float32) / half)
    args = timestep.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim - 2 * half))


def mlp_spec(data: DataInfo, width: int = 128, depth: int = 3, num_classes: int = 0) -> dict[str, Any]:
    """The spec of an :class:`MLPModel` for ``data`` (points of ``data.channels`` dimensions):
    ``width`` units, ``depth`` residual layers, ``num_classes`` (0: unconditional). Raises ValueError
    for ``width < 2`` or ``depth < 1``."""
    if width < 2 or depth < 1:
        raise ValueError(f"mlp: width must be >= 2 and depth >= 1, got width={width}, depth={depth}")
    return {"kind": "mlp", "version": SPEC_VERSION, "data": data.to_dict(), "dim": int(data.channels),
            "width": int(width), "depth": int(depth), "num_classes": int(num_classes)}


class MLPModel(nn.Module):
    """``model(x_t (B,D), timestep (B,), cond (B,) int64 | None) -> (B,D)``: residual SiLU layers
    ``h = h + W_k silu(h + e)`` where ``e`` embeds the timestep (and the class label; ``cond=None``
    is the null label ``num_classes``)."""

    def __init__(self, spec: dict[str, Any]):
        super().__init__()
        self.spec = copy.deepcopy(spec)
        dim, width, depth = int(spec["dim"]), int(spec["width"]), int(spec["depth"])
        self.num_classes = int(spec.get("num_classes", 0))
        self.width = width
        self.inp = nn.Linear(dim, width)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.label = nn.Embedding(self.num_classes + 1, width) if self.num_classes > 0 else None
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, dim)

    def forward(self, x_t: Tensor, timestep: Tensor, cond: Tensor | None = None) -> Tensor:
        """``x_t`` (B, D), ``timestep`` (B,) or a scalar (broadcast), ``cond`` (B,) int64 or None
        (the null label) -> the prediction (B, D)."""
        timestep = torch.as_tensor(timestep, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        e = self.time(sinusoidal_embedding(timestep, self.width))
        if self.label is not None:
            if cond is None:
                cond = torch.full((x_t.shape[0],), self.num_classes, dtype=torch.int64, device=x_t.device)
            e = e + self.label(cond)
        h = self.inp(x_t)
        for layer in self.layers:
            h = h + layer(F.silu(h + e))
        return self.out(F.silu(h))
