"""Classifier-free guidance (Ho & Salimans 2022) with Lin et al. 2024's guidance rescale (eq. 15-16)."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def _std(x: Tensor) -> Tensor:
    """Per-sample standard deviation over every axis but the batch, shaped to broadcast."""
    return x.std(dim=tuple(range(1, x.dim())), keepdim=True)


def rescale_guidance(guided: Tensor, cond: Tensor, phi: float) -> Tensor:
    """Rescale the guided prediction to the conditional one's std, then mix by ``phi``:
    ``phi * guided * std(cond) / std(guided) + (1 - phi) * guided``."""
    if phi == 0:
        return guided
    rescaled = guided * (_std(cond) / _std(guided))
    return phi * rescaled + (1.0 - phi) * guided


def classifier_free_guidance(uncond: Tensor, cond: Tensor, scale: float, phi: float = 0.0) -> Tensor:
    """``uncond + scale (cond - uncond)``, optionally rescaled (phi in [0, 1])."""
    guided = uncond + scale * (cond - uncond)
    return rescale_guidance(guided, cond, phi)
