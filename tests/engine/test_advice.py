"""Advice at the start of training: predictions made singular by the schedule and spacing, flow
with shift != 1, and skipped data files; the same words in the CLI and the Trainer's hooks."""

import numpy as np
import pytest

from diffstudio.cli import main
from diffstudio.data.dataset import InMemoryDataset, SkippedFile
from diffstudio.engine import advice
from diffstudio.engine.advice import (
    BrightnessStats,
    flow_shift,
    objective_advice,
    run_advice,
    singular_prediction,
    skipped_files,
    training_advice,
)
from diffstudio.engine.config import Config
from diffstudio.engine.presets import preset


def quick(**objective):
    return preset("quickstart").updated(objective=objective) if objective else preset("quickstart")


@pytest.mark.parametrize("param", ["eps", "score"])
def test_eps_and_score_with_ztsnr_sampled_from_t1_warn_that_sample_refuses(param):
    (a,) = singular_prediction(quick(parameterization=param))
    assert a.level == "warning" and a.field == "objective.parameterization"
    assert param in a.text and "t = 1" in a.text and "'trailing' spacing starts at t = 1" in a.text
    assert "`diffstudio sample` refuses" in a.text


def test_the_warning_follows_the_schedule_and_spacing():
    assert singular_prediction(quick(parameterization="v")) == []
    assert singular_prediction(quick(parameterization="x0")) == []
    no_ztsnr = quick(parameterization="eps").updated(schedule={"ztsnr": False})
    assert singular_prediction(no_ztsnr) == []  # alpha_1 = 0.068: never singular
    leading = quick(parameterization="eps").updated(sampling={"spacing": "leading"})
    (a,) = singular_prediction(leading)  # trained singular at t = 1, but this grid does not start there
    assert "trailing spacing" in a.text and "'leading'" not in a.text
    cosine = preset("gaussians8-v").updated(objective={"parameterization": "eps"})  # continuous, alpha(1) = 0
    assert "'uniform' spacing starts at t = 1" in singular_prediction(cosine)[0].text


def test_flow_with_shift_other_than_one_points_to_the_known_limit():
    assert flow_shift(preset("moons-flow")) == []
    (a,) = flow_shift(preset("moons-flow").updated(schedule={"shift": 3.0}))
    assert a.field == "schedule.shift" and "shift 3" in a.text and "Known limits" in a.text
    assert flow_shift(quick().updated(schedule={"shift": 3.0})) == []  # shift means nothing to betas


def test_skipped_files_are_counted_with_a_pointer_to_dataset_inspect():
    import torch

    data = InMemoryDataset(torch.zeros(2, 1, 8, 8), skipped=[SkippedFile("a.png", "broken data stream"),
                                                             SkippedFile("b.jpg", "truncated")])
    (a,) = skipped_files(data, "my pics")
    assert "2 file(s)" in a.text and "a.png: broken data stream" in a.text
    assert "diffstudio dataset inspect 'my pics'" in a.text
    assert skipped_files(InMemoryDataset(torch.zeros(2, 1, 8, 8)), "x") == [] and skipped_files(None) == []


