"""Validation by noise level: a held-out set that never trains, fixed noise, a common x0 scale,
and undefined values reported as such."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from diffstudio.core.denoiser import oracle_model
from diffstudio.data.dataset import InMemoryDataset
from diffstudio.data.split import held_out_count, split_indices
from diffstudio.engine.checkpoint import load_checkpoint
from diffstudio.engine.config import Config
from diffstudio.engine.evaluation import (
    ValidationResult,
    evaluate,
    make_validation_set,
    validation_times,
    x0_mse_mean,
)
from diffstudio.engine.oracle import oracle_data
from diffstudio.engine.presets import preset
from diffstudio.engine.trainer import Trainer, TrainerHooks, TrainingError


def _toy_config(tmp_path, param="v", steps=300, **run):
    return preset("gaussians8-v").updated(
        schedule={"family": "scaled_linear", "ztsnr": True}, objective={"parameterization": param},
        sampling={"sampler": "ddim", "steps": 10, "spacing": "trailing", "quality_samples": 0},
        optim={"batch_size": 128, "warmup_steps": 20},
        data={"val_fraction": 0.1},
        run={"steps": steps, "out_dir": str(tmp_path), "name": param, "preview_every": 10**6,
             "checkpoint_every": 10**6, "log_every": 50, "val_every": steps, "val_items": 512, **run})


class _Recording(Trainer):
    """Keeps every training batch it draws."""

    def _batch(self):
        x, y, t, eps = super()._batch()
        self.drawn = getattr(self, "drawn", []) + [x.detach().clone()]
        return x, y, t, eps


class _Validations(TrainerHooks):
    def __init__(self):
        self.results = []

    def on_validation(self, step, result):
        self.results.append(result)


def _unique_points(n=200):
    i = torch.arange(n, dtype=torch.float32)
    return InMemoryDataset(x=torch.stack([i / n, -i / n], 1), kind="points", name="unique")


# ------------------------------------------------------------------------------------- the split


def test_split_is_a_fixed_disjoint_cover_that_depends_only_on_its_seed():
    a, b = split_indices(1797, 0.05, seed=3), split_indices(1797, 0.05, seed=3)
    assert torch.equal(a.val, b.val) and a.fingerprint() == b.fingerprint()
    assert len(a.val) == held_out_count(1797, 0.05) == 90
    assert set(a.val.tolist()).isdisjoint(a.train.tolist())
    assert sorted(a.val.tolist() + a.train.tolist()) == list(range(1797))
    assert not torch.equal(a.val, split_indices(1797, 0.05, seed=4).val)
    assert held_out_count(10, 0.0) == 0 and held_out_count(1, 0.3) == 0 and held_out_count(3, 0.01) == 1


def test_validation_items_never_enter_training_and_every_training_item_does(tmp_path):
    data = _unique_points(200)
    cfg = _toy_config(tmp_path, steps=40, val_every=20).updated(data={"val_fraction": 0.2},
                                                                optim={"batch_size": 64})
    trainer = _Recording(cfg, dataset=data)
    trainer.run()
    held = {tuple(r) for r in trainer.val_data.x.tolist()}
    drawn = {tuple(r) for b in trainer.drawn for r in b.tolist()}
    assert len(held) == 40 and len(drawn) == 160  # 40 steps x 64 draws from 160 items reach them all
    assert held.isdisjoint(drawn)
    assert held | drawn == {tuple(r) for r in data.x.tolist()}


def test_resume_keeps_the_split_and_refuses_a_changed_one(tmp_path):
    data = _unique_points(200)
    cfg = _toy_config(tmp_path, steps=20, val_every=10).updated(data={"val_fraction": 0.2},
                                                                run={"checkpoint_every": 10})
    first = Trainer(cfg.updated(run={"steps": 10}), dataset=data)
    first.run()
    ckpt = load_checkpoint(first.run_dir.path)
    assert ckpt.meta["val_split"]["held_out"] == 40
    resumed = _Recording(cfg, dataset=data, resume=first.run_dir.path)
    resumed.run()
    assert torch.equal(resumed.split.val, first.split.val)
    held = {tuple(r) for r in first.val_data.x.tolist()}
    assert held.isdisjoint({tuple(r) for b in resumed.drawn for r in b.tolist()})
    changed = cfg.updated(data={"val_seed": 1}, run={"steps": 30})
    with pytest.raises(TrainingError, match="validation split changed"):
        Trainer(changed, dataset=data, resume=first.run_dir.path).run()


# ------------------------------------------------------------------------------------- the grid


@pytest.mark.parametrize("family,ztsnr", [("scaled_linear", True), ("scaled_linear", False), ("flow", False),
                                          ("cosine", False), ("edm", False), ("linear", True)])
def test_grid_has_16_or_more_times_uniform_in_log_snr_and_ends_at_one(family, ztsnr):
    sched = Config().updated(schedule={"family": family, "ztsnr": ztsnr}).schedule.build()
    t = validation_times(sched, 20)
    assert len(t) == 20 and float(t[-1]) == 1.0 and bool((t[1:] > t[:-1]).all())
    lam = sched.log_snr(t)
    finite = lam[torch.isfinite(lam)]
    steps = finite[:-1] - finite[1:]  # log-SNR falls with t, in near-equal steps
    assert bool((steps > 0).all()) and float(steps.max()) < 2.0 * float(steps.median())
    assert float(t[0]) <= 0.002  # the low-noise end is covered too


def test_x0_mse_mean_is_the_average_under_uniform_t():
    assert x0_mse_mean([0.0, 0.5, 1.0], [0.0, 1.0, 2.0]) == pytest.approx(1.0)
    assert x0_mse_mean([0.0, 0.1, 1.0], [1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert x0_mse_mean([0.0, 0.5, 1.0], [2.0, 4.0, None]) == pytest.approx(3.0)  # over where defined
    assert x0_mse_mean([0.5], [None]) is None


# ------------------------------------------------------------------------------------- the oracle


def _flat_oracle_x0_mse_at_one(ztsnr: bool, n=1024):
    cfg = Config().updated(data={"source": "lighting-flat"}, schedule={"family": "scaled_linear", "ztsnr": ztsnr},
                           objective={"parameterization": "v"})
    from diffstudio.data.registry import load_dataset

    data = load_dataset("lighting-flat", n=n)
    sched = cfg.schedule.build()
    model = oracle_model(oracle_data("lighting-flat", 32, 1).x0_fn, sched, "v")
    vset = make_validation_set(data, sched, count=16, items=n, seed=0, conditional=False)
    result = evaluate(model, sched, cfg.objective.build(), vset)
    per_pixel_var = float(data.x.double().var(0, unbiased=False).mean())
    return result, per_pixel_var, data


def test_exact_denoiser_x0_mse_at_t1_is_the_data_variance_under_ztsnr_and_lower_without():
    """Tolerance: 2 % of the variance (the exact answer at alpha = 0 is the prior mean 0, so the
    x0-MSE there is the items' mean square; 1024 items of U(-1, 1) put their mean within ~0.03 of 0,
    i.e. 0.3 % of the variance 1/3)."""
    z, var, data = _flat_oracle_x0_mse_at_one(True)
    assert z.t[-1] == 1.0 and z.x0_mse[-1] == pytest.approx(var, rel=0.02)
    assert var == pytest.approx(1 / 3, rel=0.06)
    sd, var_sd, _ = _flat_oracle_x0_mse_at_one(False)
    assert sd.x0_mse[-1] < 0.7 * var_sd  # SD's alpha_1 = 0.068 leaks the brightness: the oracle sees it
    assert all(b <= var * 1.02 for b in z.x0_mse)  # an exact denoiser never does worse than the mean
    assert z.x0_mse[0] < 1e-3 * var  # at t = 0.001 the brightness is all but known


# ------------------------------------------------------------------------------------- undefined values


def test_eps_at_ztsnr_terminal_is_null_with_the_reason_never_a_number():
    cfg = Config().updated(data={"source": "lighting-flat"}, schedule={"family": "scaled_linear", "ztsnr": True},
                           objective={"parameterization": "eps"})
    from diffstudio.data.registry import load_dataset

    data = load_dataset("lighting-flat", n=64)
    sched = cfg.schedule.build()
    model = oracle_model(oracle_data("lighting-flat", 32, 1).x0_fn, sched, "eps")
    res = evaluate(model, sched, cfg.objective.build(), make_validation_set(data, sched, count=16, items=64,
                                                                            seed=0, conditional=False))
    assert res.x0_mse[-1] is None and res.eps_mse[-1] is None and res.log_snr[-1] is None
    assert res.loss[-1] is not None and math.isfinite(res.loss[-1])  # eps's own loss is defined there
    assert [u["t"] for u in res.undefined] == [1.0] and "singular" in res.undefined[0]["reason"]
    assert all(v is not None and math.isfinite(v) for v in res.x0_mse[:-1])
    text = json.dumps({"step": 0, "validation": res.to_json()}, allow_nan=False)  # no NaN, no inf
    back = ValidationResult.from_row(json.loads(text))
    assert back.x0_mse == res.x0_mse and back.undefined == res.undefined


def test_two_evaluations_of_the_same_weights_are_identical_and_eps_fails_towards_t1_while_v_does_not(tmp_path):
    out = {}
    for param in ("eps", "v"):
        hooks = _Validations()
        trainer = Trainer(_toy_config(tmp_path, param), hooks=hooks)
        trainer.run()
        model = trainer.ema.module.eval()
        again = evaluate(model, trainer.schedule, trainer.objective, trainer.validation, step=trainer.step)
        first = hooks.results[-1]
        assert (again.t, again.loss, again.x0_mse, again.eps_mse) == (first.t, first.loss, first.x0_mse,
                                                                      first.eps_mse)
        out[param] = first, float(trainer.val_data.x.double().var(0, unbiased=False).mean())
    (eps, var), (v, _) = out["eps"], out["v"]
    assert eps.x0_mse[-1] is None  # t = 1: undefined for eps
    defined = [b for b in eps.x0_mse if b is not None]
    assert defined[-1] > 3 * var and defined[-1] > defined[-4] > defined[len(defined) // 2]  # rising towards t=1
    assert max(v.x0_mse) <= 1.1 * var, (v.x0_mse, var)  # at most the data variance (10 % for 300 steps)
    assert v.x0_mse[-1] == pytest.approx(var, rel=0.1)  # at t = 1 v predicts the data mean


# ------------------------------------------------------------------------------------- the CLI


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "diffstudio", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def test_train_prints_validation_and_eval_json_has_the_keys_with_finite_values(tmp_path):
    run = tmp_path / "run"
    r = _cli("train", "--preset", "gaussians8-v", "--steps", "60", "--out", str(run), "--threads", "1",
             "--set", "run.val_every=30", "--set", "sampling.quality_samples=64", "--set", "sampling.steps=8")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("validation at step") == 2 and "x0-MSE mean" in r.stderr
    assert "quality at step 60: sliced_wasserstein" in r.stderr
    e = _cli("eval", str(run), "--json", "--quality-samples", "64")
    assert e.returncode == 0, e.stderr[-2000:]
    out = json.loads(e.stdout)
    assert {"t", "loss", "x0_mse", "eps_mse", "x0_mse_mean", "quality"} <= set(out)
    assert len(out["t"]) == len(out["loss"]) == len(out["x0_mse"]) == len(out["eps_mse"]) == 20
    for key in ("t", "loss", "x0_mse", "eps_mse"):
        assert all(v is not None and math.isfinite(v) for v in out[key]), key  # v: defined everywhere
    assert math.isfinite(out["x0_mse_mean"]) and math.isfinite(out["quality"]["sliced_wasserstein"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r["validation"] for r in rows if "validation" in r][-1]
    assert last["x0_mse"] == out["x0_mse"]  # the CLI repeats the run's own last validation exactly
    text = _cli("eval", str(run), "--quality-samples", "0")
    assert text.returncode == 0 and "x0-MSE averaged uniformly in t" in text.stdout


def test_eval_reads_a_folder_as_the_run_did_streamed_from_its_cache_never_as_float32(tmp_path, monkeypatch):
    """Before: ``diffstudio eval`` loaded a folder run's data with the float32 loader (4 bytes per
    channel value, all in memory) even when the run itself streamed it from the pixel cache."""
    import numpy as np
    from PIL import Image

    import diffstudio.data.registry as registry
    from diffstudio.engine.eval_run import evaluate_checkpoint

    monkeypatch.setenv("DIFFSTUDIO_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(5)
    (tmp_path / "pics").mkdir()
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "pics" / f"{i:02d}.png")
    cfg = preset("quickstart").updated(
        data={"source": str(tmp_path / "pics"), "resolution": 8, "channels": 3, "memory_budget_mb": 1e-4,
              "val_fraction": 0.25},
        model={"class_conditional": False},
        sampling={"quality_samples": 0, "num_samples": 2, "steps": 2},
        optim={"batch_size": 4, "warmup_steps": 1},
        run={"steps": 2, "out_dir": str(tmp_path), "name": "run", "preview_every": 10**6, "checkpoint_every": 10**6,
             "log_every": 1, "val_every": 2, "val_items": 6})
    trainer = Trainer(cfg)
    result = trainer.run()
    assert type(trainer.data).__name__ == "StreamingDataset"  # the run streamed its folder

    def no_float_copy(*_a, **_k):
        raise AssertionError("eval loaded the folder as float32")

    monkeypatch.setattr(registry, "_load_folder", no_float_copy)
    out = evaluate_checkpoint(result.run_dir)
    from pathlib import Path

    rows = [json.loads(x) for x in (Path(result.run_dir) / "metrics.jsonl").read_text().splitlines()]
    last = [r["validation"] for r in rows if "validation" in r][-1]
    assert out["items"] == 6 and out["x0_mse"] == last["x0_mse"]  # the run's own held-out items, exactly
