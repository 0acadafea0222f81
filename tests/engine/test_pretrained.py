"""model.init_from: a saved diffusers UNet2DModel, a pipeline folder or a diffstudio run starts a
run with exactly its weights; mismatched data are one clear error; class conditioning is adapted
without changing what the model computes; fine-tuning to another objective runs and resumes."""

import shutil

import pytest
import torch

from diffstudio import cli
from diffstudio.data.dataset import InMemoryDataset
from diffstudio.engine.checkpoint import load_checkpoint
from diffstudio.engine.config import Config, ConfigError
from diffstudio.engine.presets import preset
from diffstudio.engine.pretrained import InitFromError, Pretrained, adapt_class_embedding, read_pretrained
from diffstudio.engine.trainer import Trainer

from tests.helpers import Said, tiny_unet


def images(n=32, channels=1, size=8, classes=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g) * 2 - 1
    labels = torch.arange(n) % classes if classes else None
    return InMemoryDataset(x, labels, [f"c{i}" for i in range(classes)], name="rand")


def config(tmp_path, **model):
    return Config().updated(
        data={"source": "rand", "labels": True}, model={"preset": "tiny", **model},
        schedule={"family": "scaled_linear", "ztsnr": False}, objective={"parameterization": "eps"},
        optim={"batch_size": 8, "warmup_steps": 2, "lr_schedule": "constant", "lr": 1e-3},
        sampling={"num_samples": 2, "steps": 2, "spacing": "leading"},
        run={"steps": 4, "out_dir": str(tmp_path), "preview_every": 10_000, "checkpoint_every": 10_000,
             "log_every": 1})


def set_up(cfg, data, tmp_path, name="run", hooks=None):
    trainer = Trainer(cfg, run_dir=tmp_path / name, dataset=data, hooks=hooks)
    trainer._setup()
    return trainer


def test_step_zero_weights_are_the_saved_unet2dmodel_exactly(tmp_path):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path / "unet_folder", safe_serialization=True)
    (tmp_path / "pipe").mkdir()
    shutil.copytree(tmp_path / "unet_folder", tmp_path / "pipe" / "unet")
    theirs = unet.state_dict()
    for source in ("unet_folder", "pipe"):
        cfg = config(tmp_path, init_from=str(tmp_path / source), class_conditional=False)
        trainer = set_up(cfg, images(), tmp_path, f"run-{source}")
        ours = trainer.model.unet.state_dict()
        assert ours.keys() == theirs.keys()
        for k in theirs:
            assert torch.equal(ours[k], theirs[k]), k
        ema = {k.removeprefix("module.unet."): v for k, v in trainer.ema.state_dict().items() if "unet." in k}
        assert all(torch.equal(ema[k], theirs[k]) for k in theirs)
        assert trainer.model.spec["preset"] == "pretrained" and trainer.model.spec["unet"]["block_out_channels"] == [16, 32]


def test_mismatched_data_is_one_clear_error(tmp_path):
    tiny_unet(channels=1, size=8).save_pretrained(tmp_path / "u", safe_serialization=True)
    cfg = config(tmp_path, init_from=str(tmp_path / "u"), class_conditional=False)
    with pytest.raises(InitFromError) as e:
        set_up(cfg, images(size=16), tmp_path, "a")
    assert "8 px" in str(e.value) and "16 px" in str(e.value) and str(e.value).startswith("model.init_from:")
    assert "\n" not in str(e.value)
    with pytest.raises(InitFromError, match="1-channel .* 3-channel"):
        set_up(cfg, images(channels=3), tmp_path, "b")
    assert isinstance(e.value, ConfigError)


def test_pickle_weights_are_refused_and_missing_paths_reported(tmp_path):
    tiny_unet().save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert not list((tmp_path / "bin").glob("*.safetensors"))
    with pytest.raises(InitFromError, match="pickle"):
        read_pretrained(tmp_path / "bin")
    torch.save({"w": torch.zeros(1)}, tmp_path / "model.pt")
    with pytest.raises(InitFromError, match="pickle"):
        read_pretrained(tmp_path / "model.pt")
    with pytest.raises(InitFromError, match="nowhere does not exist"):
        read_pretrained(tmp_path / "nowhere")
    cfg = Config().updated(data={"vae": str(tmp_path / "no-vae")})
    assert [f for f, _ in cfg.validate()] == ["data.vae"]


def _forward(unet, x, t, labels=None):
    with torch.no_grad():
        return unet(x, t, class_labels=labels).sample


def _rebuilt(cfg, w):
    from diffusers import UNet2DModel

    unet = UNet2DModel(**cfg)
    unet.load_state_dict(w, strict=True)
    return unet.eval()


