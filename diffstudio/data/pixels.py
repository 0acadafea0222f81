"""Conversions between stored pixel formats and the float32 [-1, 1] training convention."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

_U16_HALF = 65535.0 / 2.0  # 32767.5: 65535 / _U16_HALF is exactly 2.0 in float32


def uint16_to_unit_range(pixels: np.ndarray) -> Tensor:
    """uint16 (N, C, H, W) -> float32 tensor in [-1, 1]: ``x = u / 32767.5 - 1``."""
    x = torch.from_numpy(pixels.astype(np.float32))
    return x.div_(_U16_HALF).sub_(1.0).clamp_(-1.0, 1.0)


def uint8_to_unit_range(pixels: Tensor) -> Tensor:
    """uint8 tensor (..., C, H, W) -> float32 on the same device: ``x = v / 127.5 - 1``.

    For an 8-bit source this is bit-identical to :func:`uint16_to_unit_range` of ``v * 257``
    (both are the correctly rounded quotient of the same rational). Used per batch by training,
    which keeps image data as uint8 (4x smaller than float32).
    """
    return pixels.to(torch.float32).div_(127.5).sub_(1.0).clamp_(-1.0, 1.0)


def uint16_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """uint16 (any shape) -> uint8, ``round(u / 257)``: exact for 8-bit sources (``u = 257 v``)."""
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)


def unit_range_to_exact_uint8(x: Tensor) -> Tensor | None:
    """float [-1, 1] -> uint8 ``v`` with ``uint8_to_unit_range(v) == x`` bit for bit, or None.

    None when some value is not one of the 256 levels (generated data such as ``lighting``):
    such data keeps its float32 storage rather than being quantised.
    """
    if x.dtype != torch.float32 or x.numel() == 0:
        return None
    v = ((x + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return v if torch.equal(uint8_to_unit_range(v), x) else None


def unit_range_to_uint8(x: Tensor | np.ndarray) -> np.ndarray:
    """float [-1, 1] (..., C, H, W) torch or numpy -> uint8 (..., H, W, C): ``round((x + 1) 127.5)``
    after clipping to [-1, 1]. The one conversion from the training range to displayable pixels
    (previews, grids, thumbnails, PNG export)."""
    x = torch.as_tensor(x)
    u = ((x.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return u.movedim(-3, -1).numpy()


def image_grid(samples: Tensor | np.ndarray, nrow: int | None = None, pad: int = 1,
               background: int = 255) -> np.ndarray:
    """Tile float (N, C, H, W) images in [-1, 1] into one uint8 (rows (H + pad) + pad,
    nrow (W + pad) + pad, 3) picture, row by row; ``nrow`` defaults to ceil(sqrt(N)) (a near-square
    grid). Grey images are repeated to RGB, more than 3 channels keep the first 3, and 2 channels
    (a VAE's latents, say) show the first as grey."""
    pixels = unit_range_to_uint8(samples)  # (N, H, W, C)
    n, h, w, c = pixels.shape
    if c < 3:
        pixels = np.repeat(pixels[..., :1], 3, axis=-1)
    nrow = nrow or max(1, int(np.ceil(np.sqrt(n))))
    rows = -(-n // nrow)
    out = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), background, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        out[y:y + h, x:x + w] = pixels[i, :, :, :3]
    return out


def uint8_hwc_to_unit_range(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1]: ``x = 2 v / 255 - 1``."""
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32))
    return x.div_(127.5).sub_(1.0).clamp_(-1.0, 1.0)


LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma, the weights Pillow's ``convert("L")`` uses."""


def match_channels(x: Tensor, channels: int) -> Tensor:
    """(N, C, H, W) -> (N, channels, H, W): grey is repeated to RGB, RGB is reduced to luma.
    Raises ValueError for any other pair of channel counts."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return x.repeat(1, 3, 1, 1)
    if x.shape[1] == 3 and channels == 1:
        weights = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device)
        return torch.einsum("nchw,c->nhw", x, weights)[:, None]
    raise ValueError(f"cannot convert {x.shape[1]} channels to {channels}")


def resize_images(x: Tensor, resolution: int, resample: Image.Resampling) -> Tensor:
    """Resize float (N, C, h, w) square images to ``resolution`` with Pillow, channel by channel."""
    if x.shape[-1] == resolution:
        return x
    arrays = x.detach().cpu().numpy()
    out = np.empty((*arrays.shape[:2], resolution, resolution), dtype=np.float32)
    for i, image in enumerate(arrays):
        for c, plane in enumerate(image):
            resized = Image.fromarray(plane).resize((resolution, resolution), resample)
            out[i, c] = np.asarray(resized)
    return torch.from_numpy(out).clamp_(-1.0, 1.0)
