"""The config tree round-trips to TOML and JSON, and validation names the field."""

import pytest

from diffstudio.engine.config import Config, ConfigError
from diffstudio.engine.presets import PRESETS, preset


@pytest.mark.parametrize("suffix", [".toml", ".json"])
@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip(tmp_path, suffix, name):
    cfg = preset(name)
    assert cfg.validate() == []
    path = cfg.save(tmp_path / f"c{suffix}")
    assert Config.load(path) == cfg


def test_custom_points_round_trip_through_toml(tmp_path):
    cfg = Config().updated(schedule={"family": "custom", "points": [[0.0, 8.0], [0.4, 1.0], [1.0, -9.0]]})
    assert Config.load(cfg.save(tmp_path / "c.toml")).schedule.points == [[0.0, 8.0], [0.4, 1.0], [1.0, -9.0]]


@pytest.mark.parametrize("section,values,field", [
    ("schedule", {"beta_start": 0.02, "beta_end": 0.01}, "schedule.beta_end"),
    ("sampling", {"steps": 0}, "sampling.steps"),
    ("sampling", {"spacing": "karras"}, "sampling.spacing"),
    ("sampling", {"sampler": "magic"}, "sampling.sampler"),
    ("objective", {"parameterization": "eps2"}, "objective.parameterization"),
    ("optim", {"lr": -1.0}, "optim.lr"),
    ("optim", {"ema_decay": 1.0}, "optim.ema_decay"),
    ("run", {"steps": 0}, "run.steps"),
    ("data", {"channels": 2}, "data.channels"),
    ("schedule", {"family": "custom", "points": [[0.0, 1.0], [1.0, 2.0]]}, "schedule.points"),
])
def test_validation_names_the_field(section, values, field):
    errors = Config().updated(**{section: values}).validate()
    assert field in [f for f, _ in errors], errors
    with pytest.raises(ConfigError) as e:
        Config().updated(**{section: values}).check()
    assert field in str(e.value)


def test_unknown_keys_and_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"schedule\.colour"):
        Config.from_dict({"schedule": {"colour": "red"}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[schedule\nfamily=")
    with pytest.raises(ConfigError, match="not valid toml"):
        Config.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(tmp_path / "missing.json")


@pytest.mark.parametrize("name,needle", [
    ("c.yaml", "a config file is .toml or .json, not .yaml"),
    ("c.ini", "a config file is .toml or .json, not .ini"),
    ("config", "a config file is .toml or .json, not a name without an extension"),
])
def test_a_config_file_of_another_format_is_named_not_parsed_as_json(tmp_path, name, needle):
    path = tmp_path / name
    path.write_text("data:\n  source: digits\n")
    with pytest.raises(ConfigError) as e:
        Config.load(path)
    assert needle in str(e.value) and "JSON" not in str(e.value) and "Expecting value" not in str(e.value)


def test_a_folder_given_as_config_file_is_a_settings_error(tmp_path):
    (tmp_path / "cfg.toml").mkdir()
    with pytest.raises(ConfigError, match="is a folder; give a config file"):
        Config.load(tmp_path / "cfg.toml")


def test_upper_case_extensions_load_what_save_wrote(tmp_path):
    cfg = preset("quickstart").updated(run={"steps": 7})
    assert Config.load(cfg.save(tmp_path / "C.TOML")) == cfg
    assert tomllib_loads((tmp_path / "C.TOML").read_text())["run"]["steps"] == 7


def tomllib_loads(text):
    import tomllib

    return tomllib.loads(text)
