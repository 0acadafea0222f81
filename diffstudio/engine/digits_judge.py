"""A classifier of the real 8x8 digits that judges generated ``digits`` samples.

Multinomial logistic regression on the 64 pixels (mapped to [-1, 1] exactly as the built-in
dataset maps them), with the L2 penalty of scikit-learn's ``LogisticRegression(C=10)``
(objective ``C * sum(log loss) + ||W||^2 / 2``), fitted in float64 with ``torch.optim.LBFGS``, so
neither scikit-learn's estimators nor its import time are needed. It is trained at first use on
the real digits (``data.digits.digits_arrays``) and cached as safetensors under
``$DIFFSTUDIO_CACHE`` (default ``~/.cache/diffstudio``); loading the cache executes nothing.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)
JUDGE_VERSION = 1
DEFAULT_C = 10.0
THRESHOLD = 0.9  # "recognised": the top class's probability is at least this


def cache_file() -> Path:
    """``$DIFFSTUDIO_CACHE/judges/digits-v1.safetensors`` (default root ``~/.cache/diffstudio``)."""
    root = os.environ.get("DIFFSTUDIO_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "diffstudio"
    return base / "judges" / f"digits-v{JUDGE_VERSION}.safetensors"


def real_digits() -> tuple[Tensor, Tensor]:
    """``(x (1797, 64) float64 in [-1, 1], y (1797,) int64)``: the real digits as the dataset maps them."""
    from diffstudio.data.digits import DIGITS_MAX_VALUE, digits_arrays

    images, target = digits_arrays()
    x = torch.from_numpy(np.asarray(images, dtype=np.float64).reshape(len(images), -1))
    return x / (DIGITS_MAX_VALUE / 2) - 1.0, torch.from_numpy(np.asarray(target, dtype=np.int64))


def fit_logistic(x: Tensor, y: Tensor, C: float = DEFAULT_C, classes: int = 10) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression ``p = softmax(x W^T + b)`` minimising
    ``C * sum_i CE(p_i, y_i) + ||W||^2 / 2`` (scikit-learn's objective; the bias is not penalised).
    ``x`` (N, D), ``y`` (N,) -> ``(W (classes, D), b (classes,))`` float64."""
    x, y = x.double(), y.long()
    W = torch.zeros(classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=200, tolerance_grad=1e-7, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")
    n = len(x)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ W.T + b, y, reduction="sum") * (C / n) + W.pow(2).sum() / (2 * n)
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach()


class DigitsJudge:
    """``probabilities(x)`` and ``score(samples, requested)`` for 8x8 digit images in [-1, 1]."""

    def __init__(self, weight: Tensor, bias: Tensor):
        self.weight, self.bias = weight.double(), bias.double()

    def probabilities(self, samples) -> Tensor:
        """``samples`` (N, 64), (N, 1, 8, 8), or (N, C, H, W) at another size or channel count
        (averaged over channels, resized to 8x8 by area averaging); clipped to [-1, 1], NaN as 0.
        Returns (N, 10) float64."""
        x = torch.as_tensor(np.asarray(samples), dtype=torch.float64)
        if x.dim() == 4:
            x = x.mean(1, keepdim=True)
            if x.shape[-1] != 8:
                x = torch.nn.functional.adaptive_avg_pool2d(x, 8)
        x = torch.nan_to_num(x.reshape(len(x), -1)).clamp(-1.0, 1.0)
        return torch.softmax(x @ self.weight.T + self.bias, dim=1)

    def score(self, samples, requested=None, threshold: float = THRESHOLD) -> dict[str, float]:
        """``recognized``: share whose top-class probability is >= ``threshold``; with ``requested``
        (N,) class labels, ``as_requested``: recognised *and* the top class is the requested one (the
        recognition rate), ``top1_as_requested``: the top class is the requested one."""
        p = self.probabilities(samples)
        conf, top = p.max(1)
        ok = conf >= threshold
        out = {"recognized": float(ok.double().mean()), "mean_confidence": float(conf.mean())}
        if requested is not None:
            req = torch.as_tensor(np.asarray(requested), dtype=torch.int64)
            out["as_requested"] = float((ok & (top == req)).double().mean())
            out["top1_as_requested"] = float((top == req).double().mean())
        return out


@lru_cache(maxsize=1)
def digits_judge() -> DigitsJudge:
    """The judge: read from the cache, else trained on all real digits (about a second) and cached."""
    from safetensors.torch import load_file, save_file

    path = cache_file()
    try:
        t = load_file(str(path))
        return DigitsJudge(t["weight"], t["bias"])
    except Exception:  # noqa: BLE001 - absent or damaged: train afresh
        pass
    W, b = fit_logistic(*real_digits())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"weight": W.contiguous(), "bias": b.contiguous()}, str(tmp))
        os.replace(tmp, path)
    except OSError as exc:  # caching is best effort
        log.warning("could not cache the digits judge at %s: %s", path, exc)
    return DigitsJudge(W, b)


__all__ = ["DigitsJudge", "digits_judge", "fit_logistic", "real_digits", "cache_file", "THRESHOLD"]
