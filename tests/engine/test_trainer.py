"""The Trainer end to end on tiny models: it learns, resumes exactly, stops cleanly on NaN."""

import math

import pytest
import torch

from diffstudio.data.registry import load_dataset
from diffstudio.engine.checkpoint import load_checkpoint
from diffstudio.engine.metrics import sliced_wasserstein
from diffstudio.engine.presets import preset
from diffstudio.engine.sampling import generate, load_for_sampling
from diffstudio.engine.trainer import Trainer, TrainerHooks, TrainingError


def moons_config(tmp_path, steps, **run):
    return preset("moons-flow").updated(
        run={"steps": steps, "out_dir": str(tmp_path), "preview_every": 10_000, "checkpoint_every": 10_000,
             "log_every": 5, **run},
        sampling={"num_samples": 512, "steps": 24})


class Recorder(TrainerHooks):
    def __init__(self):
        self.metrics, self.previews, self.checkpoints, self.messages = [], [], [], []

    def on_metrics(self, step, m):
        self.metrics.append((step, m))

    def on_preview(self, step, p):
        self.previews.append((step, p))

    def on_checkpoint(self, step, path):
        self.checkpoints.append((step, path))

    def on_message(self, level, text):
        self.messages.append((level, text))


def test_moons_flow_learns_the_data(tmp_path):
    cfg = moons_config(tmp_path, 400)
    data = load_dataset("moons", seed=0).x
    hooks = Recorder()
    result = Trainer(cfg, hooks=hooks).run()
    trained = load_for_sampling(result.run_dir)
    fresh = load_for_sampling(result.run_dir)
    torch.manual_seed(123)
    for p in fresh.model.parameters():  # an untrained model of the same architecture
        torch.nn.init.normal_(p, std=0.02)
    d_trained = sliced_wasserstein(torch.from_numpy(generate(trained.model, cfg, trained.data_info).samples), data)
    d_fresh = sliced_wasserstein(torch.from_numpy(generate(fresh.model, cfg, fresh.data_info).samples), data)
    assert d_trained < 0.5 * d_fresh, (d_trained, d_fresh)
    assert d_trained < 0.12, d_trained
    steps = [s for s, _ in hooks.metrics]
    assert steps == list(range(5, 401, 5))
    assert {"loss", "lr", "grad_norm", "steps_per_s", "images_per_s", "eta_s"} <= set(hooks.metrics[-1][1])
    assert result.steps == 400 and math.isfinite(result.final_loss)


def test_a_run_named_like_an_existing_folder_says_where_it_goes(tmp_path):
    cfg = moons_config(tmp_path, 1, name="exp")
    first, second = Recorder(), Recorder()
    Trainer(cfg, hooks=first).run()
    result = Trainer(cfg, hooks=second).run()
    assert result.run_dir == str(tmp_path / "exp-2")
    assert not any("exists" in text for _, text in first.messages)
    assert ("info", f"{tmp_path / 'exp'} exists: writing this run to {tmp_path / 'exp-2'}") in second.messages


def test_tiny_image_run_loss_falls_and_writes_previews(tmp_path):
    cfg = preset("quickstart").updated(
        run={"steps": 60, "out_dir": str(tmp_path), "preview_every": 30, "checkpoint_every": 30, "log_every": 1},
        sampling={"num_samples": 4, "steps": 4})
    hooks = Recorder()
    result = Trainer(cfg, hooks=hooks).run()
    losses = [m["loss"] for _, m in hooks.metrics]
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:5]) / 5, losses
    assert [s for s, _ in hooks.previews] == [30, 60]
    grid = hooks.previews[-1][1].grid
    assert grid.dtype.name == "uint8" and grid.ndim == 3 and grid.shape[2] == 3
    from diffstudio.engine.run_dir import RunDir

    run = RunDir(result.run_dir)
    assert [s for s, _ in run.previews()] == [30, 60]
    assert [s for s, _ in run.checkpoints()] == [30, 60]
    assert run.config() == cfg


def _weights(run_dir):
    ckpt = load_checkpoint(run_dir)
    return ckpt.meta["step"], {**{f"m.{k}": v for k, v in ckpt.model.items()},
                               **{f"e.{k}": v for k, v in (ckpt.ema or {}).items()}}


def _base(tmp_path, name, lr_schedule):
    return preset(name).updated(
        run={"out_dir": str(tmp_path), "preview_every": 10_000, "checkpoint_every": 10_000, "log_every": 1},
        optim={"batch_size": 16, "warmup_steps": 3, "lr_schedule": lr_schedule},
        sampling={"num_samples": 2, "steps": 2})


