"""Headless training from the command line, Ctrl-C, sampling, export, and torchrun with 2 processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from diffstudio.cli import main
from diffstudio.engine.checkpoint import load_checkpoint


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_json_resume_sample_and_export(tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = cli(capsys, "train", "--preset", "moons-flow", "--steps", "30", "--out", run, "--json")
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["steps"] == 30 and result["run_dir"] == str(run)
    assert {"final_loss", "images_per_second"} <= set(result) and result["images_per_second"] > 0
    assert "30/30" in err and "steps/s" in err and "ETA" in err  # the progress bar
    code, out, _ = cli(capsys, "train", "--resume", run, "--steps", "45", "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["steps"] == 45
    assert load_checkpoint(run).meta["step"] == 45
    png, npy = tmp_path / "s.png", tmp_path / "s.npy"
    code, out, err = cli(capsys, "sample", run, "--sampler", "heun", "--steps", "8", "--n", "64", "--out", png, "--npy", npy)
    assert code == 0, err
    assert png.stat().st_size > 0 and np.load(npy).shape == (64, 2)
    code, out, err = cli(capsys, "export", run, "--format", "safetensors", "--out", tmp_path / "exp")
    assert code == 0, err


def test_a_taken_out_folder_is_never_changed_silently(tmp_path, capsys):
    """Before: the second run went to run-2 and said only "-> .../run-2", not why."""
    run = tmp_path / "run"
    code, out, err = cli(capsys, "train", "--preset", "moons-flow", "--steps", "2", "--out", run, "--json")
    assert code == 0 and "exists" not in err
    code, out, err = cli(capsys, "train", "--preset", "moons-flow", "--steps", "2", "--out", run, "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["run_dir"] == f"{run}-2"
    assert f"warning: {run} exists: writing this run to {run}-2\n" in err
    # a checkpoint continued into a taken folder says the same
    code, out, err = cli(capsys, "train", "--resume", run, "--steps", "3", "--out", run, "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["run_dir"] == str(run)  # in place: no move
    code, out, err = cli(capsys, "train", "--resume", run, "--steps", "4", "--out", f"{run}-2", "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["run_dir"] == f"{run}-2-2"
    assert f"warning: {run}-2 exists: writing this run to {run}-2-2\n" in err


def test_train_config_file_and_image_sampling(tmp_path, capsys):
    from diffstudio.engine.presets import preset

    cfg = preset("quickstart").updated(run={"steps": 4, "preview_every": 4, "checkpoint_every": 4},
                                       sampling={"num_samples": 4, "steps": 3})
    path = cfg.save(tmp_path / "cfg.toml")
    code, out, err = cli(capsys, "train", path, "--out", tmp_path / "r", "--threads", "1", "--json")
    assert code == 0, err
    assert load_checkpoint(tmp_path / "r").meta["config"]["run"]["threads"] == 1
    png = tmp_path / "g.png"
    code, _, err = cli(capsys, "sample", tmp_path / "r", "--n", "10", "--steps", "2", "--cfg", "2", "--cfg-rescale", "0.7", "--out", png)
    assert code == 0, err
    from PIL import Image

    assert Image.open(png).size[0] > 8 * 3


@pytest.mark.parametrize("argv,needle", [
    (["train", "--preset", "moons-flow", "--steps", "0"], "run.steps"),
    (["train", "missing.toml"], "does not exist"),
    (["train", "--preset", "moons-flow", "--threads", "-1"], "run.threads"),
    (["sample", "/nonexistent/run", "--out", "x.png"], ""),
    (["train", "--preset", "nope"], "invalid choice"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, needle):
    code, out, err = cli(capsys, *argv)
    assert code in (1, 2)
    assert err.startswith("diffstudio: error:") and needle in err and "Traceback" not in err


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "diffstudio", "train", "--preset", "moons-flow", "--steps", "100000",
                          "--out", str(run), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.2)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["stopped"] is True and 0 < result["steps"] < 100000
    assert load_checkpoint(run).meta["step"] == result["steps"]


def test_torchrun_two_processes_train_as_one_process_with_the_global_batch(tmp_path):
    """2 CPU processes under torchrun (gloo, DDP), batch 32 each, give the weights and losses of one
    process with batch 64: the ranks draw the same global batch and each trains on its half."""
    import torch

    from diffstudio.engine.presets import preset
    from diffstudio.engine.trainer import Trainer

    cfg = preset("moons-flow").updated(optim={"batch_size": 32}, sampling={"num_samples": 64, "steps": 4},
                                       run={"steps": 20, "log_every": 1, "preview_every": 10, "checkpoint_every": 10})
    path = cfg.save(tmp_path / "ddp.toml")
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "diffstudio", "train", str(path), "--device", "cpu", "--out", str(run), "--json"],
                       capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = load_checkpoint(run)
    assert ckpt.meta["step"] == 20 and ckpt.meta["world_size"] == 2
    assert torch_equal(ckpt.rng["train.rank0"], ckpt.rng["train.rank1"])  # one shared stream
    rows = [json.loads(line) for line in Path(run, "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]  # training rows (validation and quality rows sit beside them)
    assert rows[-1]["step"] == 20 and rows[-1]["images_per_s"] > 0

    single = Trainer(cfg.updated(optim={"batch_size": 64}), run_dir=tmp_path / "one").run()
    one = load_checkpoint(single.run_dir)
    assert one.meta["step"] == 20
    for name, value in one.model.items():
        torch.testing.assert_close(ckpt.model[name], value, rtol=1e-4, atol=1e-5, msg=name)
    ones = [json.loads(line) for line in Path(single.run_dir, "metrics.jsonl").read_text().splitlines()]
    ones = [r for r in ones if "loss" in r]
    assert [round(x["loss"], 4) for x in rows] == [round(x["loss"], 4) for x in ones]


def torch_equal(a, b):
    import torch

    return torch.equal(a, b)
