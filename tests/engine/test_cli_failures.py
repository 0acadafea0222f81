"""Bad input and hostile file systems from the command line: one line, the right exit code, and
nothing lost (issue 10): full disks, read-only run folders, bad sample arguments, resume rules."""

import builtins
import errno
import io
import json
import os
from pathlib import Path

import pytest

from diffstudio.cli import main
from diffstudio.engine.checkpoint import load_checkpoint
from diffstudio.engine.lr import FLOOR, LrSegment, lr_at
from diffstudio.engine.presets import preset
from diffstudio.engine.run_dir import RunDir


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The last stderr line, checked to be the one error line (progress output may precede it)."""
    assert "Traceback" not in err
    line = err.rstrip("\n").splitlines()[-1]
    assert line.startswith("diffstudio: error: "), err
    return line


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def small_config(tmp_path, name="cfg", **run):
    """moons-flow with a short warm-up, every step logged, checkpoints every 3 steps."""
    cfg = preset("moons-flow").updated(
        optim={"warmup_steps": 2, "batch_size": 64}, sampling={"num_samples": 16, "steps": 4},
        run={"log_every": 1, "preview_every": 10_000, "checkpoint_every": 3, **run})
    return cfg.save(tmp_path / f"{name}.toml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 6-step moons run with checkpoints at 3 and 6 (made once for the module)."""
    tmp = tmp_path_factory.mktemp("trained")
    assert main(["train", str(small_config(tmp, steps=6)), "--out", str(tmp / "run")]) == 0
    return tmp / "run"


def copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# ---- full disk --------------------------------------------------------------------------------

def _disk_full_at_checkpoints(monkeypatch):
    """safetensors' writer as on a full disk: part of the file lands, then the real error."""
    import safetensors.torch
    from safetensors import SafetensorError

    def save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)


def test_disk_full_at_the_first_checkpoint_of_a_resumed_run_keeps_the_previous_one(tmp_path, trained, capsys,
                                                                                 monkeypatch):
    run = copy_run(trained, tmp_path / "run")
    _disk_full_at_checkpoints(monkeypatch)
    code, out, err = cli(capsys, "train", "--resume", run, "--steps", "12")
    line = one_error_line(err)
    assert code == 1 and out == ""
    assert "disk is full" in line and str(run / "checkpoints" / "step-000009") in line
    monkeypatch.undo()
    ckpt = load_checkpoint(run)
    assert ckpt.meta["step"] == 6 and ckpt.path == run / "checkpoints" / "step-000006"
    assert [s for s, _ in RunDir(run).checkpoints()] == [3, 6]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no partial folder
    code, _, err = cli(capsys, "train", "--resume", run, "--steps", "9")  # with space again, it goes on
    assert code == 0, err
    assert load_checkpoint(run).meta["step"] == 9


def test_disk_full_at_the_first_checkpoint_of_a_new_run_leaves_no_partial_checkpoint(tmp_path, capsys, monkeypatch):
    _disk_full_at_checkpoints(monkeypatch)
    run = tmp_path / "new"
    code, _, err = cli(capsys, "train", small_config(tmp_path, steps=6), "--out", run)
    line = one_error_line(err)
    assert code == 1 and "disk is full" in line and str(run / "checkpoints" / "step-000003") in line
    assert RunDir(run).latest_checkpoint() is None
    assert list((run / "checkpoints").iterdir()) == []


# ---- read-only run folders --------------------------------------------------------------------

