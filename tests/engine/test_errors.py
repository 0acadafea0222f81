"""The one error boundary: every exception becomes one line and an exit code; a bug also leaves
its traceback in a log file that the line names."""

import errno
import os

import pytest

from diffstudio.cli import main
from diffstudio.engine.atomic import as_os_error, atomic_write_text
from diffstudio.engine.errors import describe_error, report_error, state_dir


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_there_is_one_describe_error_and_the_cli_and_app_share_it():
    import diffstudio.commands as commands
    import diffstudio.engine.errors as errors

    assert commands.describe_error is errors.describe_error
    worker = open(os.path.join(os.path.dirname(errors.__file__), "..", "gui", "worker.py"), encoding="utf-8").read()
    assert "def describe_error" not in worker and "report_error(exc)" in worker


@pytest.mark.parametrize("code,needle", [
    (errno.ENOSPC, "disk is full"),
    (errno.EROFS, "read-only"),
    (errno.EACCES, "no permission"),
    (errno.EPERM, "no permission"),
])
def test_file_system_errors_name_the_path_and_exit_1(code, needle):
    r = describe_error(OSError(code, os.strerror(code), "/runs/r/checkpoints/step-000004"))
    assert r.known and r.code == 1
    assert needle in r.message and "/runs/r/checkpoints/step-000004" in r.message and "\n" not in r.message


def test_settings_and_usage_errors_exit_2_known_runtime_errors_exit_1():
    from diffstudio.data.errors import DatasetError
    from diffstudio.engine.checkpoint import CheckpointError
    from diffstudio.engine.config import ConfigError
    from diffstudio.engine.errors import UsageError
    from diffstudio.engine.trainer import TrainingError

    r = describe_error(ConfigError([("optim.lr", "must be > 0, got -1")]))
    assert (r.code, r.message, r.known) == (2, "optim.lr: must be > 0, got -1", True)
    assert describe_error(UsageError("--n: bad")).code == 2
    for e in (DatasetError("No usable image in /d:\n  a.png: broken"), CheckpointError("x is damaged"),
              TrainingError("the loss became nan")):
        r = describe_error(e)
        assert r.code == 1 and r.known and "\n" not in r.message
    r = describe_error(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert r.known and r.code == 1 and r.message.startswith("out of memory")


def test_an_unexpected_exception_is_named_and_its_traceback_goes_to_a_log(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    try:
        {}["missing"]
    except KeyError as e:
        r = report_error(e)
    assert not r.known and r.code == 1 and r.message.startswith("unexpected KeyError: 'missing'")
    log = r.message.split("the traceback is in ")[1].split(" (please report it)")[0]
    assert log.startswith(str(state_dir() / "logs")) and state_dir() == tmp_path / "state" / "diffstudio"
    text = open(log, encoding="utf-8").read()
    assert "Traceback (most recent call last)" in text and "KeyError: 'missing'" in text


def test_cli_bug_prints_one_line_with_the_log_path(tmp_path, monkeypatch, capsys):
    import diffstudio.commands as commands

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))

    def broken(args):
        raise ZeroDivisionError("division by zero inside a command")

    monkeypatch.setattr(commands, "schedule", broken)
    code, out, err = cli(capsys, "schedule", "linear")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("diffstudio: error: unexpected ZeroDivisionError: division by zero inside a command")
    logs = list((tmp_path / "diffstudio" / "logs").glob("error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    assert "in broken" in logs[0].read_text(encoding="utf-8")


def test_a_bug_during_training_logs_into_the_run_folder(tmp_path, monkeypatch, capsys):
    from diffstudio.engine.trainer import Trainer

    def explode(self):
        raise IndexError("step went wrong")

    monkeypatch.setattr(Trainer, "_train_step", explode)
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--preset", "moons-flow", "--steps", "3", "--out", run)
    assert code == 1 and "unexpected IndexError: step went wrong" in err
    logs = list(run.glob("error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err.splitlines()[-1]
    assert "IndexError: step went wrong" in logs[0].read_text(encoding="utf-8")


def test_safetensors_os_errors_become_os_errors_naming_the_target():
    from safetensors import SafetensorError

    e = as_os_error(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
                    "/r/checkpoints/step-000002")
    assert isinstance(e, OSError) and e.errno == errno.ENOSPC and e.filename == "/r/checkpoints/step-000002"
    assert as_os_error(ValueError("no os error here"), "/x") is None


def test_atomic_write_names_the_target_and_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "config.toml"
    atomic_write_text(target, "old")

    from pathlib import Path

    real = Path.write_bytes

    def full(self, data):  # half of it fits, then the disk is full
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "new " * 1000)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.toml"]


def test_ctrl_c_outside_training_is_one_line_and_exit_130(monkeypatch, capsys):
    import diffstudio.commands as commands

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "schedule", interrupted)
    code, _, err = cli(capsys, "schedule", "linear")
    assert code == 130 and err == "diffstudio: error: interrupted\n"
