"""Precision takes effect or is refused with a reason (never silently ignored), and
``train --dry-run`` estimates a run without writing anything."""

from __future__ import annotations

import json

import pytest
import torch

from diffstudio import cli
from diffstudio.engine import precision as P
from diffstudio.engine.config import ConfigError
from diffstudio.engine.dry_run import estimate
from diffstudio.engine.presets import PRESETS, preset
from diffstudio.engine.trainer import Trainer, TrainerHooks
from diffstudio.models.build import build_model
from diffstudio.models.info import DataInfo
from diffstudio.models.unet import unet_config

CPU = torch.device("cpu")


def test_fp16_on_the_cpu_is_refused_with_the_field():
    with pytest.raises(ConfigError) as e:
        P.resolve_precision("fp16", CPU)
    assert e.value.errors[0][0] == "run.precision" and "CUDA" in e.value.errors[0][1]


@pytest.mark.parametrize("native,expected", [(True, "bf16"), (False, "fp32")])
def test_auto_uses_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(P, "cpu_native_bf16", lambda: native)
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: True)
    p = P.resolve_precision("auto", CPU)
    assert p.effective == expected and p.reason.startswith("auto")


def test_auto_keeps_point_data_in_fp32_even_with_native_bf16(monkeypatch):
    monkeypatch.setattr(P, "cpu_native_bf16", lambda: True)
    p = P.resolve_precision("auto", CPU, points=True)
    assert p.effective == "fp32" and "point" in p.reason


def test_auto_keeps_cuda_in_fp32_and_says_it_was_measured(monkeypatch):
    """On an H200 bf16 autocast trained the built-in presets at 0.55-0.58x fp32's steps/s
    (docs/benchmarks.md, GPU); auto stays fp32 on CUDA even where the CPU has native bf16."""
    monkeypatch.setattr(P, "cpu_native_bf16", lambda: True)
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: True)
    p = P.resolve_precision("auto", torch.device("cuda", 0))
    assert (p.effective, p.device_type) == ("fp32", "cuda")
    assert "H200" in p.reason and "bf16" in p.reason


@pytest.mark.parametrize("source,points", [("digits", False), ("moons", True), ("gaussians8", True)])
def test_the_default_is_auto_and_a_run_resolves_it_by_its_data(monkeypatch, tmp_path, source, points):
    """The default precision is ``auto``; a run picks bf16 for images on a native-bf16 CPU and fp32
    for 2-D points (the trainer tells resolve_precision which)."""
    from diffstudio.engine.config import Config

    assert Config().run.precision == "auto"
    monkeypatch.setattr(P, "cpu_native_bf16", lambda: True)
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: True)
    cfg = Config().updated(data={"source": source, "num_points": 64, "val_fraction": 0.0},
                           run={"device": "cpu", "steps": 1, "out_dir": str(tmp_path)})
    trainer = Trainer(cfg, dry_run=True)
    trainer._setup()
    assert trainer.precision.effective == ("fp32" if points else "bf16")


def test_bf16_refused_where_torch_reports_no_bf16(monkeypatch):
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: False)
    with pytest.raises(ConfigError, match="run.precision"):
        P.resolve_precision("bf16", CPU)


class _Recorder(TrainerHooks):
    def __init__(self):
        self.info = {}

    def on_start(self, info):
        self.info = info


def test_bf16_on_the_cpu_takes_effect_or_is_refused(tmp_path):
    """The model's forward really runs in bfloat16 (before, bf16 on the CPU silently trained fp32);
    on a CPU where PyTorch has no bf16 kernels it is refused instead."""
    cfg = preset("moons-flow").updated(run={"steps": 2, "precision": "bf16", "device": "cpu",
                                            "out_dir": str(tmp_path), "preview_every": 10, "checkpoint_every": 10},
                                       sampling={"num_samples": 4, "steps": 2})
    hooks = _Recorder()
    trainer = Trainer(cfg, hooks=hooks)
    if not P.cpu_bf16_supported():
        with pytest.raises(ConfigError, match="run.precision"):
            trainer._setup()
        return
    dtypes = []
    trainer._setup()
    trainer.model.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    trainer._loop()
    assert hooks.info["precision"] == "bf16" and "bf16" in hooks.info["precision_reason"]
    assert dtypes and all(d == torch.bfloat16 for d in dtypes)


