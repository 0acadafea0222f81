"""A folder larger than the memory budget trains from its on-disk cache, and with the same seed gives
bit-identical weights to the device-resident path (hflip, labels and label dropout included)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffstudio.data.streaming import StreamingDataset
from diffstudio.engine.checkpoint import load_checkpoint
from diffstudio.engine.presets import preset
from diffstudio.engine.trainer import Trainer

from tests.helpers import Said


def labelled_folder(root, count=24):
    rng = np.random.default_rng(5)
    for i in range(count):
        folder = root / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return root


def train(tmp_path, folder, name, budget_mb, val_fraction=0.0):
    cfg = preset("quickstart").updated(
        data={"source": str(folder), "resolution": 8, "channels": 3, "hflip": True, "labels": True,
              "memory_budget_mb": budget_mb, "val_fraction": val_fraction},
        run={"steps": 3, "out_dir": str(tmp_path / "runs"), "name": name, "preview_every": 10_000,
             "checkpoint_every": 10_000, "log_every": 1},
        optim={"batch_size": 6, "grad_accum": 2, "warmup_steps": 1}, sampling={"num_samples": 2, "steps": 2})
    hooks = Said()
    trainer = Trainer(cfg, hooks=hooks)
    result = trainer.run()
    ckpt = load_checkpoint(result.run_dir)
    return trainer, hooks.messages, {**ckpt.model, **{f"ema.{k}": v for k, v in (ckpt.ema or {}).items()}}


@pytest.mark.parametrize("val_fraction", [0.0, 0.25])
def test_a_folder_over_the_budget_streams_and_trains_bit_identically_to_the_device_resident_path(tmp_path,
                                                                                                val_fraction):
    """Also with a held-out split: both paths train on the same items (the stream reads a subset)."""
    folder = labelled_folder(tmp_path / "pets")
    size = 24 * 3 * 8 * 8  # bytes as uint8
    resident, said_resident, weights_resident = train(tmp_path, folder, "resident", 1.0, val_fraction)
    streamed, said_streamed, weights_streamed = train(tmp_path, folder, "streamed", (size // 2) / 2**20,
                                                      val_fraction)
    held_out = round(24 * val_fraction)
    assert len(resident.data) == len(streamed.data) == 24 - held_out
    assert resident.data.x.dtype == torch.uint8 and resident.data.nbytes == size * (24 - held_out) // 24
    assert "dataset cache: 24 / 24 images decoded" in said_resident  # the build's progress, via the hooks
    assert any("held on cpu" in m for m in said_resident)
    assert isinstance(streamed.data, StreamingDataset) and any("streamed from the cache" in m for m in said_streamed)
    assert streamed.data.reads["ahead"] >= 5  # 6 batches; all but the first read ahead
    assert resident.info.num_classes == streamed.info.num_classes == 2
    assert weights_resident.keys() == weights_streamed.keys() and any(k.startswith("ema.") for k in weights_resident)
    for k in weights_resident:
        assert torch.equal(weights_resident[k], weights_streamed[k]), k


def test_torchrun_ranks_stream_their_slices_of_one_cache_and_train_as_one_process(tmp_path):
    """2 CPU processes (gloo) stream batch 6 each from the cache rank 0 built; one process holding the
    data with batch 12 gets the same weights (up to DDP's order of float sums)."""
    import os
    import subprocess
    import sys

    folder = labelled_folder(tmp_path / "pets")
    cfg = preset("quickstart").updated(
        data={"source": str(folder), "resolution": 8, "channels": 3, "hflip": True, "memory_budget_mb": 1e-3},
        # fp32: the comparison below is to float-sum order, which bf16 autocast (auto on some CPUs) would blur
        run={"steps": 3, "log_every": 1, "preview_every": 10_000, "checkpoint_every": 10_000, "precision": "fp32"},
        optim={"batch_size": 6, "warmup_steps": 1}, sampling={"num_samples": 2, "steps": 2})
    path = cfg.save(tmp_path / "ddp.toml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DIFFSTUDIO_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "diffstudio", "train", str(path), "--device", "cpu", "--out", str(tmp_path / "ddp")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "streamed from the cache" in r.stderr
    assert len(list((tmp_path / "cache" / "datasets").glob("pixels-*"))) == 1  # one cache, built once
    ddp = load_checkpoint(tmp_path / "ddp")
    one = Trainer(cfg.updated(optim={"batch_size": 12}, data={"memory_budget_mb": 1.0}),
                  run_dir=tmp_path / "one")
    result = one.run()
    single = load_checkpoint(result.run_dir)
    assert isinstance(one.data.x, torch.Tensor) and ddp.meta["world_size"] == 2 and ddp.meta["step"] == 3
    # the same batches: the global batch's loss agrees to float-sum order at every step (another batch
    # would differ by ~1e-2). Weights only to ~lr: AdamW turns the sum-order noise of near-zero gradients
    # (biases in front of a GroupNorm) into updates of up to lr
    losses = [[row["loss"] for row in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
               if "loss" in row] for d in (tmp_path / "ddp", Path(result.run_dir))]  # training rows
    assert len(losses[0]) == 3 and max(abs(a - b) for a, b in zip(*losses)) < 1e-5, losses
    for name, value in single.model.items():
        torch.testing.assert_close(ddp.model[name], value, rtol=0, atol=2e-3, msg=name)
