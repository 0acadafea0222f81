"""The run folder: layout, metrics that survive torn lines and can be followed, previews, pruning."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from diffstudio.engine.config import Config
from diffstudio.engine.run_dir import RunDir, RunDirError, run_folder_name, step_name


def ckpt(run, step):
    return run.save_checkpoint(step, model={"w": torch.full((3,), float(step))}, meta={"step": step})


def test_create_makes_unique_folders_with_their_layout(tmp_path):
    a = RunDir.create(tmp_path / "runs", "exp")
    b = RunDir.create(tmp_path / "runs", "exp")
    c = RunDir.create(tmp_path / "runs", "../we/ird:name")
    d = RunDir.create(tmp_path / "runs")
    assert a.name == "exp" and b.name == "exp-2"
    runs = tmp_path / "runs"
    assert a.moved_note() == "" and b.moved_note() == f"{runs / 'exp'} exists: writing this run to {runs / 'exp-2'}"
    assert c.path.parent == tmp_path / "runs" and "/" not in c.name
    assert d.name.startswith("run-")
    for run in (a, b, c, d):
        assert (run.path / "previews").is_dir() and (run.path / "checkpoints").is_dir()
        assert RunDir(run.path) == run
    assert a.checkpoints() == [] and a.previews() == [] and a.latest_checkpoint() is None
    assert a.read_metrics() == ([], 0)


def test_opening_something_else_fails(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        RunDir(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunDirError, match="not a run folder"):
        RunDir(tmp_path / "plain")
    (tmp_path / "plain" / "file.txt").write_text("x")
    with pytest.raises(RunDirError, match="not a run folder"):
        RunDir.open_or_create(tmp_path / "plain")


def test_open_or_create_uses_the_exact_path(tmp_path):
    cfg = Config().updated(run={"steps": 7})
    run = RunDir.open_or_create(tmp_path / "exact", config=cfg)
    assert run.path == tmp_path / "exact" and run.config() == cfg
    assert RunDir.open_or_create(tmp_path / "exact") == run
    (tmp_path / "empty").mkdir()
    assert RunDir.open_or_create(tmp_path / "empty").path == tmp_path / "empty"


def test_config_round_trip(tmp_path):
    cfg = Config().updated(schedule={"family": "linear", "ztsnr": False}, sampling={"spacing": "leading"})
    run = RunDir.create(tmp_path, "c")
    run.save_config(cfg)
    assert (run.path / "config.toml").is_file()
    assert RunDir(run.path).config() == cfg


@pytest.mark.parametrize("name,folder", [
    ("digits", "digits"),
    ("/tmp/photos/myimages", "myimages"),  # a folder dataset: its base name, not "-tmp-photos-myimages"
    ("/tmp/photos/myimages/", "myimages"),
    ("~/pictures/cats", "cats"),
    ("file:///data/caf%E9", "caf-xe9"),  # a non-UTF-8 name: valid UTF-8 text from its escapes
    ("/data/caf\udce9", "caf-xe9"),
    ("/data/a:b*c", "a-b-c"),
    ("..hidden", "hidden"),
    ("my run", "my run"),
    ("", ""),
])
def test_run_folder_name(name, folder):
    assert run_folder_name(name) == folder
    run_folder_name(name).encode("utf-8")  # never a lone surrogate


def test_a_folder_run_is_named_after_the_folder(tmp_path):
    data = tmp_path / "somewhere" / "myimages"
    run = RunDir.create(tmp_path / "runs", str(data) + "/")
    assert run.path == tmp_path / "runs" / "myimages"
    assert RunDir.create(tmp_path / "runs", str(data)).name == "myimages-2"


def test_config_with_a_non_utf8_dataset_folder_is_written_as_a_file_uri(tmp_path):
    import os

    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9")
    os.mkdir(folder)
    run = RunDir.create(tmp_path / "runs", folder, config=Config().updated(data={"source": folder}))
    assert run.name == "caf-xe9"
    text = (run.path / "config.toml").read_bytes().decode("utf-8")  # strict: valid UTF-8
    assert "%E9" in text
    from diffstudio.data.paths import from_portable

    assert from_portable(run.config().data.source) == folder
    plain = RunDir.create(tmp_path / "runs", "p", config=Config().updated(data={"source": str(tmp_path)}))
    assert plain.config().data.source == str(tmp_path)  # a UTF-8 name is written as it is


def rows(a, b):
    return [{"step": s, "loss": 1.0 / s, "lr": 1e-3} for s in range(a, b)]


def test_metrics_append_and_follow(tmp_path):
    run = RunDir.create(tmp_path, "m")
    run.append_metrics(rows(1, 4))
    follower = RunDir(run.path)
    got, nxt = follower.read_metrics()
    assert [r["step"] for r in got] == [1, 2, 3] and nxt == 3
    run.append_metrics(rows(4, 6))
    got, nxt = follower.read_metrics(nxt)
    assert [r["step"] for r in got] == [4, 5] and nxt == 5
    assert follower.read_metrics(nxt) == ([], 5)
    assert [r["step"] for r in follower.read_metrics(2)[0]] == [3, 4, 5]  # going back works too


def test_metrics_values_are_converted_and_nan_survives(tmp_path):
    run = RunDir.create(tmp_path, "m")
    run.append_metrics([{"step": np.int64(1), "loss": torch.tensor(0.5), "gn": np.float32(2.0), "bad": float("nan")}])
    (row,), _ = run.read_metrics()
    assert row["step"] == 1 and row["loss"] == 0.5 and row["gn"] == 2.0 and math.isnan(row["bad"])


def test_a_line_being_written_waits_and_a_torn_line_is_skipped(tmp_path):
    run = RunDir.create(tmp_path, "t")
    run.append_metrics(rows(1, 3))
    path = run.path / "metrics.jsonl"
    with open(path, "a") as f:  # a writer half-way through a line
        f.write('{"step": 3, "lo')
    got, nxt = run.read_metrics()
    assert [r["step"] for r in got] == [1, 2] and nxt == 2
    with open(path, "a") as f:  # ... that finishes it
        f.write('ss": 0.3}\n')
    got, nxt = run.read_metrics(nxt)
    assert [r["step"] for r in got] == [3] and nxt == 3

    with open(path, "a") as f:  # a crash mid-line, then the run resumes and appends
        f.write('{"step": 4, "loss"')
    run.append_metrics(rows(4, 6))
    assert path.read_text().count("\n") == 6
    got, nxt = run.read_metrics(nxt)
    assert [r["step"] for r in got] == [4, 5] and nxt == 6
    assert [r["step"] for r in RunDir(run.path).read_metrics()[0]] == [1, 2, 3, 4, 5]


def test_truncate_metrics_and_follower_notices_the_rewrite(tmp_path):
    run = RunDir.create(tmp_path, "t")
    run.append_metrics(rows(1, 11))
    follower = RunDir(run.path)
    _, nxt = follower.read_metrics()
    run.truncate_metrics(after_step=5)
    run.append_metrics(rows(6, 8))
    assert [r["step"] for r in run.read_metrics()[0]] == [1, 2, 3, 4, 5, 6, 7]
    got, nxt = follower.read_metrics(0)
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6, 7] and nxt == 7


def test_events(tmp_path):
    run = RunDir.create(tmp_path, "e")
    run.append_event("start", step=0)
    run.append_event("stop", step=10, reason="user")
    events, n = run.read_events()
    assert [e["event"] for e in events] == ["start", "stop"] and n == 2 and events[1]["reason"] == "user"


def test_previews_are_listed_in_step_order_with_stats(tmp_path):
    run = RunDir.create(tmp_path, "p")
    rgb = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    gray = np.full((6, 6), 7, np.uint8)
    run.save_preview(1000, rgb, {"step": 1000, "mean_brightness": np.float32(0.25)})
    run.save_preview(250, gray)
    run.save_preview(500, gray[:, :, None])
    assert [s for s, _ in run.previews()] == [250, 500, 1000]
    assert run.previews()[0][1].name == "step-000250.png"
    assert np.array_equal(np.asarray(Image.open(run.previews()[-1][1])), rgb)
    assert np.asarray(Image.open(run.previews()[1][1])).shape == (6, 6)
    assert run.preview_stats(1000) == {"step": 1000, "mean_brightness": 0.25}
    assert run.preview_stats(250) is None
    assert not [p for p in (run.path / "previews").iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="uint8"):
        run.save_preview(1, np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="H, W"):
        run.save_preview(1, np.zeros((4, 4, 2), np.uint8))


def test_checkpoint_listing_latest_and_prune(tmp_path):
    run = RunDir.create(tmp_path, "c")
    for step in (100, 200, 300, 400):
        ckpt(run, step)
    assert run.checkpoint_dir(300) == run.path / "checkpoints" / "step-000300"
    assert [s for s, _ in run.checkpoints()] == [100, 200, 300, 400]
    assert run.latest_checkpoint() == run.checkpoint_dir(400)
    assert (run.path / "checkpoints" / "latest").read_text().strip() == "step-000400"

    run.mark_latest(100)  # e.g. resumed from an older one
    gone = run.prune_checkpoints(keep=2)
    assert gone == [run.checkpoint_dir(200)]
    assert [s for s, _ in run.checkpoints()] == [100, 300, 400]  # the latest is never deleted
    assert run.latest_checkpoint() == run.checkpoint_dir(100)
    run.mark_latest(400)
    run.prune_checkpoints(keep=1)
    assert [s for s, _ in run.checkpoints()] == [400]
    with pytest.raises(ValueError):
        run.prune_checkpoints(keep=0)


def test_save_checkpoint_with_keep(tmp_path):
    run = RunDir.create(tmp_path, "k")
    for step in range(1, 6):
        run.save_checkpoint(step, keep=3, model={"w": torch.zeros(1)}, meta={"step": step})
    assert [s for s, _ in run.checkpoints()] == [3, 4, 5]


def test_latest_falls_back_when_missing_or_stale_and_partials_are_invisible(tmp_path):
    run = RunDir.create(tmp_path, "f")
    ckpt(run, 10)
    ckpt(run, 20)
    (run.path / "checkpoints" / "latest").unlink()
    assert run.latest_checkpoint() == run.checkpoint_dir(20)
    (run.path / "checkpoints" / "latest").write_text("step-000999\n")
    assert run.latest_checkpoint() == run.checkpoint_dir(20)
    # what an interrupted write leaves: a hidden temporary folder and a folder without state.json
    partial = run.path / "checkpoints" / ".step-000030.abc.tmp"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    (run.path / "checkpoints" / step_name(40)).mkdir()
    assert [s for s, _ in run.checkpoints()] == [10, 20]
    with pytest.raises(RunDirError, match="not a complete checkpoint"):
        run.mark_latest(40)
    assert run.clean_partial(min_age_s=3600) == []
    assert run.clean_partial(min_age_s=0) == [partial] and not partial.exists()


def test_run_dir_is_path_like(tmp_path):
    run = RunDir.create(tmp_path, "p")
    assert (tmp_path / "p").samefile(run)
    assert json.dumps(str(run.path))