def test_class_conditioning_that_differs_starts_from_the_same_function():
    from diffstudio.models.unet import foreign_unet_config

    x, t = torch.randn(3, 1, 8, 8), torch.tensor([10, 500, 900])
    plain = tiny_unet()
    pre = Pretrained("unet", foreign_unet_config(dict(plain.config)), plain.state_dict(), None, "plain")
    cfg, w, note = adapt_class_embedding(pre, 4)  # none -> 4 classes: zero rows
    assert cfg["num_class_embeds"] == 5 and "all rows zero" in note
    out = _forward(_rebuilt(cfg, w), x, t, torch.tensor([0, 3, 4]))
    assert torch.allclose(out, _forward(plain, x, t), atol=1e-6)

    cond = tiny_unet(classes=4, seed=1)  # a diffstudio model of 3 classes (+ null row 3)
    pre = Pretrained("unet", foreign_unet_config(dict(cond.config)), cond.state_dict(), 3, "cond")
    cfg, w, note = adapt_class_embedding(pre, 0)  # 3 classes -> none: null row folded in
    assert cfg["num_class_embeds"] is None and "folded" in note
    null = torch.full((3,), 3)
    assert torch.allclose(_forward(_rebuilt(cfg, w), x, t), _forward(cond, x, t, null), atol=1e-5)

    cfg, w, note = adapt_class_embedding(pre, 5)  # 3 -> 5 classes: rows kept, new ones = old null
    new = _rebuilt(cfg, w)
    assert cfg["num_class_embeds"] == 6 and "0..2 kept" in note
    for ours, theirs in ((0, 0), (2, 2), (3, 3), (4, 3), (5, 3)):
        y_new, y_old = torch.full((3,), ours), torch.full((3,), theirs)
        assert torch.allclose(_forward(new, x, t, y_new), _forward(cond, x, t, y_old), atol=1e-6), ours

    foreign = Pretrained("unet", pre.config, pre.weights, None, "foreign")  # 4 classes, no null row known
    cfg, w, note = adapt_class_embedding(foreign, 4)
    assert cfg["num_class_embeds"] == 5 and "mean of its rows" in note
    assert torch.allclose(w["class_embedding.weight"][4], cond.class_embedding.weight.mean(0))


def test_trainer_says_how_the_label_embedding_was_adapted(tmp_path):
    tiny_unet().save_pretrained(tmp_path / "u", safe_serialization=True)
    hooks = Said()
    trainer = set_up(config(tmp_path, init_from=str(tmp_path / "u")), images(classes=3), tmp_path, hooks=hooks)
    assert trainer.model.num_classes == 3 and trainer.conditional
    assert any(level == "warning" and "label embedding for 3 classes" in text for level, text in hooks.said)


def test_fine_tuning_an_eps_run_to_v_with_ztsnr_runs_and_resumes_exactly(tmp_path):
    """An eps run is the start of a v + ZTSNR + trailing fine-tune (the finetune-ztsnr-v recipe);
    the fine-tune stopped at step 2 and resumed equals the uninterrupted one, bit for bit, even
    after the pretrained run folder is gone."""
    data = images(classes=2)
    eps = Trainer(config(tmp_path), run_dir=tmp_path / "eps", dataset=data).run()
    ft = config(tmp_path, init_from=eps.run_dir).updated(
        schedule={"ztsnr": True}, objective={"parameterization": "v"}, sampling={"spacing": "trailing"},
        run={"checkpoint_every": 2})
    start = set_up(ft, data, tmp_path, "probe").model.state_dict()
    ema = {k.removeprefix("module."): v for k, v in load_checkpoint(eps.run_dir).ema.items() if k.startswith("module.")}
    assert ema.keys() == start.keys() and all(torch.equal(start[k], ema[k]) for k in start)
    whole = Trainer(ft, run_dir=tmp_path / "whole", dataset=data).run()
    part = Trainer(ft.updated(run={"steps": 2}), run_dir=tmp_path / "part", dataset=data).run()
    shutil.rmtree(eps.run_dir)
    Trainer(ft, resume=part.run_dir, dataset=data).run()
    a, b = load_checkpoint(whole.run_dir), load_checkpoint(part.run_dir)
    assert a.step == b.step == 4 and a.model.keys() == b.model.keys() and a.ema.keys() == b.ema.keys()
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    assert all(torch.equal(a.ema[k], b.ema[k]) for k in a.ema)
    assert not all(torch.equal(a.model[k], start[k]) for k in start)  # it trained


