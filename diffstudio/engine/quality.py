"""Sample-quality measures, computed on fresh samples at each preview and by ``diffstudio eval``.

Which measures apply depends on the data (:func:`measures_for`):

- ``digits``: the recognition rate, the share of samples that a classifier of the real digits
  (:mod:`diffstudio.engine.digits_judge`) recognises (top-class p >= 0.9) as the requested class
  (``digits_recognition``), and the share whose top class is the requested one (``digits_top1``);
  without class conditioning, the share recognised as any digit;
- 2-D toys: the sliced Wasserstein distance to the data (POT's ``ot.sliced_wasserstein_distance``,
  p = 2, 128 projections, fixed seed; ``sliced_wasserstein``);
- ``lighting`` / ``lighting-flat``: the spread of the samples' per-image mean brightness over the
  data's (``brightness_spread_ratio``; 1 is right, Lin et al.'s flawed schedules give < 1) and the
  shares of very dark / very bright images (mean < -0.7 / > 0.7) of samples and data;
- other images (folders, ``shapes``): the distance between the samples' and the data's per-channel
  brightness histograms (``histogram_distance``: the 1-D Wasserstein-1 distance, in pixel units
  of [-1, 1], between 64-bin histograms, POT's ``ot.wasserstein_1d``, averaged over channels).

POT and the judge are imported lazily (never at app start-up). Qt-free.
"""

from __future__ import annotations

import numpy as np
import torch

REFERENCE_ITEMS = 4096  # data items the toys' and histograms' references use at most
DARK, BRIGHT = -0.7, 0.7
HIST_BINS = 64


def measures_for(source: str, kind: str) -> str | None:
    """``"digits"``, ``"points"``, ``"lighting"``, ``"histogram"`` or None (no measure)."""
    if kind == "points":
        return "points"
    if source == "digits":
        return "digits"
    if source in ("lighting", "lighting-flat"):
        return "lighting"
    return "histogram" if kind == "image" else None


def reference_items(data, n: int = REFERENCE_ITEMS) -> torch.Tensor:
    """An evenly strided subset of at most ``n`` items of ``data`` as float32 in data units on the
    CPU, from an InMemoryDataset (float or uint8 storage) or a StreamingDataset (read from its cache)."""
    count = len(data)
    idx = torch.arange(0, count, max(1, count // n))[:n]
    if hasattr(data, "x"):
        x = data.x[idx.to(data.x.device)].detach().cpu()
    else:
        x = torch.from_numpy(data._gather(idx.numpy()))
    from diffstudio.data.pixels import uint8_to_unit_range

    return uint8_to_unit_range(x) if x.dtype == torch.uint8 else x


def _reference(data_x: torch.Tensor, n: int = REFERENCE_ITEMS) -> np.ndarray:
    """A fixed, evenly strided subset of at most ``n`` data items, float64 on the CPU."""
    step = max(1, len(data_x) // n)
    return data_x[::step][:n].detach().to("cpu", torch.float64).numpy()


def sliced_wasserstein(samples: np.ndarray, data: np.ndarray, projections: int = 128, seed: int = 0) -> float:
    """POT's sliced Wasserstein distance (p = 2) between point clouds (N, D) and (M, D)."""
    import ot

    a, b = np.asarray(samples, np.float64), np.asarray(data, np.float64)
    return float(ot.sliced_wasserstein_distance(a, b, n_projections=projections, p=2, seed=seed))


def lighting_measures(samples: np.ndarray, data: np.ndarray) -> dict[str, float]:
    """Per-image mean brightness: std ratio samples/data, and dark/bright shares of both."""
    ms = np.asarray(samples, np.float64).reshape(len(samples), -1).mean(1)
    md = np.asarray(data, np.float64).reshape(len(data), -1).mean(1)
    return {"brightness_spread_ratio": float(ms.std() / max(md.std(), 1e-12)),
            "dark_fraction": float((ms < DARK).mean()), "bright_fraction": float((ms > BRIGHT).mean()),
            "data_dark_fraction": float((md < DARK).mean()), "data_bright_fraction": float((md > BRIGHT).mean())}


def histogram_distance(samples: np.ndarray, data: np.ndarray, bins: int = HIST_BINS) -> float:
    """Mean over channels of the Wasserstein-1 distance between the samples' and the data's pixel
    histograms (``bins`` bins over [-1, 1]; values clipped), via POT's ``ot.wasserstein_1d``.
    ``samples`` (N, C, H, W), ``data`` (M, C, H, W)."""
    import ot

    edges = np.linspace(-1.0, 1.0, bins + 1)
    centers = 0.5 * (edges[1:] + edges[:-1])
    out = []
    for c in range(samples.shape[1]):
        hs = np.histogram(np.clip(samples[:, c], -1, 1), edges)[0].astype(np.float64)
        hd = np.histogram(np.clip(data[:, c], -1, 1), edges)[0].astype(np.float64)
        out.append(float(ot.wasserstein_1d(centers, centers, hs / hs.sum(), hd / hd.sum(), p=1)))
    return float(np.mean(out))


def score_samples(source: str, kind: str, samples: np.ndarray, labels: np.ndarray | None,
                  data_x: torch.Tensor) -> dict[str, float]:
    """The measures of :func:`measures_for` on ``samples`` ((N, C, H, W) or (N, 2), data units)
    against ``data_x`` (the training items); ``labels`` (N,) the requested classes or None."""
    which = measures_for(source, kind)
    samples = np.nan_to_num(np.asarray(samples, np.float64), nan=0.0, posinf=1e6, neginf=-1e6)
    if which == "digits":
        from diffstudio.engine.digits_judge import digits_judge

        s = digits_judge().score(samples, labels)
        if labels is None:
            return {"digits_recognized": s["recognized"]}
        return {"digits_recognition": s["as_requested"], "digits_top1": s["top1_as_requested"]}
    if which == "points":
        return {"sliced_wasserstein": sliced_wasserstein(samples, _reference(data_x))}
    if which == "lighting":
        return lighting_measures(samples, _reference(data_x))
    if which == "histogram":
        return {"histogram_distance": histogram_distance(samples, _reference(data_x, 1024))}
    return {}


def measure_quality(model, config, info, data, *, n: int, device="cpu", seed: int | None = None,
                    codec=None) -> dict[str, float]:
    """Draw ``n`` samples with the configured sampler (``engine.sampling.generate``; seed
    ``sampling.seed + 1`` unless given, so they differ from the preview's) and score them against
    ``data``: a dataset, or its :func:`reference_items` already taken (a tensor). A latent run
    (``codec``, the VAE of ``data.vae``) decodes its samples first, and ``data`` are then the
    images (pixels), so every measure is on images, as the previews are."""
    from diffstudio.engine.sampling import generate

    source, kind = config.data.source, info.kind
    if measures_for(source, kind) is None or n <= 0:
        return {}
    s = config.sampling.seed + 1 if seed is None else seed
    p = generate(model, config, info, n=n, seed=s % 2**63, device=device)
    samples = p.samples
    if codec is not None:
        from diffstudio.engine.latents import decode_latents

        samples = decode_latents(codec, torch.from_numpy(np.ascontiguousarray(samples))).numpy()
    reference = data if isinstance(data, torch.Tensor) else reference_items(data)
    return score_samples(source, kind, samples, p.labels, reference)


__all__ = ["reference_items", "measures_for", "score_samples", "measure_quality", "sliced_wasserstein", "lighting_measures",
           "histogram_distance"]
