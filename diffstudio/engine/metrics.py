"""Sample-quality measures used by tests, benchmarks and the app."""

from __future__ import annotations

import torch


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = 256, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between two point clouds (N, D) and (M, D): the mean over
    random unit directions of the 1-D Wasserstein distance of the projections (quantile matching)."""
    a, b = a.double().flatten(1), b.double().flatten(1)
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    dirs /= dirs.norm(dim=0, keepdim=True)
    pa, pb = (a @ dirs).sort(0).values, (b @ dirs).sort(0).values
    q = torch.linspace(0, 1, max(len(a), len(b)), dtype=torch.float64)
    qa = torch.quantile(pa, q, dim=0) if len(a) != len(q) else pa
    qb = torch.quantile(pb, q, dim=0) if len(b) != len(q) else pb
    return float((qa - qb).abs().mean())


def brightness_spread(samples: torch.Tensor, data: torch.Tensor) -> dict[str, float]:
    """Lin et al.'s uniform-lighting symptom: the spread of per-image mean brightness of samples
    over the data's, and the fractions of very dark (< -0.7) and very bright (> 0.7) images."""
    ms, md = samples.double().flatten(1).mean(1), data.double().flatten(1).mean(1)
    return {"spread_ratio": float(ms.std() / md.std()),
            "dark_fraction": float((ms < -0.7).double().mean()), "bright_fraction": float((ms > 0.7).double().mean()),
            "data_dark_fraction": float((md < -0.7).double().mean()),
            "data_bright_fraction": float((md > 0.7).double().mean())}
