"""``diffstudio eval``: the training run's validation and quality measures on a finished run or a
checkpoint, with the run's own held-out split, grid and noise (so the numbers continue the run's
``metrics.jsonl`` rows). Qt-free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from diffstudio.data.split import split_dataset
from diffstudio.engine.evaluation import evaluate, make_validation_set


def load_weights(source: str | Path, which: str = "ema", device: str | torch.device = "cpu"):
    """``(model in eval mode, config, DataInfo, step, which)`` from a run or checkpoint folder;
    ``which`` is "ema" or "raw" (EMA falls back to raw when the run kept none)."""
    from diffstudio.engine.checkpoint import load_checkpoint
    from diffstudio.engine.config import Config
    from diffstudio.models.build import model_from_spec
    from diffstudio.models.info import DataInfo

    ckpt = load_checkpoint(source)
    model = model_from_spec(ckpt.meta["model_spec"])
    model.load_state_dict(ckpt.model)
    if which == "ema" and ckpt.ema:
        model.load_state_dict({k.removeprefix("module."): v for k, v in ckpt.ema.items() if k.startswith("module.")})
    else:
        which = "raw"
    config = Config.from_dict(ckpt.meta["config"])
    return model.to(device).eval(), config, DataInfo(**ckpt.meta["data_info"]), int(ckpt.meta["step"]), which


def evaluate_checkpoint(source: str | Path, *, which: str = "ema", device: str | torch.device = "cpu",
                        quality_samples: int | None = None, dataset=None) -> dict[str, Any]:
    """Validation by t and the quality measures of one checkpoint. Returns a JSON-safe dict with
    ``t``, ``log_snr``, ``loss``, ``x0_mse``, ``eps_mse`` (lists over the grid, None where
    undefined), ``x0_mse_mean``, ``undefined``, ``quality`` ({measure: value}), ``step``, ``model``,
    ``items``. ``quality_samples`` defaults to the run's ``sampling.quality_samples``. A latent
    run (``data.vae``) is validated on its held-out items' latents and its samples are decoded for
    the quality measures, as in training. The data are loaded as the run loaded them
    (``load_training_data``: a folder larger than ``data.memory_budget_mb`` is streamed from its
    pixel cache, never held as float32). Raises CheckpointError / DatasetError / ConfigError
    (a VAE that is gone) with a one-line message."""
    from diffstudio.data.training_data import load_training_data
    from diffstudio.engine.quality import measure_quality

    model, cfg, info, step, which = load_weights(source, which, device)
    d = cfg.data
    codec = None
    if d.vae:  # a latent run: validation on the held-out items' latents, quality on decoded samples
        from diffstudio.engine.latents import load_codec

        codec = load_codec(d.vae, device)
    if dataset is not None:
        full = dataset
    else:  # as the run loaded it: a folder through its pixel cache, held as uint8 or streamed (any size)
        full = load_training_data(d.source, torch.device(device), resolution=d.resolution, channels=d.channels,
                                  labels=d.labels, n=d.num_points, seed=cfg.run.seed,
                                  memory_budget_mb=d.memory_budget_mb).dataset
    _, train, val = split_dataset(full, d.val_fraction, d.val_seed, cfg.run.val_items)
    if codec is not None:
        from diffstudio.data.dataset import InMemoryDataset
        from diffstudio.engine.latents import encode_dataset
        from diffstudio.engine.quality import reference_items

        train = reference_items(train)
        if val is not None:
            latents = encode_dataset(val, codec, hflip=d.hflip)  # the training run's latent cache entry
            val = InMemoryDataset(x=latents.mean, labels=latents.labels, class_names=latents.class_names,
                                  name=latents.name)
    conditional = getattr(model, "num_classes", 0) > 0
    schedule, objective = cfg.schedule.build(), cfg.objective.build()
    out: dict[str, Any] = {"step": step, "model": which}
    vset = make_validation_set(None if val is None else val.to(device), schedule, count=cfg.run.val_times,
                               items=cfg.run.val_items, seed=d.val_seed, conditional=conditional,
                               offset_noise=objective.offset_noise)
    if vset is None:
        out.update(t=[], log_snr=[], loss=[], x0_mse=[], eps_mse=[], x0_mse_mean=None, items=0,
                   undefined=[{"t": None, "reason": "no held-out items (data.val_fraction is 0)"}])
    else:
        out.update({k: v for k, v in evaluate(model, schedule, objective, vset, step=step,
                                              model_name=which).to_json().items() if k != "model"})
    n = cfg.sampling.quality_samples if quality_samples is None else quality_samples
    out["quality"] = measure_quality(model, cfg, info, train, n=n, device=device, codec=codec)
    return out


__all__ = ["evaluate_checkpoint", "load_weights"]
