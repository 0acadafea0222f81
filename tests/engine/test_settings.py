"""The settings description: every field described once, and validation, --set, `settings` and the
docs derived from it. Bad values are refused with one line naming the field, never a traceback."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from diffstudio import cli
from diffstudio.core import choices as C
from diffstudio.core.grids import SPACINGS
from diffstudio.core.objectives import TIME_SAMPLINGS, WEIGHTINGS
from diffstudio.core.parameterization import PARAMETERIZATIONS
from diffstudio.core.samplers import SAMPLERS
from diffstudio.core.schedules import FAMILIES
from diffstudio.engine.config import Config
from diffstudio.engine.settings import (
    SEED_MAX,
    SettingAssignmentError,
    by_name,
    describe,
    parse_assignment,
    settings_json,
    settings_markdown,
)

ROOT = Path(__file__).resolve().parents[2]


def test_every_config_field_is_described_with_its_default():
    flat = Config().flat()
    table = by_name()
    assert set(flat) == set(table)
    for name, value in flat.items():
        info = table[name]
        assert info.default == value, name
        assert info.spec.label and info.spec.help and info.spec.group, name
        assert info.type in ("bool", "int", "float", "str", "points")


def test_defaults_and_presets_are_valid():
    assert Config().validate() == []


def _bad_values(info) -> list[tuple[str, object]]:
    """(what is wrong, value) for one setting, derived from nothing but its type and range."""
    s = info.spec
    bad: list[tuple[str, object]] = []
    if info.type == "bool":
        bad += [("type", "false"), ("type", 1)]
    elif info.type == "int":
        bad += [("type", 2.5), ("type", "3"), ("type", True)]
    elif info.type == "float":
        bad += [("type", "0.5"), ("non-finite", math.inf), ("non-finite", math.nan), ("type", True)]
    elif info.type == "str":
        bad += [("type", 3)]
    elif info.type == "points":
        bad += [("type", "abc"), ("type", [["a", 1.0], [1.0, 2.0]]), ("non-finite", [[0.0, math.inf], [1.0, 0.0]])]
    if info.choices:
        bad.append(("choice", "no-such-choice" if info.type == "str" else 2))
    for key, delta in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
        bound = getattr(s, key)
        if bound is None:
            continue
        value = bound + delta if info.type == "int" else (bound - (abs(bound) * 0.5 + 1) if key in ("ge", "gt")
                                                          else bound + abs(bound) * 0.5 + 1)
        if info.type == "int" and key == "gt":
            value = bound
        if info.type == "int" and key == "lt":
            value = bound
        bad.append(("range", int(value) if info.type == "int" else float(value)))
    if s.pattern:
        bad.append(("pattern", "tpu" if info.name == "run.device" else "   "))
    return bad


BAD = [(info.name, why, value) for info in describe() for why, value in _bad_values(info)]


def test_the_bad_table_covers_every_field_and_kind():
    assert len(BAD) >= 50
    assert {name for name, _, _ in BAD} == set(by_name())
    kinds = {why for _, why, _ in BAD}
    assert {"type", "range", "non-finite", "choice"} <= kinds


@pytest.mark.parametrize("name,why,value", BAD, ids=[f"{n}-{w}-{v!r}"[:60] for n, w, v in BAD])
def test_validate_names_the_field_and_never_raises(name, why, value):
    section, key = name.split(".", 1)
    errors = Config().updated(**{section: {key: value}}).validate()
    assert name in [f for f, _ in errors], (value, errors)
    message = dict(errors)[name]
    assert message and "\n" not in message


@pytest.mark.parametrize("name,why,value", BAD[::3], ids=[f"{n}-{w}"[:60] for n, w, _ in BAD[::3]])
def test_train_refuses_a_bad_config_file_with_one_line(tmp_path, capsys, name, why, value):
    section, key = name.split(".", 1)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({section: {key: value}}))  # json writes NaN/Infinity, which json.loads reads back
    code = cli.main(["train", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and name in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before any work


def test_seeds_cover_the_int64_range():
    assert Config().updated(run={"seed": SEED_MAX}, sampling={"seed": SEED_MAX}).validate() == []
    assert "run.seed" in dict(Config().updated(run={"seed": SEED_MAX + 1}).validate())
    assert "run.seed" in dict(Config().updated(run={"seed": -1}).validate())


def test_cross_field_rules_name_their_field():
    errors = dict(Config().updated(sampling={"spacing": "karras"}).validate())
    assert "sampling.spacing" in errors
    errors = dict(Config().updated(schedule={"beta_start": 0.02, "beta_end": 0.01}).validate())
    assert "schedule.beta_end" in errors
    errors = dict(Config().updated(sampling={"steps": 1001}).validate())
    assert "sampling.steps" in errors


def test_several_bad_fields_are_all_reported_once():
    cfg = Config().updated(optim={"lr": "fast", "batch_size": 0}, run={"steps": 2.5})
    fields = [f for f, _ in cfg.validate()]
    assert sorted(fields) == ["optim.batch_size", "optim.lr", "run.steps"]


# ----------------------------------------------------------------------------- --set
@pytest.mark.parametrize("text,expected", [
    ("optim.lr=3e-4", ("optim.lr", 3e-4)),
    ("run.steps=2000", ("run.steps", 2000)),
    ("data.labels=false", ("data.labels", False)),
    ("data.source=moons", ("data.source", "moons")),
    ("run.name=123", ("run.name", "123")),
    ("data.resolution=none", ("data.resolution", None)),
    ("data.channels=3", ("data.channels", 3)),
    ("schedule.points=[[0, 5], [1, -5]]", ("schedule.points", [[0, 5], [1, -5]])),
    ("optim.lr=fast", ("optim.lr", "fast")),  # kept as text: the check then names it
])
def test_parse_assignment(text, expected):
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text", ["optim.lrr=1", "lr=1", "optim.lr"])
def test_bad_assignments_are_errors(text):
    with pytest.raises(SettingAssignmentError):
        parse_assignment(text)


def test_train_set_trains_that_many_steps_at_that_rate(tmp_path, capsys):
    run = tmp_path / "run"
    code = cli.main(["train", "--preset", "moons-flow", "--set", "optim.lr=1e-3", "--set", "run.steps=5",
                     "--set", "optim.warmup_steps=0", "--set", "optim.lr_schedule=constant",
                     "--set", "run.log_every=1", "--out", str(run), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps"] == 5
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows if "lr" in r]
    assert len(lrs) == 5 and all(lr == pytest.approx(1e-3) for lr in lrs)
    assert Config.load(run / "config.toml").optim.lr == pytest.approx(1e-3)


@pytest.mark.parametrize("args,field", [
    (["--set", "optim.lrr=1"], "optim.lrr"),
    (["--set", "optim.lr=fast"], "optim.lr"),
    (["--set", "run.steps=2.5"], "run.steps"),
    (["--set", "run.device=tpu"], "run.device"),
])
def test_bad_set_is_one_line_exit_2(tmp_path, capsys, args, field):
    code = cli.main(["train", "--preset", "moons-flow", *args, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and field in err


def test_bad_set_in_a_real_process_has_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "diffstudio", "train", "--preset", "quickstart", "--set",
                        "optim.batch_size=2.5", "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "optim.batch_size" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- settings --json / docs
def test_settings_json_lists_every_field(capsys):
    assert cli.main(["settings", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    listed = {s["name"]: s for s in data["settings"]}
    assert set(listed) == set(Config().flat())
    for name, s in listed.items():
        assert {"type", "default", "help", "group", "applies"} <= set(s), name
        if s["type"] in ("int", "float") and "choices" not in s:
            assert "range" in s, name
    assert listed["sampling.sampler"]["choices"][0]["value"] == "euler"
    assert set(data["schema"]) == {"data", "model", "schedule", "objective", "optim", "sampling", "run"}


def test_docs_settings_md_is_generated_from_the_description():
    """Regenerate with: diffstudio settings --markdown > docs/settings.md"""
    assert (ROOT / "docs" / "settings.md").read_text(encoding="utf-8") == settings_markdown()


# ----------------------------------------------------------------------------- registries
REGISTRIES = [
    ("schedule.family", C.FAMILY_CHOICES, FAMILIES),
    ("sampling.sampler", C.SAMPLER_CHOICES, tuple(SAMPLERS)),
    ("sampling.spacing", C.SPACING_CHOICES, SPACINGS),
    ("objective.parameterization", C.PARAMETERIZATION_CHOICES, PARAMETERIZATIONS),
    ("objective.weighting", C.WEIGHTING_CHOICES, WEIGHTINGS),
    ("objective.time_sampling", C.TIME_SAMPLING_CHOICES, TIME_SAMPLINGS),
]


@pytest.mark.parametrize("name,registry,implemented", REGISTRIES, ids=[r[0] for r in REGISTRIES])
def test_each_registry_entry_reaches_config_cli_and_docs(name, registry, implemented):
    assert C.values(registry) == tuple(implemented)  # described exactly what is implemented
    info = by_name()[name]
    assert C.values(info.choices) == C.values(registry)
    docs = settings_markdown()
    for choice in registry:
        assert choice.label and choice.help
        assert parse_assignment(f"{name}={choice.value}") == (name, choice.value)
        assert f"`{choice.value}`" in docs
    section, key = name.split(".")
    assert name in dict(Config().updated(**{section: {key: "nope"}}).validate())


def test_set_with_resume_branches_learning_changes_into_a_new_folder(tmp_path, capsys):
    run = tmp_path / "run"
    base = ["--set", "run.preview_every=100", "--set", "run.checkpoint_every=2", "--set", "data.num_points=256"]
    assert cli.main(["train", "--preset", "moons-flow", "--steps", "2", *base, "--out", str(run)]) == 0
    capsys.readouterr()
    code = cli.main(["train", "--resume", str(run), "--steps", "4", "--set", "optim.lr=1e-4"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--out" in err and "optim.lr" in err
    branch = tmp_path / "branch"
    code = cli.main(["train", "--resume", str(run), "--steps", "4", "--set", "optim.lr=1e-4", "--out", str(branch)])
    assert code == 0
    assert Config.load(branch / "config.toml").optim.lr == pytest.approx(1e-4)
    assert Config.load(run / "config.toml").optim.lr != pytest.approx(1e-4)  # the source is untouched
    assert cli.main(["train", "--resume", str(run), "--steps", "3", "--set", "run.log_every=1"]) == 0


@pytest.mark.parametrize("argv,expected", [
    (["train", "--dry-run", "--set", "run.steps=1e3"], "run.steps: expected a whole number, got 1000.0: write 1000"),
    (["train", "--dry-run", "--set", "optim.batch_size=2.5"], "optim.batch_size: expected a whole number, got 2.5: write 2 or 3"),
    (["train", "--dry-run", "--steps", "1e3"], "argument --steps: expected a whole number, got '1e3': write 1000"),
    (["train", "--dry-run", "--threads", "4.0"], "argument --threads: expected a whole number, got '4.0': write 4"),
    (["sample", "run", "--out", "x.png", "--steps", "2.5"], "argument --steps: expected a whole number, got '2.5': write 2 or 3"),
    (["train", "--dry-run", "--steps", "many"], "argument --steps: expected a whole number, got 'many'"),
])
def test_a_number_that_is_not_whole_says_what_to_write(capsys, argv, expected):
    """Whole-number settings and flags stay strict (1e3 is not taken as 1000) but say what to write."""
    assert cli.main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == f"diffstudio: error: {expected}"
    ok = expected.rsplit(": write ", 1)
    if len(ok) == 2 and "--set" in argv:  # the suggestion is itself accepted
        name = argv[-1].split("=")[0]
        assert Config().updated(**{name.split(".")[0]: {name.split(".")[1]: int(ok[1].split()[0])}}).check()
