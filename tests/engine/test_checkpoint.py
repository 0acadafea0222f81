"""Checkpoints: exact round trips, atomic saves under SIGKILL, no pickle, clear errors."""

import json
import os
import pickle
import random
import signal
import time

import pytest
import torch
from safetensors.torch import load_file

from diffstudio.engine.checkpoint import (
    EMA_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    RNG_FILE,
    STATE_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from diffstudio.engine.run_dir import RunDir

OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.95)),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1, amsgrad=True),
    "sgd": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9),
}


def net():
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.SiLU(), torch.nn.Linear(8, 3))


def train(model, opt, gen, steps):
    for _ in range(steps):
        x = torch.randn(16, 3, generator=gen)
        loss = (model(x) - x.flip(1)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_round_trip_continues_identically(tmp_path, name):
    torch.manual_seed(0)
    model, gen = net(), torch.Generator().manual_seed(1)
    opt = OPTIMIZERS[name](model.parameters())
    train(model, opt, gen, 3)
    ema = {k: v * 0.5 for k, v in model.state_dict().items()}
    meta = {"step": 3, "config": {"a": [1, 2]}, "loss": float("nan")}
    path = save_checkpoint(tmp_path / "ck", model=model.state_dict(), ema=ema, optimizer=opt.state_dict(),
                           meta=meta, rng={"train": gen.get_state(), "torch": torch.get_rng_state()})
    assert sorted(p.name for p in path.iterdir()) == sorted([MODEL_FILE, EMA_FILE, OPTIMIZER_FILE, RNG_FILE, STATE_FILE])

    ck = load_checkpoint(path)
    assert ck.path == path and ck.step == 3 and ck.meta["config"] == {"a": [1, 2]}
    assert all(torch.equal(ck.ema[k], ema[k]) for k in ema)
    model2 = net()
    model2.load_state_dict(ck.model)
    opt2 = OPTIMIZERS[name](model2.parameters())
    opt2.load_state_dict(ck.optimizer)
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    gen2 = torch.Generator()
    gen2.set_state(ck.rng["train"])

    train(model, opt, gen, 4)
    train(model2, opt2, gen2, 4)
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k


def test_optimizer_tensors_are_named_by_param_index_and_the_rest_is_json(tmp_path):
    model = net()
    opt = torch.optim.Adam(model.parameters(), betas=(0.8, 0.9))
    train(model, opt, torch.Generator().manual_seed(0), 1)
    path = save_checkpoint(tmp_path / "ck", model=model.state_dict(), optimizer=opt.state_dict(), meta={})
    names = set(load_file(path / OPTIMIZER_FILE))
    assert {"state.0.exp_avg", "state.0.exp_avg_sq", "state.0.step", "state.3.exp_avg"} <= names
    state = json.loads((path / STATE_FILE).read_text())
    assert state["optimizer"]["param_groups"][0]["params"] == [0, 1, 2, 3]
    assert load_checkpoint(path).optimizer["param_groups"][0]["betas"] == (0.8, 0.9)  # tuples survive


def test_fresh_optimizer_and_no_ema(tmp_path):
    model = net()
    opt = torch.optim.Adam(model.parameters())
    ck = load_checkpoint(save_checkpoint(tmp_path / "ck", model=model.state_dict(), optimizer=opt.state_dict(), meta={"step": 0}))
    assert ck.ema is None and ck.optimizer["state"] == {} and ck.rng == {}
    torch.optim.Adam(net().parameters()).load_state_dict(ck.optimizer)
    assert ck.weights() is ck.model


def test_saving_again_replaces_and_shared_tensors_are_fine(tmp_path):
    w = torch.arange(6.0)
    save_checkpoint(tmp_path / "ck", model={"a": w, "b": w[:3], "c": w.view(2, 3).t()}, meta={"step": 1})
    save_checkpoint(tmp_path / "ck", model={"a": w + 1}, meta={"step": 2})
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.step == 2 and set(ck.model) == {"a"} and torch.equal(ck.model["a"], w + 1)
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no leftovers


def test_meta_that_is_not_json_is_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match="meta"):
        save_checkpoint(tmp_path / "ck", model={"a": torch.zeros(1)}, meta={"x": object()})
    assert not (tmp_path / "ck").exists()


def test_run_folder_resolves_to_its_latest_checkpoint(tmp_path):
    run = RunDir.create(tmp_path, "r")
    with pytest.raises(CheckpointError, match="without any complete checkpoint"):
        load_checkpoint(run.path)
    for step in (5, 10):
        run.save_checkpoint(step, model={"w": torch.full((2,), float(step))}, meta={"step": step})
    run.mark_latest(5)
    assert load_checkpoint(run.path).step == 5
    assert load_checkpoint(run.path / "checkpoints").step == 5
    assert load_checkpoint(run.checkpoint_dir(10)).step == 10


