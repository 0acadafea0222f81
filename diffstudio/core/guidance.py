"""Classifier-free guidance (Ho & Salimans 2022) with Lin et al. 2024's guidance rescale (eq. 15-16)."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def _std(x: Tensor) -> Tensor:
    """Per-sample standard deviation over every axis but the batch, in float64, shaped (B, 1, ...)
    to broadcast (float64 so that squares of large values do not overflow)."""
    return x.to(torch.float64).std(dim=tuple(range(1, x.dim())), keepdim=True)


def _spread_ratio(guided: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
    """``(std(cond) / std(guided), flat)`` per sample, float64 and bool, shaped (B, 1, ...).

    ``flat`` marks samples whose guided prediction has no spread above its own rounding
    (``std <= 8 eps_dtype max|guided|``, e.g. a flat-colour prediction, or a NaN std of a
    one-element sample): there the ratio is 0/0, nothing is to be rescaled, and it is set to 1."""
    spread_g, spread_c = _std(guided), _std(cond)
    dims = tuple(range(1, guided.dim()))
    scale = guided.to(torch.float64).abs().amax(dim=dims, keepdim=True)
    floor = 8.0 * torch.finfo(guided.dtype).eps * scale
    flat = ~(spread_g > floor)
    ratio = spread_c / torch.where(flat, torch.ones_like(spread_g), spread_g)
    flat = flat | ~torch.isfinite(ratio)
    return torch.where(flat, torch.ones_like(ratio), ratio), flat


def rescale_guidance(guided: Tensor, cond: Tensor, phi: float) -> Tensor:
    """Lin et al. 2024, eq. 15-16 (diffusers ``rescale_noise_cfg``): rescale the guided prediction
    to the conditional one's std, then mix by ``phi``:
    ``phi * guided * std(cond) / std(guided) + (1 - phi) * guided``.

    ``guided``, ``cond``: (B, ...) of one dtype; std is taken per sample over all other axes.
    ``phi`` in [0, 1]. A sample whose guided prediction has no spread is returned unchanged (the
    formula is 0/0 there), so the result is finite wherever the inputs are. Returns ``guided``'s
    shape and dtype."""
    if phi == 0:
        return guided
    ratio, flat = _spread_ratio(guided, cond)
    mixed = phi * (guided * ratio.to(dtype=guided.dtype, device=guided.device)) + (1.0 - phi) * guided
    return torch.where(flat.to(guided.device), guided, mixed)


def classifier_free_guidance(uncond: Tensor, cond: Tensor, scale: float, phi: float = 0.0) -> Tensor:
    """``uncond + scale (cond - uncond)`` (Ho & Salimans 2022, eq. 6 in prediction space), optionally
    rescaled by :func:`rescale_guidance` (phi in [0, 1]). Shapes (B, ...), returns the same."""
    guided = uncond + scale * (cond - uncond)
    return rescale_guidance(guided, cond, phi)