def test_train_with_fp16_on_cpu_exits_2_with_one_line(tmp_path, capsys):
    code = cli.main(["train", "--preset", "moons-flow", "--set", "run.precision=fp16", "--device", "cpu",
                     "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "run.precision" in err
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- dry run
def _tiny(cfg):
    return cfg.updated(run={"device": "cpu", "precision": "fp32"}, data={"num_points": 64, "val_fraction": 0.0},
                       optim={"batch_size": 8})


def test_dry_run_counts_the_real_model_and_writes_nothing(tmp_path):
    cfg = _tiny(preset("quickstart")).updated(run={"out_dir": str(tmp_path)})
    e = estimate(cfg, probe_steps=2)
    assert list(tmp_path.iterdir()) == []
    assert e.num_params == sum(p.numel() for p in build_model(cfg, DataInfo("image", 1, 8, 10)).parameters())
    assert e.data_items == 64 and e.data_bytes == 64 * 8 * 8 * 4
    assert e.state_bytes == e.num_params * 4 * 5  # weights, gradients, two AdamW moments, EMA
    assert e.activation_bytes > 0 and e.peak_bytes > e.state_bytes + e.activation_bytes
    assert e.seconds_per_step is not None and e.seconds_per_step > 0 and not e.warnings


def test_activation_estimate_scales_with_the_batch():
    small = estimate(_tiny(preset("quickstart")), probe_steps=0)
    large = estimate(_tiny(preset("quickstart")).updated(optim={"batch_size": 32}), probe_steps=0)
    assert large.activation_bytes == 4 * small.activation_bytes


def test_too_small_a_device_budget_warns_and_skips_the_probe():
    e = estimate(_tiny(preset("quickstart")), available_bytes=1024**2)
    assert e.seconds_per_step is None
    assert any("exceeds" in w and "optim.batch_size" in w for w in e.warnings)


def test_cli_dry_run_prints_the_estimate(tmp_path, capsys):
    code = cli.main(["train", "--preset", "moons-flow", "--dry-run", "--set", "run.device=cpu",
                     "--set", "data.num_points=256", "--set", "data.val_fraction=0", "--out", str(tmp_path / "r"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and not (tmp_path / "r").exists()
    assert out["num_params"] > 0 and out["data_items"] == 256 and out["seconds_per_step"] > 0
    code = cli.main(["train", "--preset", "moons-flow", "--dry-run", "--device-memory", "0.00001"])
    text = capsys.readouterr().out
    assert code == 0 and "warning:" in text and "exceeds" in text


# ----------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("resolution,levels", [(64, 4), (128, 5), (256, 6)])
def test_unet_presets_sized_for_large_images(resolution, levels):
    for name in ("tiny", "small", "base"):
        c = unet_config(name, 3, resolution)
        assert len(c["block_out_channels"]) == levels
        assert resolution // 2 ** (levels - 1) == 8  # down to 8 px at the bottom


@pytest.mark.parametrize("name,resolution", [("shapes-64", 64), ("shapes-128", 128), ("shapes-256", 256)])
def test_size_presets_are_valid(name, resolution):
    cfg = preset(name)
    assert name in PRESETS and cfg.validate() == [] and cfg.data.resolution == resolution


def test_device_memory_without_dry_run_is_refused_not_ignored(tmp_path, capsys):
    """Before: ``train --device-memory 3`` trained and said nothing about the ignored flag."""
    code = cli.main(["train", "--preset", "moons-flow", "--steps", "1", "--device-memory", "3",
                     "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--device-memory plans a --dry-run" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_dry_run_warns_what_the_run_would_warn_about(tmp_path, capsys):
    """A dry run is where a new user looks first: a setting that would do nothing (and any other
    start-of-run warning) is said there too, not only once training starts."""
    code = cli.main(["train", "--preset", "moons-flow", "--dry-run", "--set", "data.num_points=256",
                     "--set", "data.resolution=32", "--steps", "2"])
    text = capsys.readouterr().out
    assert code == 0
    assert "warning: data.resolution = 32 has no effect: the data are 2-D points" in text
    e = estimate(_tiny(preset("quickstart")).updated(objective={"parameterization": "eps"}), probe_steps=0)
    assert any(w.startswith("eps-prediction cannot recover the image at t = 1") for w in e.warnings)


def test_the_dry_run_and_the_run_count_the_data_the_same_way(tmp_path, capsys):
    """The dry run's dataset line and the run's data message both give the whole dataset and its
    split: 300 points, 15 (5%) held out for validation, 285 trained on."""
    sets = ["--set", "run.device=cpu", "--set", "data.num_points=300", "--set", "data.val_fraction=0.05",
            "--set", f"run.out_dir={tmp_path}"]
    said = "300 points (285 for training, 15 held out for validation)"
    assert cli.main(["train", "--preset", "moons-flow", "--dry-run", *sets]) == 0
    dry = capsys.readouterr().out
    assert f"dataset          {said}, " in dry
    assert cli.main(["train", "--preset", "moons-flow", "--steps", "1", *sets, "--set", "run.checkpoint_every=1"]) == 0
    run = capsys.readouterr()
    assert f"data: {said}" in run.out + run.err
    assert cli.main(["train", "--preset", "moons-flow", "--dry-run", "--json", *sets[:-2],
                     "--set", "data.val_fraction=0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data_items"] == 300 and out["held_out_items"] == 0