def _saved(tmp_path):
    return save_checkpoint(tmp_path / "ck", model={"w": torch.randn(64, 64)}, meta={"step": 1})


@pytest.mark.parametrize("damage,needle", [
    (lambda p: (p / STATE_FILE).unlink(), "state.json is missing"),
    (lambda p: (p / STATE_FILE).write_text("{not json"), "not valid JSON"),
    (lambda p: (p / STATE_FILE).write_text("[]"), "not a diffstudio checkpoint"),
    (lambda p: (p / MODEL_FILE).unlink(), "model.safetensors is missing"),
    (lambda p: os.truncate(p / MODEL_FILE, 100), "truncated"),
    (lambda p: (p / MODEL_FILE).write_bytes(b"\xff" * (p / MODEL_FILE).stat().st_size), "not a readable safetensors"),
])
def test_damaged_checkpoints_raise_checkpoint_error(tmp_path, damage, needle):
    path = _saved(tmp_path)
    damage(path)
    with pytest.raises(CheckpointError, match=needle):
        load_checkpoint(path)


def test_paths_that_are_not_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a checkpoint folder"):
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "notes.txt")
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="refused: it is damaged"):
        load_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(tmp_path / "junk.safetensors")


class Payload:
    """Unpickling this runs ``open(marker, "w")``: a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_payload_is_real(tmp_path):
    marker = tmp_path / "proof"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()  # so the refusal below really prevents code from running


@pytest.mark.parametrize("suffix", [".pt", ".ckpt", ".pth", ".bin"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle", "pickle-2"])
def test_pickled_code_is_refused_without_running_it(tmp_path, suffix, writer):
    marker = tmp_path / "pwned"
    evil = {"weight": torch.zeros(2), "payload": Payload(marker)}
    path = tmp_path / f"evil{suffix}"
    if writer == "torch.save":
        torch.save(evil, path)
    else:  # a raw pickle; protocol 2 reaches the GLOBAL opcode of the legacy torch format
        path.write_bytes(pickle.dumps(evil, protocol=2 if writer == "pickle-2" else None))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_weights_only_state_dicts_are_accepted(tmp_path):
    model = net()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    ck = load_checkpoint(tmp_path / "w.pt")
    assert ck.model.keys() == model.state_dict().keys() and ck.optimizer is None
    torch.save({"state_dict": model.state_dict(), "ema": model.state_dict(), "epoch": 3}, tmp_path / "w.ckpt")
    ck = load_checkpoint(tmp_path / "w.ckpt")
    assert ck.ema is not None and torch.equal(ck.model["0.weight"], model[0].weight)
    torch.save({"epoch": 3}, tmp_path / "n.pth")
    with pytest.raises(CheckpointError, match="no state_dict"):
        load_checkpoint(tmp_path / "n.pth")


# -- a process killed while saving never corrupts the latest checkpoint ------------------------------

SIZE = 2_000_000  # floats per tensor: two tensors, 16 MB per checkpoint


def _saver(run_path):
    """Child: save checkpoint after checkpoint (each filled with its step) until killed."""
    run = RunDir(run_path)
    torch.set_num_threads(1)
    step = 0
    while True:
        step += 1
        value = float(step)
        run.save_checkpoint(step, keep=2, model={"a": torch.full((SIZE,), value), "b": torch.full((SIZE,), -value)},
                            optimizer={"state": {0: {"m": torch.full((1000,), value)}}, "param_groups": [{"params": [0]}]},
                            meta={"step": step}, rng={"g": torch.Generator().manual_seed(step).get_state()})


def _check_consistent(run):
    name = (run.path / "checkpoints" / "latest").read_text().strip()
    latest = run.path / "checkpoints" / name
    assert latest == run.latest_checkpoint()
    for path in [latest] + [p for _, p in run.checkpoints()]:
        ck = load_checkpoint(path)
        step = ck.meta["step"]
        assert path.name == f"step-{step:06d}"
        assert torch.equal(ck.model["a"], torch.full((SIZE,), float(step)))
        assert torch.equal(ck.model["b"], torch.full((SIZE,), -float(step)))
        assert torch.equal(ck.optimizer["state"][0]["m"], torch.full((1000,), float(step)))
    return load_checkpoint(run.path).meta["step"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_during_saves_leaves_a_loadable_latest(tmp_path):
    rnd = random.Random(0)
    run = RunDir.create(tmp_path, "killed")
    last = 0
    for trial in range(6):
        before = run.latest_checkpoint()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            try:
                _saver(run.path)
            finally:
                os._exit(1)
        deadline = time.time() + 20
        while run.latest_checkpoint() == before and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rnd.uniform(0.0, 0.15))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        step = _check_consistent(run)
        assert step >= 1
        last = step
    assert last >= 1
    run.clean_partial(min_age_s=0)
    assert not [p for p in (run.path / "checkpoints").iterdir() if p.name.startswith(".")]
    _check_consistent(run)
