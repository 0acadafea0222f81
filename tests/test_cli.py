"""The command-line window into the core: `diffstudio schedule`."""

import json
import subprocess
import sys

import pytest

from diffstudio.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_schedule_json_has_published_terminal_signal(capsys):
    code, out, _ = run_cli(capsys, "schedule", "scaled_linear", "--steps", "10", "--spacing", "leading", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["terminal_signal"] == pytest.approx(0.068265, abs=5e-7)
    assert d["terminal_snr"] == pytest.approx(0.068265**2 / (1 - 0.068265**2), rel=1e-4)
    assert d["timesteps"] == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]


@pytest.mark.parametrize("spacing,expected", [
    ("linspace", [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]),
    ("trailing", [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]),
])
def test_schedule_spacings(capsys, spacing, expected):
    code, out, _ = run_cli(capsys, "schedule", "linear", "--spacing", spacing, "--json")
    assert code == 0 and json.loads(out)["timesteps"] == expected


def test_schedule_ztsnr_is_exactly_zero(capsys):
    code, out, _ = run_cli(capsys, "schedule", "scaled_linear", "--ztsnr", "--json")
    d = json.loads(out)
    assert code == 0 and d["terminal_signal"] == 0.0 and d["terminal_snr"] == 0.0 and d["ztsnr"] is True


def test_schedule_table_is_readable(capsys):
    code, out, _ = run_cli(capsys, "schedule", "squaredcos_cap_v2", "--steps", "4")
    assert code == 0
    assert "terminal signal" in out and "4.92822e-05" in out and "trailing" in out
    assert len([ln for ln in out.splitlines() if ln.strip().startswith(("0 ", "1 ", "2 ", "3 "))]) == 4


def test_flow_shift_moves_the_timesteps(capsys):
    _, a, _ = run_cli(capsys, "schedule", "flow", "--steps", "4", "--json")
    _, b, _ = run_cli(capsys, "schedule", "flow", "--steps", "4", "--shift", "3", "--json")
    assert json.loads(a)["timesteps"] == [1000.0, 750.0, 500.0, 250.0]
    assert json.loads(b)["timesteps"] == [1000.0, 900.0, 750.0, 500.0]


@pytest.mark.parametrize("argv", [
    ["schedule", "nonsense"],
    ["schedule", "linear", "--steps", "0"],
    ["schedule", "linear", "--steps", "abc"],
    ["schedule", "linear", "--spacing", "karras"],
    ["schedule", "linear", "--beta-start", "0.02", "--beta-end", "0.01"],
    ["no-such-command"],
])
def test_bad_arguments_give_one_line_and_exit_2(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("diffstudio: error:") and err.count("\n") == 1 and "Traceback" not in err


def test_module_entry_point_runs_in_a_fresh_process():
    r = subprocess.run([sys.executable, "-m", "diffstudio", "schedule", "linear", "--json"], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["terminal_signal"] == pytest.approx(0.006353, abs=5e-7)
    r = subprocess.run([sys.executable, "-m", "diffstudio", "schedule", "linear", "--steps", "-3"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_dataset_inspect_reports_usable_and_skipped_files(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (20, 30), (200, 10, 10)).save(tmp_path / "good.png")
    Image.new("L", (16, 16), 128).save(tmp_path / "gray.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image")
    code, out, err = run_cli(capsys, "dataset", "inspect", str(tmp_path), "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["usable"] == 2
    assert sorted(s["file"].rsplit("/", 1)[-1] for s in d["skipped"]) == ["empty.png", "notes.png"]
    assert all(s["reason"] for s in d["skipped"])
    code, out, _ = run_cli(capsys, "dataset", "inspect", "digits")
    assert code == 0 and "1797" in out


def test_dataset_inspect_unknown_source_is_one_line(capsys):
    code, out, err = run_cli(capsys, "dataset", "inspect", "/no/such/folder")
    assert code == 1 and err.startswith("diffstudio: error:") and err.count("\n") == 1