def test_finetune_preset_needs_init_from(tmp_path, capsys):
    cfg = preset("finetune-ztsnr-v")
    assert (cfg.objective.parameterization, cfg.schedule.ztsnr, cfg.sampling.spacing) == ("v", True, "trailing")
    assert cfg.model.init_from == "" and cfg.validate() == []
    code = cli.main(["train", "--preset", "finetune-ztsnr-v", "--steps", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "model.init_from" in err and "lighting-sd-eps" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="model.init_from: the finetune-ztsnr-v preset needs it"):  # the app's path
        Trainer(cfg.updated(run={"steps": 1}), run_dir=tmp_path / "app", dataset=images(size=32)).run()
    assert not (tmp_path / "app").exists()


def test_a_class_conditional_diffstudio_export_keeps_its_labels(tmp_path):
    """An export's unet/ with diffstudio.json: the label embedding (3 classes + null) is known, so
    a run on 3 classes starts from it unchanged, and the start equals the exported weights."""
    from diffstudio.engine.export import export

    data = images(classes=3)
    first = Trainer(config(tmp_path).updated(run={"steps": 2}), run_dir=tmp_path / "first", dataset=data).run()
    out = export(first.run_dir, "diffusers", tmp_path / "exported")
    hooks = Said()
    trainer = set_up(config(tmp_path, init_from=str(out)), data, tmp_path, "second", hooks=hooks)
    assert trainer.model.num_classes == 3 and trainer.model.spec["unet"]["num_class_embeds"] == 4
    assert not any(level == "warning" for level, _ in hooks.said)
    from diffusers import UNet2DModel

    theirs = UNet2DModel.from_pretrained(out / "unet", use_safetensors=True).state_dict()
    ours = trainer.model.unet.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_resume_refuses_a_new_init_from_it_would_ignore(tmp_path, capsys):
    """Before: ``--resume RUN --out NEW --set model.init_from=X`` continued from RUN's weights,
    ignored X and wrote X into NEW's config.toml."""
    base = ["--set", "run.device=cpu", "--set", "data.num_points=256", "--set", "run.val_every=0",
            "--set", "sampling.quality_samples=0"]
    assert cli.main(["train", "--preset", "moons-flow", "--steps", "2", "--out", str(tmp_path / "a"), *base]) == 0
    assert cli.main(["train", "--preset", "moons-flow", "--steps", "2", "--out", str(tmp_path / "b"), *base]) == 0
    capsys.readouterr()
    code = cli.main(["train", "--resume", str(tmp_path / "a"), "--steps", "4", "--out", str(tmp_path / "c"),
                     "--set", f"model.init_from={tmp_path / 'b'}"])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "c").exists()
    assert "--set model.init_from cannot be combined with --resume" in err and f"model.init_from={tmp_path / 'a'}" in err
    assert len(err.strip().splitlines()) == 1
    # a new run from the resumed run's weights is the way, and it starts from exactly them
    code = cli.main(["train", "--preset", "moons-flow", "--steps", "2", "--out", str(tmp_path / "d"), *base,
                     "--set", f"model.init_from={tmp_path / 'a'}", "--set", "optim.lr=1e-9"])
    assert code == 0
    start, new = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "d")
    for k, v in (start.ema or start.model).items():
        if k != "n_averaged":
            torch.testing.assert_close(new.model[k.removeprefix("module.")], v, rtol=0, atol=1e-6)


# a run started from a model takes its architecture from it (model.preset is ignored: README), so
# only a from-scratch run has model.preset in its network
@pytest.mark.parametrize("from_model, change, field", [
    (from_model, change, field) for from_model in (False, True)
    for change, field in [({"model": {"class_conditional": False}}, "model.class_conditional"),
                          ({"data": {"channels": 3}}, "data.channels"),
                          ({"model": {"preset": "small"}}, "model.preset")]
    if not (from_model and field == "model.preset")])
def test_resuming_with_settings_that_change_the_network_is_one_error_naming_them(tmp_path, from_model, change, field):
    """Before: a from-scratch run crashed with torch's whole state_dict mismatch as an "unexpected
    error"; a run started from a model (rebuilt from its checkpoint) trained without its classes or
    crashed in the first step."""
    data = images(classes=2)
    tiny_unet().save_pretrained(tmp_path / "unet")
    cfg = config(tmp_path, init_from=str(tmp_path / "unet") if from_model else "")
    first = Trainer(cfg, run_dir=tmp_path / "first", dataset=data).run()
    changed = cfg.updated(**change)
    new_data = images(channels=3, classes=2) if field == "data.channels" else data
    with pytest.raises(ConfigError, match=f"{field}: does not fit the network of .*first.* \\({field} "):
        Trainer(changed, run_dir=tmp_path / "second", resume=first.run_dir, dataset=new_data).run()


