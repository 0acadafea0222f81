"""Which numeric precision a run trains in, on which device, and why.

``run.precision`` asks for ``auto``, ``fp32``, ``bf16`` or ``fp16``; :func:`resolve_precision`
turns the request and the device into what the run really does, with a one-line reason the CLI
prints and the app shows. A request the device cannot honour is refused (a ``ConfigError`` naming
``run.precision``), never silently ignored.

- bf16 autocast (``torch.autocast(device, dtype=torch.bfloat16)``) runs on CUDA devices that
  support it and on CPUs where PyTorch's oneDNN reports bf16 support.
- ``auto`` (the default) picks bf16 for image runs on a CPU with native bf16 instructions
  (AVX512-BF16 or AMX-BF16), where ``benchmarks/bf16_cpu.py`` measured 1.25x (8 px) to 2.5x (128 px)
  the steps/s of fp32 at the same quality (quickstart recognition rate, both lighting presets'
  spread ratios); fp32 for point data, on other CPUs and on CUDA. On an H200 (``benchmarks/gpu_check.py``,
  2026-11-30) bf16 autocast trained the built-in quickstart and 128 px presets at 0.55-0.58x the
  steps/s of fp32 (their kernels are too small for bf16 to pay for autocast's casts) and the 32 px
  UNet at batch 256 at 1.09x, so ``auto`` keeps fp32 there; ask for ``bf16`` on large models.
- fp16 autocast with a gradient scaler is CUDA only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from diffstudio.engine.config import ConfigError

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Precision:
    """The precision a run uses: ``effective`` is "fp32", "bf16" or "fp16"; ``reason`` one line."""

    requested: str
    effective: str
    device_type: str
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (bf16, fp16), or None for fp32."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.effective)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context for the forward pass and loss (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    @property
    def uses_grad_scaler(self) -> bool:
        """fp16 needs a GradScaler (bf16 has fp32's exponent range and does not)."""
        return self.effective == "fp16"


@lru_cache(maxsize=1)
def cpu_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (Linux ``/proc/cpuinfo`` flags avx512_bf16 or
    amx_bf16). Elsewhere False: ``auto`` then stays fp32 and bf16 must be asked for."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:
        return False
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def cpu_bf16_supported() -> bool:
    """PyTorch's own answer (oneDNN) to whether bf16 kernels run on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(requested: str, device: torch.device, *, points: bool = False) -> Precision:
    """What ``run.precision = requested`` means on ``device`` for an image run (``points=False``,
    a UNet) or a 2-D point run (``points=True``, an MLP). Raises ``ConfigError`` (field
    ``run.precision``) when the device cannot do what was asked.

    ``auto`` is bf16 only where ``benchmarks/bf16_cpu.py`` measured the same quality at a higher
    speed: image runs on a CPU with native bf16 (on CUDA it measured slower than fp32 for the
    built-in presets, so ``auto`` is fp32 there). Point runs stay fp32 (their MLPs are too small to
    gain, and bf16's 8-bit mantissa was not measured on 2-D densities)."""
    kind = device.type
    if requested == "auto":
        if points:
            return Precision(requested, "fp32", kind, "auto: fp32 for 2-D point data (bf16 is chosen only for "
                             "image models, where it was measured)")
        if kind == "cpu" and cpu_native_bf16() and cpu_bf16_supported():
            return Precision(requested, "bf16", kind, "auto: this CPU has native bf16 (AVX512-BF16/AMX), "
                             "measured 1.25-2.5x the speed of fp32 at the same quality (docs/benchmarks.md)")
        why = {"cpu": " (no native bf16 on this CPU)",
               "cuda": " (bf16 autocast measured 0.55-0.58x fp32's speed on the built-in presets on an H200; "
                       "set bf16 for large models)"}.get(kind, "")
        return Precision(requested, "fp32", kind, f"auto: fp32 on {kind}{why}")
    if requested == "fp32":
        return Precision(requested, "fp32", kind, "fp32 as asked")
    if requested == "fp16":
        if kind != "cuda":
            raise ConfigError([("run.precision", f"fp16 autocast needs a CUDA device, not {kind}; "
                                                 f"use bf16 or fp32 here")])
        return Precision(requested, "fp16", kind, "fp16 autocast with a gradient scaler, as asked")
    if requested == "bf16":
        if kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError([("run.precision", "this CUDA device has no bf16 support; use fp16 or fp32")])
        if kind == "cpu" and not cpu_bf16_supported():
            raise ConfigError([("run.precision", "PyTorch reports no bf16 support on this CPU; use fp32")])
        if kind not in ("cpu", "cuda"):
            raise ConfigError([("run.precision", f"bf16 autocast is not supported on {kind}; use fp32")])
        native = "" if kind != "cpu" or cpu_native_bf16() else " (emulated on this CPU: may be slower than fp32)"
        return Precision(requested, "bf16", kind, f"bf16 autocast as asked{native}")
    raise ConfigError([("run.precision", f"{requested!r} is not one of auto, fp32, bf16, fp16")])