def test_train_prints_the_warnings_before_training(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(4):
        Image.new("L", (8, 8), 40 * i).save(folder / f"ok{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    cfg = preset("quickstart").updated(
        data={"source": str(folder), "resolution": 8, "channels": 1, "labels": False},
        model={"class_conditional": False}, objective={"parameterization": "eps"},
        optim={"batch_size": 4},
        sampling={"num_samples": 2, "steps": 2, "guidance_scale": 1.0, "guidance_rescale": 0.0},
        run={"steps": 1, "preview_every": 10_000, "checkpoint_every": 10_000})
    code, _, err = (main(["train", str(cfg.save(tmp_path / "c.toml")), "--out", str(tmp_path / "run")]),
                    *capsys.readouterr())
    assert code == 0, err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 2, err
    assert "eps-prediction cannot recover the image at t = 1" in warnings[0]
    assert "1 file(s) of the dataset were skipped (first: " in warnings[1] and "broken.png" in warnings[1]
    assert f"diffstudio dataset inspect {folder}" in warnings[1]
    assert err.index("warning: ") < err.index("training on ")


def test_the_trainer_sends_the_advice_to_its_hooks(tmp_path):
    from diffstudio.engine.trainer import Trainer
    from tests.helpers import Said

    hooks = Said()
    cfg = preset("moons-flow").updated(schedule={"shift": 2.0},
                                       run={"steps": 1, "out_dir": str(tmp_path), "preview_every": 10_000},
                                       sampling={"num_samples": 8, "steps": 2})
    Trainer(cfg, hooks=hooks).run()
    assert [t for lv, t in hooks.said if lv == "warning"] == [a.text for a in training_advice(cfg)]
    assert len(training_advice(cfg)) == 1


def test_dataset_notes_are_part_of_the_start_of_train_advice():
    from types import SimpleNamespace

    from diffstudio.engine.advice import training_advice
    from diffstudio.engine.config import Config

    data = SimpleNamespace(skipped=[], notes=["class 'empty' has no usable image: dropped, labels renumbered"])
    texts = [a.text for a in training_advice(Config().updated(objective={"parameterization": "v"}), data)]
    assert any("dropped, labels renumbered" in t for t in texts)


def test_config_save_writes_a_non_utf8_folder_that_loads_back(tmp_path):
    import os

    from diffstudio.data.paths import from_portable
    from diffstudio.engine.config import Config

    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9")
    cfg = Config().updated(data={"source": folder})
    for suffix in (".toml", ".json"):
        path = cfg.save(tmp_path / f"c{suffix}")
        path.read_text(encoding="utf-8")  # valid UTF-8
        assert from_portable(Config.load(path).data.source) == folder


# ---- objective and run advice (the app and the command line share them)

SQUEEZED = BrightnessStats(sample_std=0.05, data_std=0.5, samples=64, step=500)


def _cfg(family="scaled_linear", ztsnr=True, param="v", spacing="trailing", **schedule):
    return Config().updated(schedule={"family": family, "ztsnr": ztsnr, **schedule},
                            objective={"parameterization": param}, sampling={"spacing": spacing})


@pytest.mark.parametrize("family,spacing,param", [("scaled_linear", "trailing", "v"),
                                                  ("linear", "trailing", "flow"),
                                                  ("flow", "uniform", "flow"),
                                                  ("cosine", "uniform", "v")])
def test_a_run_with_every_fix_is_never_told_to_use_them(family, spacing, param):
    cfg = _cfg(family, True, param, spacing)
    text = " ".join(run_advice(cfg, SQUEEZED))
    assert "mid-grey" in text and "step 500" in text
    assert "Try" not in text and "trailing" not in text and "zero terminal SNR (" not in text
    assert "already uses zero terminal SNR" in text


def test_a_flawed_run_is_told_exactly_what_it_lacks():
    sd = _cfg(ztsnr=False, param="eps", spacing="leading")
    text = " ".join(run_advice(sd, SQUEEZED))
    assert "zero terminal SNR (this run leaves 6.83 %" in text
    assert "v or flow prediction with it" in text
    assert "'trailing' spacing (sampling starts at t = 0.961" in text  # 25 leading steps of 1000
    only_spacing = _cfg(spacing="leading")
    text = " ".join(run_advice(only_spacing, SQUEEZED))
    assert "trailing" in text and "zero terminal SNR (" not in text and "v or flow" not in text
    eps_ztsnr = _cfg(param="eps")
    assert "v or flow prediction (eps cannot use zero terminal SNR)" in " ".join(run_advice(eps_ztsnr, SQUEEZED))


def test_no_advice_without_a_problem_or_without_data():
    cfg = _cfg(ztsnr=False, param="eps", spacing="leading")
    assert run_advice(cfg, BrightnessStats(0.45, 0.5, 64)) == []  # spread 0.9 of the data's: fine
    assert run_advice(cfg, BrightnessStats(0.05, None, 64)) == []  # nothing to judge against
    assert run_advice(cfg, BrightnessStats(0.05, 0.5, 1)) == []  # one sample has no spread
    stats = BrightnessStats.of(np.array([0.0, 0.1]), np.array([-1.0, 1.0]), step=3)
    assert stats.ratio == pytest.approx(0.05) and stats.step == 3


def test_objective_advice_from_the_settings():
    warnings, notes = objective_advice(_cfg(param="eps"))
    assert warnings == [a.text for a in singular_prediction(_cfg(param="eps"))] and notes == []
    assert advice.SINGULAR_AT_T1["eps"] in warnings[0]
    warnings, notes = objective_advice(_cfg(ztsnr=False, param="eps"))
    assert warnings == [] and any("6.83 %" in n for n in notes)
    warnings, _ = objective_advice(_cfg("flow", True, "flow", "uniform", shift=3.0))
    assert len(warnings) == 1 and "shift 3" in warnings[0] and "export" in warnings[0]
    assert objective_advice(_cfg("flow", True, "flow", "uniform", shift=1.0)) == ([], [])
    warnings, _ = objective_advice(_cfg(param="score"))
    assert any(advice.SINGULAR_AT_T1["score"] in w for w in warnings) and advice.WARN_SCORE_SMALL_T in warnings
    bad = _cfg().updated(schedule={"beta_end": -1.0})  # an invalid schedule never raises
    assert objective_advice(bad) == ([], [])


# ---- settings that do nothing under the rest of the config ----------------------------------------

@pytest.mark.parametrize("name,updates,field,needle", [
    ("quickstart", {"sampling": {"eta": 0.3}}, "sampling.eta", "the ddim sampler takes no eta"),
    ("quickstart", {"schedule": {"shift": 3.0}}, "schedule.shift", "only the flow schedule shifts its time"),
    ("quickstart", {"sampling": {"shift": 2.0}}, "sampling.shift", "sampling.spacing is 'trailing'"),
    ("quickstart", {"schedule": {"sigma_max": 10.0}}, "schedule.sigma_max", "only the edm schedule"),
    ("quickstart", {"schedule": {"points": [[0.0, 5.0], [1.0, -5.0]]}}, "schedule.points", "custom schedule"),
    ("quickstart", {"schedule": {"family": "squaredcos_cap_v2", "beta_end": 0.02}}, "schedule.beta_end",
     "no beta range"),
    ("moons-flow", {"schedule": {"num_train_timesteps": 50}}, "schedule.num_train_timesteps", "continuous"),
    ("moons-flow", {"schedule": {"ztsnr": False}}, "schedule.ztsnr", "zero terminal SNR by construction"),
    ("quickstart", {"objective": {"weighting": "uniform", "gamma": 1.0}}, "objective.gamma",
     "objective.weighting is 'uniform'"),
    ("quickstart", {"objective": {"logit_std": 2.0}}, "objective.logit_std", "not 'logit_normal'"),
    ("quickstart", {"data": {"labels": False}, "sampling": {"guidance_scale": 3.0}}, "sampling.guidance_scale",
     "not class-conditional"),
    ("quickstart", {"sampling": {"guidance_scale": 1.0}}, "sampling.guidance_rescale", "rescaling needs guidance"),
    ("moons-flow", {"data": {"resolution": 32}}, "data.resolution", "2-D points"),
    ("moons-flow", {"data": {"hflip": True}}, "data.hflip", "2-D points"),
    ("quickstart", {"model": {"mlp_width": 7}}, "model.mlp_width", "images train a UNet"),
    ("quickstart", {"model": {"init_from": "runs/x", "preset": "base"}}, "model.preset", "from model.init_from"),
    ("quickstart", {"data": {"val_fraction": 0.0, "val_seed": 3}}, "data.val_seed", "nothing is held out"),
    ("quickstart", {"run": {"val_every": 0, "val_items": 5}}, "run.val_items", "validation is off"),
])
def test_a_setting_the_config_leaves_without_effect_is_named(name, updates, field, needle):
    found = {a.field: a for a in advice.ineffective_settings(preset(name).updated(**updates))}
    assert field in found and found[field].level == "warning", found
    assert found[field].text.startswith(f"{field} = ") and "has no effect: " in found[field].text
    assert needle in found[field].text
    assert found[field] in training_advice(preset(name).updated(**updates))


@pytest.mark.parametrize("name", ["quickstart", "lighting-sd-eps", "finetune-ztsnr-v", "moons-flow", "gaussians8-v",
                                  "shapes", "shapes-256"])
def test_presets_and_settings_that_apply_raise_no_false_alarm(name):
    assert advice.ineffective_settings(preset(name)) == []
    applies = {"quickstart": {"sampling": {"sampler": "ddim_eta", "eta": 0.3, "guidance_scale": 2.0,
                                           "guidance_rescale": 0.7}},
               "moons-flow": {"schedule": {"shift": 3.0}, "model": {"mlp_width": 64}},
               "shapes": {"objective": {"weighting": "min_snr", "gamma": 1.0, "time_sampling": "logit_normal",
                                        "logit_std": 2.0}, "sampling": {"spacing": "shifted", "shift": 2.0},
                          "data": {"hflip": False, "resolution": 16}}}
    if name in applies:
        cfg = preset(name).updated(**applies[name])
        if name == "shapes":
            cfg = cfg.updated(schedule={"family": "flow"})
        assert advice.ineffective_settings(cfg) == []


def test_guidance_on_data_without_classes_is_named_from_the_loaded_data():
    from types import SimpleNamespace

    cfg = preset("quickstart").updated(sampling={"guidance_scale": 3.0, "guidance_rescale": 0.0})
    assert advice.ineffective_settings(cfg, SimpleNamespace(kind="image", num_classes=10)) == []
    (a,) = advice.ineffective_settings(cfg, SimpleNamespace(kind="image", num_classes=0))
    assert a.field == "sampling.guidance_scale" and "the data have no classes" in a.text


def test_train_warns_about_a_setting_it_ignores(tmp_path, capsys):
    code = main(["train", "--preset", "moons-flow", "--steps", "1", "--set", "data.hflip=true",
                 "--set", "sampling.num_samples=8", "--set", "sampling.quality_samples=0", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert ("warning: data.hflip = true has no effect: the data are 2-D points, trained with the MLP "
            "(model.mlp_width, model.mlp_depth)") in err
    assert err.index("warning: data.hflip") < err.index("training on ")
