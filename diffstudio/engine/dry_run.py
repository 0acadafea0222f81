"""Before any work: what a run will cost. ``diffstudio train --dry-run`` and the app's estimate.

The estimate sets up the real Trainer (data, model, optimizer, precision) without a run folder,
then

- counts parameters and the dataset's footprint (where it lives, how many bytes);
- measures the activations autograd keeps for one sample (``torch.autograd.graph.saved_tensors_hooks``
  over one forward pass under the run's autocast) and scales them by the batch size;
- adds weights, gradients, AdamW's two moments and the EMA copy (fp32 each, as autocast keeps them),
  the data held on the device (pixels, or a latent run's posteriors) and a latent run's VAE;
- compares the peak with what the device has (free CUDA memory, or the machine's available RAM),
  and warns when it does not fit;
- times a few real training steps (the probe), unless the estimate already says they would not fit.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch

from diffstudio.core.objectives import diffusion_loss
from diffstudio.core.units import format_duration

GiB = 1024**3
FIT_MARGIN = 0.9  # warn above this share of the device's memory


@dataclass(frozen=True)
class Estimate:
    """Sizes in bytes, time in seconds; ``warnings`` are one-line messages."""

    device: str
    precision: str
    precision_reason: str
    num_params: int
    data_kind: str
    data_items: int
    data_bytes: int
    data_where: str
    state_bytes: int  # weights + gradients + AdamW moments + EMA
    activation_bytes: int  # kept for backward, for the whole (micro-)batch
    peak_bytes: int
    available_bytes: int | None
    seconds_per_step: float | None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    vae_bytes: int = 0  # data.vae: the VAE's weights, kept on the device to decode previews
    held_out_items: int = 0  # items held out for validation (data.val_fraction); data_items excludes them

    def data_text(self) -> str:
        """``"301 images (286 for training, 15 held out for validation)"``, as the run counts them."""
        from diffstudio.data.split import describe_split

        unit = "images" if self.data_kind == "image" else "points"
        return describe_split(self.data_items + self.held_out_items, self.held_out_items, unit)

    def to_json(self) -> dict:
        """The fields as a JSON-ready dict (tuples become lists; bytes, seconds and strings as above)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def available_memory(device: torch.device) -> int | None:
    """Free bytes on ``device``: ``torch.cuda.mem_get_info`` on CUDA, the available RAM on the CPU
    (:func:`diffstudio.data.training_data.available_ram`)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    from diffstudio.data.training_data import available_ram

    return available_ram()


def _data_footprint(data, device: torch.device) -> tuple[int, str, int]:
    """(bytes of the data, where it lives, bytes of it on ``device``)."""
    pixels = getattr(data, "pixels", None)
    if pixels is not None:  # StreamingDataset: a memory map over the on-disk uint8 cache
        return int(pixels.nbytes), "on disk (uint8 cache), streamed batch by batch", 0
    if hasattr(data, "mean"):  # LatentDataset: the posteriors (mean, std; and the mirrored images')
        held = [t for t in (data.mean, data.std, data.flip_mean, data.flip_std) if t is not None]
        size = sum(int(t.numel() * t.element_size()) for t in held)
        c, h, w = data.mean.shape[1:]
        what = "posterior mean and std" + (" of the images and their mirror images" if len(held) > 2 else "")
        where = f"as {c}x{h}x{w} latents ({what}) in memory on {data.mean.device.type} (float32)"
        return size, where, size if data.mean.device == device else 0
    x = data.x
    size = int(x.numel() * x.element_size())
    where = f"in memory on {x.device.type} ({str(x.dtype).removeprefix('torch.')})"
    return size, where, size if x.device == device else 0


def _saved_bytes(trainer) -> int:
    """Bytes autograd saves for backward in one forward pass of ONE sample (unique storages)."""
    x, y, t, eps = trainer._batch()
    x, t, eps = x[:1].clone(), t[:1].clone(), eps[:1].clone()  # own storages: one sample's bytes only
    y = None if y is None else y[:1].clone()
    weights = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}  # state, counted apart
    seen: dict[int, int] = {}

    def pack(tensor):
        try:
            ptr = tensor.untyped_storage().data_ptr()
            if ptr not in weights:
                seen[ptr] = max(seen.get(ptr, 0), tensor.untyped_storage().nbytes())
        except (RuntimeError, NotImplementedError):
            seen[id(tensor)] = tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), trainer._autocast():
        loss = diffusion_loss(trainer._model_fn, trainer.schedule, trainer.objective, x, y, t=t, eps=eps)
    del loss
    return sum(seen.values())


def estimate(config, *, probe_steps: int = 3, available_bytes: int | None = None, dataset=None,
             hooks=None) -> Estimate:
    """Set up ``config``'s run without writing anything and estimate its cost (see the module doc).

    ``probe_steps``: training steps timed (after one warm-up; 0 skips the timing);
    ``available_bytes``: overrides what the device is taken to have, in bytes (plan for another
    machine); ``dataset``: data already loaded, instead of reading ``config.data``.
    Raises what setting up the Trainer raises (ConfigError, InitFromError, VaeError, the data's
    load errors), each one line through :func:`diffstudio.engine.errors.describe_error`."""
    from diffstudio.engine.trainer import Trainer

    trainer = Trainer(config, dry_run=True, dataset=dataset, hooks=hooks)
    try:
        trainer._setup()
        return _measure(trainer, probe_steps, available_bytes)
    finally:
        if getattr(trainer, "data", None) is not None:
            trainer.data.close()
        trainer.world.close()


def _measure(trainer, probe_steps: int, available_bytes: int | None) -> Estimate:
    cfg = trainer.config
    n_params = sum(p.numel() for p in trainer.model.parameters())
    state = n_params * 4 * (1 + 1 + 2 + (1 if trainer.ema is not None else 0))
    data_bytes, where, on_device = _data_footprint(trainer.data, trainer.device)
    per_sample = _saved_bytes(trainer)
    activations = per_sample * cfg.optim.batch_size
    info = trainer.info
    item = info.channels * info.resolution**2 if info.kind == "image" else 2
    batch_bytes = 3 * cfg.optim.batch_size * item * 4  # x0, eps, x_t in fp32
    codec = getattr(trainer, "codec", None)  # data.vae: the VAE stays on the device to decode previews
    vae_bytes = 0 if codec is None else sum(int(t.numel() * t.element_size()) for t in codec.parameters())
    peak = state + activations + batch_bytes + on_device + vae_bytes
    have = available_bytes if available_bytes is not None else available_memory(trainer.device)
    warnings: list[str] = []
    fits = have is None or peak <= FIT_MARGIN * have
    if not fits:
        warnings.append(f"the estimated peak of {format_size(peak)} exceeds {FIT_MARGIN:.0%} of the "
                        f"{format_size(have)} available on {trainer.device}: lower optim.batch_size "
                        f"(activations {format_size(activations)}), use a smaller model.preset or bf16")
    seconds = _probe(trainer, probe_steps) if fits and probe_steps > 0 else None
    if seconds is None and probe_steps > 0:
        warnings.append("the timing probe was skipped because the run would not fit")
    from diffstudio.engine.advice import training_advice  # what the run itself warns about first

    warnings += [a.text for a in training_advice(cfg, trainer.data) if a.level == "warning"]
    return Estimate(str(trainer.device), trainer.precision.effective, trainer.precision.reason, n_params,
                    trainer.info.kind, len(trainer.data), data_bytes, where, state, activations, peak, have,
                    seconds, tuple(warnings), vae_bytes, _held_out(trainer))


def _held_out(trainer) -> int:
    split = getattr(trainer, "split", None)
    return 0 if split is None else int(split.n - len(split.train))


def _probe(trainer, steps: int) -> float:
    """Median seconds of real training steps after one warm-up step (the weights are thrown away)."""
    trainer.scaler = torch.amp.GradScaler("cuda", enabled=trainer.precision.uses_grad_scaler)
    trainer.model.train()
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        trainer._train_step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def format_size(n: int | None) -> str:
    """``n`` bytes in the estimate's units: '12.3 MiB' below a quarter GiB, '1.50 GiB' above;
    'unknown' for None."""
    if n is None:
        return "unknown"
    return f"{n / GiB:.2f} GiB" if n >= GiB / 4 else f"{n / 1024**2:.1f} MiB"


def format_estimate(e: Estimate, total_steps: int | None = None) -> str:
    """The estimate as a few aligned lines for people; with ``total_steps`` the time line adds
    the whole run's duration (seconds per step times steps)."""
    lines = [f"device           {e.device}, {e.precision} ({e.precision_reason})",
             f"model            {e.num_params:,} parameters",
             f"dataset          {e.data_text()}, "
             f"{format_size(e.data_bytes)} {e.data_where}",
             f"peak memory      ~{format_size(e.peak_bytes)} (weights, gradients, AdamW and EMA "
             f"{format_size(e.state_bytes)}; activations {format_size(e.activation_bytes)}"
             f"{f'; VAE {format_size(e.vae_bytes)}' if e.vae_bytes else ''}) of {format_size(e.available_bytes)} available"]
    if e.seconds_per_step is not None:
        total = (f", ~{format_duration(e.seconds_per_step * total_steps)} for {total_steps:,} steps"
                 if total_steps else "")
        lines.append(f"time per step    ~{e.seconds_per_step * 1000:.0f} ms (probe){total}")
    lines += [f"warning: {w}" for w in e.warnings]
    return "\n".join(lines)