def test_the_class_adaptation_note_says_what_happened_to_each_row():
    """Before: 5 classes -> 3 said "the other classes ... start from" though no class was new (two
    were dropped), and a foreign model with the data's class count did not say its null label was new."""
    from diffstudio.models.unet import foreign_unet_config

    cond = tiny_unet(classes=6, seed=1)  # a diffstudio model of 5 classes (+ null row 5)
    pre = Pretrained("unet", foreign_unet_config(dict(cond.config)), cond.state_dict(), 5, "cond")
    _, w, note = adapt_class_embedding(pre, 3)
    assert note.endswith("class rows 0..2 kept, rows 3..4 dropped; the null label starts from its null-label row")
    assert torch.equal(w["class_embedding.weight"][3], cond.class_embedding.weight[5])
    _, _, note = adapt_class_embedding(pre, 7)
    assert note.endswith("class rows 0..4 kept, classes 5..6 (new) and the null label start from its null-label row")
    foreign = Pretrained("unet", pre.config, pre.weights, None, "foreign")  # 6 classes, no null row known
    _, _, note = adapt_class_embedding(foreign, 6)
    assert note.endswith("class rows 0..5 kept, the null label (new) starts from the mean of its rows")
    _, _, note = adapt_class_embedding(pre, 4)  # one class dropped: "row 4", not "rows 4..4"
    assert note.endswith("class rows 0..3 kept, row 4 dropped; the null label starts from its null-label row")
    _, _, note = adapt_class_embedding(pre, 6)
    assert note.endswith("class rows 0..4 kept, class 5 (new) and the null label start from its null-label row")
    _, _, note = adapt_class_embedding(pre, 1)
    assert note.endswith("class row 0 kept, rows 1..4 dropped; the null label starts from its null-label row")


def _pipeline(tmp_path, **scheduler):
    from diffusers import DDPMScheduler

    tiny_unet().save_pretrained(tmp_path / "pipe" / "unet")
    DDPMScheduler(**scheduler).save_pretrained(tmp_path / "pipe" / "scheduler")
    return tmp_path / "pipe"


@pytest.mark.parametrize("scheduler,run_schedule,said", [
    ({"beta_schedule": "scaled_linear"}, {}, "trained on scaled_linear betas 0.0001..0.02 over T = 1000 and this run "
                                            "uses scaled_linear betas 0.00085..0.012 over T = 1000"),
    ({"beta_schedule": "linear", "num_train_timesteps": 500}, {"family": "linear"},
     "trained on linear betas 0.0001..0.02 over T = 500 and this run uses linear betas 0.0001..0.02 over T = 1000"),
    ({"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}, {"ztsnr": True}, None),
    ({"beta_schedule": "linear"}, {"family": "linear"}, None),
])
def test_fine_tuning_on_other_noise_levels_than_the_models_is_said(tmp_path, scheduler, run_schedule, said):
    """Before: the finetune-ztsnr-v preset's Stable Diffusion betas silently replaced those the model
    was trained on (README: the recipe "keeps the betas"); the zero-terminal-SNR rescale is no change."""
    hooks = Said()
    cfg = config(tmp_path, init_from=str(_pipeline(tmp_path, **scheduler))).updated(schedule=run_schedule)
    set_up(cfg, images(), tmp_path, hooks=hooks)
    notes = [text for level, text in hooks.said if level == "warning" and "noise levels" in text]
    if said is None:
        assert notes == []
    else:
        assert len(notes) == 1 and said in notes[0] and notes[0].startswith("model.init_from: the model was trained on")


def test_a_diffstudio_run_carries_its_schedule_into_the_fine_tune_note(tmp_path):
    data = images()
    flow = Trainer(config(tmp_path).updated(schedule={"family": "flow"}, objective={"parameterization": "flow"},
                                            sampling={"spacing": "uniform"}, run={"steps": 1}),
                   run_dir=tmp_path / "flow", dataset=data).run()
    hooks = Said()
    set_up(config(tmp_path, init_from=flow.run_dir), data, tmp_path, hooks=hooks)
    assert any("trained on the flow schedule and this run uses scaled_linear betas 0.00085..0.012" in text
               for level, text in hooks.said if level == "warning")
    assert read_pretrained(tmp_path / "flow").schedule[0] == ("flow",)
    tiny_unet().save_pretrained(tmp_path / "bare")  # no scheduler beside it: nothing known, nothing said
    assert read_pretrained(tmp_path / "bare").schedule is None