@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: every write below ``folder`` fails as on a read-only mount (EROFS),
    whatever user the tests run as (root ignores permission bits)."""
    roots: list[str] = []

    def inside(path) -> bool:
        try:
            p = os.path.abspath(os.fsdecode(path))
        except TypeError:  # a file descriptor
            return False
        return any(p == r or p.startswith(r + os.sep) for r in roots)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    real_replace, real_rename, real_unlink, real_rmdir = os.replace, os.rename, os.unlink, os.rmdir

    def guarded_open(file, mode="r", *a, **k):
        if inside(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *a, **k)

    def guarded_os_open(path, flags, *a, **k):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *a, **k)

    def guarded_mkdir(path, *a, **k):
        if inside(path):
            if os.path.exists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
            refuse(path)
        return real_mkdir(path, *a, **k)

    def two(real):
        def guarded(src, dst, *a, **k):
            if inside(src) or inside(dst):
                refuse(dst)
            return real(src, dst, *a, **k)
        return guarded

    def one(real):
        def guarded(path, *a, **k):
            if inside(path):
                refuse(path)
            return real(path, *a, **k)
        return guarded

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)
    monkeypatch.setattr(os, "replace", two(real_replace))
    monkeypatch.setattr(os, "rename", two(real_rename))
    monkeypatch.setattr(os, "unlink", one(real_unlink))
    monkeypatch.setattr(os, "rmdir", one(real_rmdir))
    return lambda folder: roots.append(os.path.abspath(folder))


def test_read_only_run_folder_on_resume_is_one_line_and_the_checkpoint_still_loads(tmp_path, trained, capsys,
                                                                                  read_only):
    run = copy_run(trained, tmp_path / "run")
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    read_only(run)
    code, out, err = cli(capsys, "train", "--resume", run, "--steps", "12")
    line = one_error_line(err)
    assert code == 1 and "read-only" in line and str(run) in line
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before  # nothing moved or left behind
    assert load_checkpoint(run).meta["step"] == 6


def test_read_only_folder_for_a_new_run_is_one_line(tmp_path, capsys, read_only):
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(ro)
    code, _, err = cli(capsys, "train", small_config(tmp_path, steps=3), "--out", ro / "new")
    line = one_error_line(err)
    # refused before any data load, as a settings problem naming the flag (exit 2)
    assert code == 2 and line.startswith("diffstudio: error: --out: cannot create") and "read-only" in line.lower()
    assert str(ro / "new") in line and list(ro.iterdir()) == []


# ---- sample and train arguments -----------------------------------------------------------------

@pytest.mark.parametrize("extra,needle", [
    (["--n", "0"], "--n"),
    (["--n", "-3"], "--n"),
    (["--seed", "99999999999999999999"], "--seed"),
    (["--seed", str(2**63)], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--device", "cuda:99"], "--device"),  # no machine has 100 GPUs: unavailable with or without CUDA
    (["--device", "tpu"], "--device"),
    (["--device", "banana"], "--device"),
])
def test_sample_bad_arguments_exit_2_with_one_line(tmp_path, trained, capsys, extra, needle):
    png = tmp_path / "s.png"
    code, out, err = cli(capsys, "sample", trained, "--out", png, *extra)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert needle in one_error_line(err)
    assert not png.exists()


@pytest.mark.parametrize("out,npy,needle", [
    ("grid", None, "--out: {tmp}/grid has no extension"),
    ("grid.foo", None, "--out: {tmp}/grid.foo '.foo' is not an image format"),
    (".", None, "--out: {tmp} is a folder"),
    ("s.png", "s.txt", "--npy: {tmp}/s.txt does not end in .npy"),
    ("s.png", ".", "--npy: {tmp} is a folder"),
])
def test_sample_output_names_it_cannot_write_exit_2_before_sampling(tmp_path, trained, capsys, monkeypatch,
                                                                   out, npy, needle):
    import diffstudio.engine.sampling as sampling

    def never(*a, **k):
        raise AssertionError("the model was loaded before the output names were checked")

    monkeypatch.setattr(sampling, "load_for_sampling", never)
    extra = ["--npy", tmp_path / npy] if npy else []
    code, out_text, err = cli(capsys, "sample", trained, "--out", tmp_path / out, "--n", "1", *extra)
    assert code == 2 and out_text == "" and err.count("\n") == 1
    assert needle.format(tmp=tmp_path) in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_sample_writes_npy_into_a_new_folder_as_it_does_the_image(tmp_path, trained, capsys):
    import numpy as np

    code, out, err = cli(capsys, "sample", trained, "--out", tmp_path / "a" / "s.png", "--n", "2", "--steps", "2",
                         "--npy", tmp_path / "b" / "s.npy")
    assert code == 0, err
    assert np.load(tmp_path / "b" / "s.npy").shape == (2, 2)  # moons: 2 points of 2-D
    assert f"and {tmp_path / 'b' / 's.npy'}" in out


def test_sample_accepts_the_extreme_valid_seed(tmp_path, trained, capsys):
    code, _, err = cli(capsys, "sample", trained, "--out", tmp_path / "s.png", "--n", "1", "--steps", "2",
                       "--seed", str(2**63 - 1))
    assert code == 0, err


def test_train_with_a_data_source_that_does_not_exist_exits_2_naming_it(tmp_path, capsys):
    code, _, err = cli(capsys, "train", "--preset", "quickstart", "--set", f"data.source={tmp_path / 'nope'}",
                       "--out", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1
    assert one_error_line(err).startswith("diffstudio: error: data.source: ")
    assert "neither a built-in dataset nor an existing folder" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("device", ["cuda:99", "tpu"])
def test_train_unavailable_device_exits_2_before_creating_the_run(tmp_path, capsys, device):
    code, _, err = cli(capsys, "train", "--preset", "moons-flow", "--steps", "2", "--device", device,
                       "--out", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1 and "--device" in one_error_line(err)
    assert not (tmp_path / "r").exists()


# ---- resume rules --------------------------------------------------------------------------------

def _suggested_command(line: str) -> list[str]:
    """The ``diffstudio train ...`` command an error line suggests, split as a shell would."""
    import shlex

    text = line[line.index("diffstudio train "):]
    return shlex.split(text.split(" (the run length")[0].rstrip("."))[1:]


@pytest.mark.parametrize("given", [["--set", "optim.lr=1e-3"], ["--set", "optim.lr=1e-3", "--set", "run.name=my run"],
                                   ["--preset", "quickstart"], ["--set", "model.init_from=x"]])
def test_a_suggested_command_runs_as_printed_for_a_run_folder_with_spaces(tmp_path, trained, capsys, given):
    """Before: 'diffstudio train --resume my run 1 --out NEW_FOLDER --set run.name=my run' - pasted
    into a shell, the folder and the value split into several arguments."""
    from diffstudio.cli import build_parser

    run = copy_run(trained, tmp_path / "my run 1")
    code, _, err = cli(capsys, "train", "--resume", run, *given)
    assert code == 2
    line = one_error_line(err)
    if given[1].startswith("model.init_from"):  # the suggestion: a new run from this one, --set ...
        import shlex

        assert shlex.split(line[line.index("start one with ") + len("start one with "):]) == [
            "--set", f"model.init_from={run}"]
        return
    argv = _suggested_command(line)
    args = build_parser().parse_args([a.replace("NEW_FOLDER", str(tmp_path / "new")) for a in argv])
    assert args.command == "train" and args.resume == str(run)
    assert all(a in args.assignments for a in given[1::2] if given[0] == "--set")


def test_config_file_with_resume_is_refused_naming_the_differences(tmp_path, trained, capsys):
    run = copy_run(trained, tmp_path / "run")
    other = preset("moons-flow").updated(optim={"lr": 1e-9}, objective={"parameterization": "v"})
    path = other.save(tmp_path / "other.toml")
    code, _, err = cli(capsys, "train", path, "--resume", run)
    line = one_error_line(err)
    assert code == 2 and err.count("\n") == 1
    assert "optim.lr" in line and "1e-09" in line and "objective.parameterization" in line
    assert f"--resume {run} --out NEW_FOLDER" in line and "--set" in line
    assert load_checkpoint(run).meta["step"] == 6
    rows, _ = RunDir(run).read_metrics()
    assert rows[-1]["step"] == 6


def test_preset_with_resume_is_refused_too(tmp_path, trained, capsys):
    code, _, err = cli(capsys, "train", "--preset", "quickstart", "--resume", trained)
    assert code == 2 and "data.source" in one_error_line(err)


def test_resuming_to_fewer_steps_says_nothing_to_do_in_strict_json(tmp_path, trained, capsys):
    run = copy_run(trained, tmp_path / "run")
    code, out, err = cli(capsys, "train", "--resume", run, "--steps", "4", "--json")
    assert code == 0, err
    result = strict_json(out.strip().splitlines()[-1])
    assert result["steps"] == 6 and result["nothing_to_do"] is True and result["stopped"] is False
    assert result["final_loss"] == pytest.approx(load_checkpoint(run).meta["loss"])
    assert "already at step 6, nothing to do" in err
    assert [s for s, _ in RunDir(run).checkpoints()] == [3, 6]


def test_json_never_holds_nan(tmp_path, capsys):
    from diffstudio.commands import _dumps

    text = _dumps({"final_loss": float("nan"), "eta": [float("inf"), -float("inf"), 1.5]})
    assert strict_json(text) == {"final_loss": None, "eta": [None, None, 1.5]}
    code, out, _ = cli(capsys, "schedule", "scaled_linear", "--ztsnr", "--json")
    assert code == 0 and strict_json(out)["terminal_snr"] == 0.0


def _lr_rows(run) -> dict[int, float]:
    rows, _ = RunDir(run).read_metrics()
    return {int(r["step"]): float(r["lr"]) for r in rows if "lr" in r}  # training rows (not validation)


def test_extending_a_finished_run_keeps_the_lr_continuous_and_says_so(tmp_path, trained, capsys):
    run = copy_run(trained, tmp_path / "run")
    code, _, err = cli(capsys, "train", "--resume", run, "--steps", "12")
    assert code == 0, err
    assert "extended from 6 to 12 steps" in err and "decays from its current" in err
    lr = _lr_rows(run)  # row k holds the rate of the k-th update
    peak = preset("moons-flow").optim.lr
    assert lr[6] < lr[5]  # the finished run was decaying...
    for k in range(7, 13):  # ...and reached the floor at step 6; the extension stays there instead of
        assert lr[k] == pytest.approx(FLOOR * peak, rel=1e-9)  # restarting the cosine (a jump up)
    assert load_checkpoint(run).meta["lr_segment"] == {"start_step": 6, "start_lr": pytest.approx(FLOOR * peak),
                                                       "end_step": 12}


class _StopAt:
    """Hooks that stop a run at a given step (as Ctrl-C or the app's Stop do) and record messages."""

    def __init__(self, step):
        from diffstudio.engine.trainer import TrainerHooks

        class H(TrainerHooks):
            def __init__(h):
                h.seen, h.messages = 0, []

            def on_metrics(h, s, m):
                h.seen = s

            def on_message(h, level, text):
                h.messages.append(text)

            def should_stop(h):
                return step is not None and h.seen >= step

        self.hooks = H()


def test_interrupted_run_extended_twice_decays_continuously_to_the_floor(tmp_path):
    """40-step cosine run stopped at 20, resumed to 80 and stopped at 50, resumed again to 80,
    then extended to 100: at every resume step the rate continues from where it was, and it
    reaches the floor at the end."""
    from diffstudio.engine.config import Config
    from diffstudio.engine.trainer import Trainer

    cfg = Config.load(small_config(tmp_path, steps=40, checkpoint_every=10_000))
    run = Trainer(cfg, hooks=_StopAt(20).hooks, run_dir=tmp_path / "run").run().run_dir
    hooks = _StopAt(50).hooks
    Trainer(cfg.updated(run={"steps": 80}), hooks=hooks, resume=run).run()
    assert any("extended from 40 to 80 steps: from step 20" in m for m in hooks.messages)
    again = _StopAt(None).hooks
    Trainer(cfg.updated(run={"steps": 80}), hooks=again, resume=run).run()
    assert not any("run extended" in m for m in again.messages), again.messages  # the stored segment goes on
    Trainer(cfg.updated(run={"steps": 100}), resume=run).run()
    lr = _lr_rows(run)
    assert sorted(lr) == list(range(1, 101))
    seg = LrSegment(20, lr_at(20, cfg), 80)
    for k in range(21, 81):  # row k is the rate at training step k - 1
        assert lr[k] == pytest.approx(lr_at(k - 1, cfg.updated(run={"steps": 80}), seg), rel=1e-12), k
    assert lr[21] == pytest.approx(lr_at(20, cfg), rel=1e-12)  # continuous at the first resume
    steps = [lr[k] for k in range(3, 101)]  # past warm-up the rate never rises
    assert all(b <= a * (1 + 1e-12) for a, b in zip(steps, steps[1:]))
    assert lr[80] == pytest.approx(FLOOR * cfg.optim.lr, rel=1e-2)  # the rate of step 79, one before the floor
    assert lr[100] == pytest.approx(FLOOR * cfg.optim.lr, rel=1e-9)
    jump_old_way = lr_at(20, cfg.updated(run={"steps": 80})) / lr_at(19, cfg)
    assert jump_old_way > 1.2  # restarting the cosine over 80 steps would have jumped up


# ---- Ctrl-C before the first step ----------------------------------------------------------------

@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_while_the_data_are_prepared_is_a_stop_not_an_error(tmp_path, capsys, monkeypatch, as_json):
    """Before: Ctrl-C while a folder's cache or the latents were built printed 'diffstudio: error:
    Encoding the latents cancelled ...' and exited 1; a stop during training exits 0."""
    import signal

    from diffstudio.data.errors import LoadCancelled
    from diffstudio.engine.trainer import Trainer

    def run(self):
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, through the command's own handler
        assert self.hooks.should_stop()
        raise LoadCancelled("Encoding the latents cancelled after 3 of 9 images; it resumes from there next time")

    monkeypatch.setattr(Trainer, "run", run)
    code, out, err = cli(capsys, "train", "--preset", "moons-flow", "--out", tmp_path / "r", *(["--json"] if as_json else []))
    assert code == 0 and "error" not in err
    if as_json:
        assert strict_json(out.strip().splitlines()[-1])["stopped"] is True
    else:
        assert out.strip() == ("stopped before training: Encoding the latents cancelled after 3 of 9 images; it "
                               "resumes from there next time")


def test_a_cancel_nobody_asked_for_is_still_an_error(tmp_path, capsys, monkeypatch):
    from diffstudio.data.errors import LoadCancelled
    from diffstudio.engine.trainer import Trainer

    def run(self):
        raise LoadCancelled("Encoding the latents cancelled after 3 of 9 images")

    monkeypatch.setattr(Trainer, "run", run)
    code, _, err = cli(capsys, "train", "--preset", "moons-flow", "--out", tmp_path / "r")
    assert code == 1 and one_error_line(err).endswith("cancelled after 3 of 9 images")


def test_an_out_folder_that_cannot_be_created_is_refused_before_any_data_load(tmp_path, capsys, monkeypatch):
    """--out under /proc (a file system that refuses new folders) or below a file: one line naming
    --out and the reason, exit 2, and the data are never loaded; the same for run.out_dir, in the
    run and in its dry run."""
    import diffstudio.data.training_data as td

    def no_load(*a, **k):
        raise AssertionError("the data were loaded before the run folder was checked")

    monkeypatch.setattr(td, "load_training_data", no_load)
    code, out, err = cli(capsys, "train", "--preset", "quickstart", "--steps", 2, "--out", "/proc/x")
    line = one_error_line(err)
    assert code == 2 and "--out" in line and "cannot create /proc/x" in line and "/proc does not accept" in line
    assert "does not exist" not in line
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out, err = cli(capsys, "train", "--preset", "quickstart", "--out", blocker / "run")
    assert code == 2 and f"{blocker} is a file, not a folder" in one_error_line(err)
    for dry in ([], ["--dry-run"]):
        code, out, err = cli(capsys, "train", *dry, "--preset", "quickstart", "--set", "run.out_dir=/proc/nope")
        line = one_error_line(err)
        assert code == 2 and line.startswith("diffstudio: error: run.out_dir: cannot create /proc/nope"), (dry, err)
    assert not list(tmp_path.glob(".create-check.*"))


def test_the_trainer_and_run_dir_say_why_a_folder_cannot_be_created(tmp_path):
    """The app's path (Trainer, RunDir.create) gives the same reason, not "does not exist"."""
    from diffstudio.engine.run_dir import RunDirError, creation_problem
    from diffstudio.engine.trainer import Trainer

    assert creation_problem(tmp_path / "new" / "deeper") is None and not (tmp_path / "new").exists()
    with pytest.raises(RunDirError, match=r"run.out_dir: cannot create /proc/y: /proc does not accept new folders"):
        Trainer(preset("moons-flow").updated(run={"out_dir": "/proc/y", "steps": 1})).run()
    with pytest.raises(RunDirError, match=r"cannot create /proc/z/a: /proc does not accept new folders"):
        RunDir.create("/proc/z", "a")
