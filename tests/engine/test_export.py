"""Export: diffusers reproduces diffstudio's own sampler; safetensors rebuilds the same network;
what diffusers cannot represent is refused with a reason."""

import json
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from diffstudio.core.denoiser import Denoiser
from diffstudio.core.grids import sampling_grid
from diffstudio.core.samplers import sample
from diffstudio.engine.checkpoint import load_checkpoint, save_checkpoint
from diffstudio.engine.config import Config
from diffstudio.engine.export import ExportError, ExportWarning, export, scheduler_config
from diffstudio.engine.run_dir import RunDir
from diffstudio.models import DataInfo, build_model, model_from_spec

IMAGE = DataInfo("image", 1, 8, 0)


def config(schedule=None, objective=None, sampling=None, preset="tiny"):
    return Config().updated(schedule=schedule or {}, objective=objective or {}, sampling=sampling or {},
                            model={"preset": preset, "class_conditional": False})


def make_run(tmp_path, cfg, data=IMAGE, name="run", ema_noise=0.0):
    """A run folder holding one checkpoint of a randomly initialised model (+ a different EMA)."""
    torch.manual_seed(0)
    model = build_model(cfg, data).eval()
    ema = {k: v + ema_noise * torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(ema)  # `model` now holds the weights export should use
    raw = {k: torch.zeros_like(v) for k, v in ema.items()}
    run = RunDir.create(tmp_path, name, config=cfg)
    opt = torch.optim.Adam(model.parameters())
    run.save_checkpoint(2, model=raw, ema=ema, optimizer=opt.state_dict(),
                        meta={"step": 2, "config": cfg.to_dict(), "model_spec": model.spec})
    return run, model


def diffusers_ddim(out, x, steps=10):
    from diffusers import DDIMScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(out / "unet", low_cpu_mem_usage=False).eval()
    scheduler = DDIMScheduler.from_pretrained(out / "scheduler")
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
    return x


@pytest.mark.parametrize("schedule,param,spacing", [
    ({"family": "scaled_linear", "ztsnr": True}, "v", "trailing"),
    ({"family": "scaled_linear", "ztsnr": False}, "eps", "leading"),
    ({"family": "linear", "ztsnr": False}, "x0", "trailing"),
])
def test_diffusers_ddim_matches_diffstudio_ddim(tmp_path, schedule, param, spacing):
    cfg = config(schedule, {"parameterization": param}, {"spacing": spacing})
    run, model = make_run(tmp_path, cfg, ema_noise=0.01)
    out = export(run.path, "diffusers", tmp_path / "exported")
    assert out == tmp_path / "exported"
    sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "DDIMScheduler"
    assert sched["prediction_type"] == {"v": "v_prediction", "eps": "epsilon", "x0": "sample"}[param]
    assert sched["timestep_spacing"] == spacing and sched["rescale_betas_zero_snr"] == schedule["ztsnr"]
    assert sched["clip_sample"] is False and sched["set_alpha_to_one"] is True and sched["steps_offset"] == 0
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "DDPMPipeline"

    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    theirs = diffusers_ddim(out, x.clone())
    s = cfg.schedule.build()
    ours = sample("ddim", Denoiser(model, s, param), x.clone(), sampling_grid(s, 10, spacing), s)
    assert (ours - theirs).abs().max() < 1e-4, (ours - theirs).abs().max()


def test_diffusers_alphas_match_for_every_beta_family():
    from diffusers import DDIMScheduler, DDPMScheduler

    for family in ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"):
        for ztsnr in (False, True):
            cfg = config({"family": family, "ztsnr": ztsnr})
            name, sc = scheduler_config(cfg)
            assert name == ("DDPMScheduler" if family == "sigmoid" else "DDIMScheduler")
            theirs = {"DDIMScheduler": DDIMScheduler, "DDPMScheduler": DDPMScheduler}[name](**sc).alphas_cumprod
            ours = cfg.schedule.build().alphas_cumprod
            assert torch.allclose(theirs.double(), ours, atol=1e-6), (family, ztsnr)


def test_flow_export_matches_diffusers_flow_match_euler(tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DModel

    cfg = config({"family": "flow", "shift": 1.0}, {"parameterization": "flow"}, {"spacing": "uniform"})
    run, model = make_run(tmp_path, cfg)
    out = export(run.path, "diffusers", tmp_path / "flow")
    assert json.loads((out / "model_index.json").read_text())["scheduler"][1] == "FlowMatchEulerDiscreteScheduler"
    unet = UNet2DModel.from_pretrained(out / "unet", low_cpu_mem_usage=False).eval()
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(out / "scheduler")
    scheduler.set_timesteps(8)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    theirs = x.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            theirs = scheduler.step(unet(theirs, t).sample, t, theirs).prev_sample
    s = cfg.schedule.build()
    grid = s.time_of(scheduler.sigmas.double() * 1000)  # diffusers' own sigmas as diffstudio times
    ours = sample("euler", Denoiser(model, s, "flow"), x.clone(), grid, s)
    assert (ours - theirs).abs().max() < 1e-4


def test_export_never_deletes_a_folder_that_is_not_only_a_previous_export(tmp_path):
    """Before: any folder with a model_index.json counted as a previous export and was deleted whole -
    a diffusers pipeline of the user's (its vae/, its notes) gone with no word."""
    run, _ = make_run(tmp_path, config())
    theirs = tmp_path / "their-pipeline"
    (theirs / "vae").mkdir(parents=True)
    (theirs / "vae" / "config.json").write_text("{}")
    (theirs / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(ExportError, match="a diffusers folder that diffstudio did not export"):
        export(run.path, "diffusers", theirs)
    assert sorted(p.name for p in theirs.iterdir()) == ["model_index.json", "vae"]
    ours = export(run.path, "diffusers", tmp_path / "ours")
    (ours / "notes.txt").write_text("mine")  # the user's file beside an export: not ours to delete
    with pytest.raises(ExportError, match="is not empty: it holds notes.txt beside an export"):
        export(run.path, "diffusers", ours)
    assert (ours / "notes.txt").read_text() == "mine" and (ours / "unet").is_dir()
    (ours / "notes.txt").unlink()
    assert export(run.path, "diffusers", ours) == ours  # a previous export alone is replaced


def test_diffusers_pipeline_loads_the_folder(tmp_path):
    from diffusers import DDPMPipeline

    run, _ = make_run(tmp_path, config())
    out = export(run.path, "diffusers", tmp_path / "pipe")
    pipe = DDPMPipeline.from_pretrained(out, low_cpu_mem_usage=False)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    info = json.loads((out / "diffstudio.json").read_text())
    assert info["step"] == 2 and info["weights"] == "ema" and info["model_spec"]["kind"] == "unet"
    # exporting again into a previous export replaces it; a foreign non-empty folder is refused
    assert export(run.path, "diffusers", out) == out
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export(run.path, "diffusers", tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("schedule,param,needle", [
    ({"family": "cosine"}, "v", "continuous"),
    ({"family": "edm"}, "eps", "continuous"),
    ({"family": "custom"}, "x0", "continuous"),
    ({"family": "scaled_linear"}, "score", "score"),
    ({"family": "scaled_linear"}, "flow", "flow parameterization on the beta schedule"),
    ({"family": "flow", "shift": 3.0}, "flow", "shift 3"),
    ({"family": "flow"}, "v", "v parameterization on the rectified-flow"),
])
def test_what_diffusers_cannot_represent_is_refused(schedule, param, needle):
    with pytest.raises(ExportError, match=needle) as err:
        scheduler_config(config(schedule, {"parameterization": param}))
    assert "safetensors" in str(err.value)


def test_mlp_has_no_diffusers_format_but_exports_to_safetensors(tmp_path):
    cfg = Config().updated(schedule={"family": "flow"}, objective={"parameterization": "flow"},
                           sampling={"spacing": "uniform"}, model={"mlp_width": 32, "mlp_depth": 2})
    run, model = make_run(tmp_path, cfg, data=DataInfo("points", 2, 0, 0), ema_noise=0.1)
    with pytest.raises(ExportError, match="no diffusers equivalent.*safetensors"):
        export(run.path, "diffusers", tmp_path / "nope")
    assert not (tmp_path / "nope").exists()
    path = export(run.checkpoint_dir(2), "safetensors", tmp_path / "out")
    assert path == tmp_path / "out" / "run-step-000002.safetensors"
    again = model_from_spec(json.loads(safe_open(str(path), "pt").metadata()["model_spec"]))
    again.load_state_dict(load_file(str(path)))
    x, t = torch.randn(5, 2), torch.rand(5) * 1000
    assert torch.equal(again(x, t, None), model(x, t, None))


def test_safetensors_export_of_a_unet_uses_ema_and_carries_the_config(tmp_path):
    cfg = config({"family": "scaled_linear", "ztsnr": True}, {"parameterization": "v"})
    run, model = make_run(tmp_path, cfg, ema_noise=0.05)
    path = export(run.path, "safetensors", tmp_path / "model.safetensors")
    assert path == tmp_path / "model.safetensors"
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert Config.from_dict(json.loads(meta["config"])) == cfg and meta["weights"] == "ema"
    again = model_from_spec(json.loads(meta["model_spec"])).eval()
    again.load_state_dict(tensors)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5.0, 800.0])
    with torch.no_grad():
        assert torch.equal(again(x, t, None), model(x, t, None))
    ck = load_checkpoint(path)  # the exported file opens as a checkpoint too
    assert ck.config() == cfg and ck.meta["model_spec"] == model.spec and ck.step == 2


def test_ema_of_an_averaged_model_is_unwrapped(tmp_path):
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    cfg = config()
    torch.manual_seed(0)
    model = build_model(cfg, IMAGE).eval()
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    with torch.no_grad():
        for p in ema.module.parameters():
            p.add_(0.01)
    path = save_checkpoint(tmp_path / "ck", model=model.state_dict(), ema=ema.state_dict(),
                           meta={"step": 1, "config": cfg.to_dict(), "model_spec": model.spec})
    assert "n_averaged" in load_file(str(path / "ema.safetensors"))
    out = export(path, "safetensors", tmp_path / "o")
    assert out.name == "ck-step-000001.safetensors"
    tensors = load_file(str(out))
    assert torch.equal(tensors["unet.conv_in.weight"], ema.module.unet.conv_in.weight)


def test_eps_with_zero_terminal_snr_exports_with_a_warning(tmp_path):
    cfg = config({"family": "scaled_linear", "ztsnr": True}, {"parameterization": "eps"})
    run, _ = make_run(tmp_path, cfg)
    with pytest.warns(ExportWarning, match="alpha = 0"):
        export(run.path, "diffusers", tmp_path / "out")


def test_bad_sources_and_formats(tmp_path):
    with pytest.raises(ExportError, match="format"):
        export(tmp_path, "onnx", tmp_path / "o")
    with pytest.raises(ExportError, match="does not exist"):
        export(tmp_path / "missing", "safetensors", tmp_path / "o")
    bare = save_checkpoint(tmp_path / "bare", model={"w": torch.zeros(1)}, meta={"step": 1})
    with pytest.raises(ExportError, match="model_spec"):
        export(bare, "safetensors", tmp_path / "o")
    cfg = config()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrong = save_checkpoint(tmp_path / "wrong", model={"w": torch.zeros(1)},
                                meta={"step": 1, "config": cfg.to_dict(),
                                      "model_spec": build_model(cfg, IMAGE).spec})
    with pytest.raises(ExportError, match="do not fit"):
        export(wrong, "safetensors", tmp_path / "o")


@pytest.mark.parametrize("fmt,name,expected", [
    ("safetensors", "x.bin", "is not a .safetensors file name"),
    ("safetensors", "weights.pt", "is not a .safetensors file name"),
    ("diffusers", "x.safetensors", "a diffusers export is a folder (e.g. "),
    ("diffusers", "x.bin", "a diffusers export is a folder"),
])
def test_an_out_path_that_contradicts_the_format_is_refused_before_any_work(tmp_path, capsys, monkeypatch, fmt, name,
                                                                             expected):
    """--out means a folder for diffusers and a .safetensors file (or a folder to write it into)
    for safetensors: a contradicting path is one line naming --out, exit 2, nothing written and the
    checkpoint never read; export() refuses it the same way."""
    import diffstudio.engine.export as ex
    from diffstudio.cli import main

    run, _ = make_run(tmp_path, config())
    monkeypatch.setattr(ex, "load_checkpoint", lambda *_: pytest.fail("the checkpoint was read"))
    out = tmp_path / name
    assert main(["export", str(run.path), "--format", fmt, "--out", str(out)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"diffstudio: error: --out: {out} ") and expected in line, line
    assert not out.exists()
    with pytest.raises(ExportError, match="export is"):
        export(run.path, fmt, out)


def test_out_paths_that_fit_the_format_are_exported(tmp_path):
    """An existing folder is a folder whatever its name; a file path ending in .safetensors is the file."""
    run, _ = make_run(tmp_path, config())
    folder = tmp_path / "exports.bin"
    folder.mkdir()
    assert export(run.path, "safetensors", folder).parent == folder
    assert export(run.path, "safetensors", tmp_path / "m.safetensors") == tmp_path / "m.safetensors"
    (tmp_path / "taken.safetensors").mkdir()
    with pytest.raises(ExportError, match="is a folder"):
        export(run.path, "safetensors", tmp_path / "taken.safetensors")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file; a diffusers export is a folder"):
        export(run.path, "diffusers", tmp_path / "file")