def _assert_same_weights(run_a, run_b, step):
    step_a, a = _weights(run_a)
    step_b, b = _weights(run_b)
    assert step_a == step_b == step
    assert a.keys() == b.keys() and any(k.startswith("e.") for k in a)  # EMA included
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("name", ["moons-flow", "quickstart"])
def test_resume_extending_the_step_count_is_bit_identical_even_twice(tmp_path, name):
    """5 steps, then `--resume --steps 9`, then `--steps 12` == 12 steps in one go (constant LR
    after warm-up, so the step count does not change the LR schedule)."""
    base = _base(tmp_path, name, "constant")
    whole = Trainer(base.updated(run={"steps": 12, "name": "whole"})).run()
    part = Trainer(base.updated(run={"steps": 5, "name": "part"})).run()
    Trainer(base.updated(run={"steps": 9, "name": "part"}), resume=part.run_dir).run()
    again = Trainer(base.updated(run={"steps": 12, "name": "part"}), resume=part.run_dir).run()
    assert again.run_dir == part.run_dir
    _assert_same_weights(whole.run_dir, part.run_dir, 12)


class StopAfter(TrainerHooks):
    def __init__(self, step):
        self.step, self.seen = step, 0

    def on_metrics(self, step, m):
        self.seen = step

    def should_stop(self):
        return self.seen >= self.step


def test_interrupted_cosine_run_resumes_bit_identically(tmp_path):
    """A 12-step cosine run stopped at 4 and at 8 (as Ctrl-C or the app's Stop do) and resumed
    each time ends with exactly the weights of the uninterrupted run."""
    cfg = _base(tmp_path, "quickstart", "cosine").updated(run={"steps": 12})
    whole = Trainer(cfg.updated(run={"name": "whole"})).run()
    part = Trainer(cfg.updated(run={"name": "part"}), hooks=StopAfter(4)).run()
    assert part.stopped and part.steps == 4
    mid = Trainer(cfg, hooks=StopAfter(8), resume=part.run_dir).run()
    assert mid.stopped and mid.steps == 8
    Trainer(cfg, resume=part.run_dir).run()
    _assert_same_weights(whole.run_dir, part.run_dir, 12)


def test_resuming_from_an_earlier_checkpoint_sets_the_later_branch_aside(tmp_path):
    """Resume a 12-step run from its step-4 checkpoint with another learning rate: the later
    checkpoints, previews and metrics move to abandoned/ (nothing deleted), and the new branch's
    step-12 checkpoint holds the new weights, not the stale ones that were at that path."""
    from diffstudio.engine.run_dir import RunDir

    cfg = _base(tmp_path, "quickstart", "constant").updated(
        run={"steps": 12, "checkpoint_every": 4, "preview_every": 4, "keep_checkpoints": 10})
    run = RunDir(Trainer(cfg).run().run_dir)
    assert [s for s, _ in run.checkpoints()] == [4, 8, 12]
    stale = _weights(run.checkpoint_dir(12))[1]
    hooks = Recorder()
    Trainer(cfg.updated(optim={"lr": 0.05}), hooks=hooks, resume=run.checkpoint_dir(4)).run()
    assert [s for s, _ in run.checkpoints()] == [4, 8, 12]
    assert any("abandoned" in text for _, text in hooks.messages)
    moved = {p.name: p for p in (run.path / "abandoned").rglob("step-*")}
    assert {"step-000008", "step-000012", "step-000008.png", "step-000012.png"} <= set(moved)
    kept = _weights(moved["step-000012"])[1]
    assert (run.path / "previews" / "step-000012.png").is_file()  # written again by the new branch
    new_step, new = _weights(run.path)
    assert new_step == 12
    assert all(torch.equal(kept[k], stale[k]) for k in stale)  # the old branch is kept intact
    assert any(not torch.equal(new[k], stale[k]) for k in stale)  # and step 12 holds the new one
    steps = [r["step"] for r in run.read_metrics()[0] if "loss" in r]
    assert steps == list(range(1, 13))  # one history, no rows of the abandoned branch


def test_resuming_into_another_folder_branches_and_leaves_the_source_alone(tmp_path):
    """`--resume A/checkpoints/step-4 --out B`: B gets the config and A's history up to step 4,
    A keeps every checkpoint, preview and metrics row; a checkpoint of an abandoned branch can be
    continued only into a new folder."""
    import pytest as _pytest

    from diffstudio.engine.run_dir import RunDir

    cfg = _base(tmp_path, "moons-flow", "constant").updated(
        run={"steps": 12, "checkpoint_every": 4, "keep_checkpoints": 10})
    a = RunDir(Trainer(cfg.updated(run={"name": "a"})).run().run_dir)
    before = (a.path / "metrics.jsonl").read_bytes()
    b = Trainer(cfg, run_dir=tmp_path / "b", resume=a.checkpoint_dir(4)).run()
    assert (a.path / "metrics.jsonl").read_bytes() == before
    assert [s for s, _ in a.checkpoints()] == [4, 8, 12] and not (a.path / "abandoned").exists()
    branch = RunDir(b.run_dir)
    assert branch.path == tmp_path / "b" and branch.config() == cfg
    steps = [r["step"] for r in branch.read_metrics()[0] if "loss" in r]
    assert steps == list(range(1, 13)) and [s for s, _ in branch.checkpoints()] == [8, 12]

    Trainer(cfg, resume=a.checkpoint_dir(4)).run()  # in place: steps 5-12 of A are set aside
    [aside] = (a.path / "abandoned").iterdir()
    assert (aside / "metrics.jsonl").read_bytes() == before  # the abandoned history is kept
    old = aside / "checkpoints" / "step-000008"
    with _pytest.raises(TrainingError, match="--out"):
        Trainer(cfg, resume=old).run()
    c = Trainer(cfg, run_dir=tmp_path / "c", resume=old).run()
    assert load_checkpoint(c.run_dir).meta["step"] == 12


def test_resume_applies_this_devices_optimizer_kernel_and_survives_a_foreign_rng(tmp_path, monkeypatch):
    """A checkpoint saved with PyTorch's default AdamW loop resumes on the fused kernel; a random
    stream saved on another device type is reseeded with a warning instead of crashing."""
    import diffstudio.engine.trainer as trainer_mod

    cfg = _base(tmp_path, "moons-flow", "constant").updated(run={"steps": 3})
    with monkeypatch.context() as m:
        m.setattr(trainer_mod, "_adamw_kernel", lambda device: {})  # as a checkpoint from before the fused kernel
        first = Trainer(cfg).run()
    assert load_checkpoint(first.run_dir).meta["step"] == 3
    trainer = Trainer(cfg.updated(run={"steps": 4}), hooks=Recorder(), resume=first.run_dir)
    trainer._setup()
    assert all(g["fused"] is True for g in trainer.optimizer.param_groups)
    trainer._restore_rng(torch.zeros(16, dtype=torch.uint8))  # the size of a CUDA generator's state
    assert any(level == "warning" and "reseeded" in text for level, text in trainer.hooks.messages)
    reseeded = torch.Generator().manual_seed(cfg.run.seed * 1000 + 3)
    assert torch.equal(trainer.generator.get_state(), reseeded.get_state())


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import diffstudio.engine.trainer as trainer_mod

    real = trainer_mod.diffusion_loss
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] >= 8 else loss

    monkeypatch.setattr(trainer_mod, "diffusion_loss", flaky)
    cfg = moons_config(tmp_path, 20, checkpoint_every=5)
    with pytest.raises(TrainingError, match=r"nan at step 8.*step-000005"):
        Trainer(cfg).run()
    run_dirs = list(tmp_path.iterdir())
    step, weights = _weights(run_dirs[0])
    assert step == 5 and all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_should_stop_saves_a_checkpoint_and_returns(tmp_path):
    class StopAt7(Recorder):
        def __init__(self):
            super().__init__()
            self.seen = 0

        def on_metrics(self, step, m):
            self.seen = step

        def should_stop(self):
            return self.seen >= 7

    cfg = moons_config(tmp_path, 100, log_every=1)
    result = Trainer(cfg, hooks=StopAt7()).run()
    assert result.stopped and result.steps == 7
    assert load_checkpoint(result.run_dir).meta["step"] == 7


def test_a_run_stopped_before_its_first_log_row_reports_its_real_throughput(tmp_path):
    """Before: images_per_second was the last log window's, so a run stopped (Ctrl-C) before step
    ``log_every`` said "0 images/s". It is now images over the time spent in training steps."""
    class StopAfter3(Recorder):
        def __init__(self):
            super().__init__()
            self.asked = 0

        def should_stop(self):
            self.asked += 1
            return self.asked > 3

    cfg = moons_config(tmp_path, 100, log_every=50)
    hooks = StopAfter3()
    result = Trainer(cfg, hooks=hooks).run()
    assert result.stopped and result.steps == 3 and not hooks.metrics  # no log row was written
    assert result.images_per_second > 0 and math.isfinite(result.images_per_second)
