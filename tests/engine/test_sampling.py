"""``diffstudio sample`` draws its random numbers as diffusers' pipelines do: the start noise first,
then each step's fresh noise, from one generator seeded with ``--seed``. An exported unconditional
model sampled with DDPM therefore gives the images of ``DDPMPipeline`` with the same seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffstudio.cli import main
from diffstudio.engine.config import Config
from diffstudio.engine.export import export
from diffstudio.engine.run_dir import RunDir
from diffstudio.models import DataInfo, build_model

IMAGE = DataInfo("image", 1, 8, 0)


def make_run(tmp_path, cfg):
    """A run folder with one checkpoint of a perturbed random tiny UNet (its EMA = its weights)."""
    torch.manual_seed(0)
    model = build_model(cfg, IMAGE).eval()
    with torch.no_grad():  # a little structure, so that the prediction is not near zero
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    run = RunDir.create(tmp_path, "run", config=cfg)
    state = model.state_dict()
    ema = {"module." + k: v for k, v in state.items()}  # as torch's AveragedModel names them
    run.save_checkpoint(2, model=state, ema=ema, optimizer=torch.optim.Adam(model.parameters()).state_dict(),
                        meta={"step": 2, "config": cfg.to_dict(), "model_spec": model.spec,
                              "data_info": IMAGE.__dict__})
    return run


@pytest.mark.parametrize(("schedule", "param", "spacing"), [
    ({"family": "scaled_linear", "ztsnr": True}, "v", "trailing"),
    ({"family": "linear", "ztsnr": False}, "eps", "leading"),
])
def test_ddpm_sample_equals_ddpm_pipeline(tmp_path, schedule, param, spacing):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    cfg = Config().updated(schedule=schedule, objective={"parameterization": param},
                           sampling={"spacing": spacing}, model={"preset": "tiny", "class_conditional": False})
    run = make_run(tmp_path, cfg)
    out = export(run.path, "diffusers", tmp_path / "exported")
    seed, steps, n = 123, 10, 3
    npy = tmp_path / "ours.npy"
    assert main(["sample", str(run.path), "--sampler", "ddpm", "--steps", str(steps), "--seed", str(seed),
                 "--n", str(n), "--out", str(tmp_path / "ours.png"), "--npy", str(npy)]) == 0
    ours = np.clip(np.load(npy) / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)  # [-1, 1] -> [0, 1] pixels, NHWC

    unet = UNet2DModel.from_pretrained(out / "unet", low_cpu_mem_usage=False).eval()
    scheduler = DDPMScheduler.from_pretrained(out / "scheduler")
    assert scheduler.config.timestep_spacing == spacing and scheduler.config.clip_sample is False
    pipe = DDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=n, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                  output_type="np").images
    assert theirs.shape == ours.shape
    assert float(np.abs(ours - theirs).max()) <= 1e-4
    # the same seed with the start noise reused as the first step's noise (the old stream) is far off
    other = pipe(batch_size=n, generator=torch.Generator().manual_seed(seed + 1), num_inference_steps=steps,
                 output_type="np").images
    assert float(np.abs(ours - other).max()) > 1e-2


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_oracle_one_trailing_euler_step_returns_the_data_mean(tmp_path, capsys):
    """The default recipe (scaled_linear + ZTSNR, v, trailing): one Euler step from pure noise goes
    through x0_hat = E[x0] (the exact denoiser of lighting-flat knows nothing at alpha = 0), so
    every sample is the flat image at the middle of the brightness range."""
    from diffstudio.data.lighting import lighting_brightness_range

    npy = tmp_path / "one.npy"
    code, out, err = run_cli(capsys, "sample", "--oracle", "lighting-flat", "--sampler", "euler", "--steps", 1,
                             "--spacing", "trailing", "--n", 4, "--out", tmp_path / "one.png", "--npy", npy)
    assert code == 0 and "wrote 4 samples" in out and (tmp_path / "one.png").stat().st_size > 0
    samples = np.load(npy)
    low, high = lighting_brightness_range()
    assert samples.shape == (4, 1, 32, 32)
    np.testing.assert_allclose(samples, 0.5 * (low + high), atol=1e-6)


def test_oracle_matches_oracle_preview_and_takes_a_preset(tmp_path, capsys):
    from diffstudio.engine.oracle import oracle_preview
    from diffstudio.engine.presets import preset

    npy = tmp_path / "g.npy"
    code, out, _ = run_cli(capsys, "sample", "--oracle", "gaussians8", "--preset", "quickstart", "--sampler", "heun",
                           "--steps", 8, "--n", 32, "--seed", 3, "--out", tmp_path / "g.png", "--npy", npy)
    assert code == 0
    cfg = preset("quickstart").updated(data={"source": "gaussians8"}, sampling={"sampler": "heun", "steps": 8})
    expected = oracle_preview(cfg, n=32, seed=3).samples
    np.testing.assert_array_equal(np.load(npy), expected)
    assert (tmp_path / "g.png").stat().st_size > 0


def test_oracle_with_a_config_file(tmp_path, capsys):
    cfg = Config().updated(schedule={"family": "cosine", "ztsnr": False}, objective={"parameterization": "v"},
                           sampling={"spacing": "karras", "sampler": "dpmpp_2m", "steps": 6})
    path = cfg.save(tmp_path / "c.toml")
    npy = tmp_path / "c.npy"
    code, out, _ = run_cli(capsys, "sample", "--oracle", "lighting-flat", "--config", path, "--n", 3,
                           "--out", tmp_path / "c.png", "--npy", npy)
    assert code == 0 and "dpmpp_2m 6 steps (karras)" in out
    samples = np.load(npy)
    assert float(samples.reshape(3, -1).std(axis=1).max()) <= 1e-4  # flat, as the data


@pytest.mark.parametrize(("argv", "field"), [
    (["--eta", "5", "--sampler", "ddim_eta"], "eta"),
    (["--eta", "-0.5", "--sampler", "ddim_eta"], "eta"),
    (["--steps", "0"], "steps"),
    (["--spacing", "shifted", "--shift", "0", "--preset", "moons-flow"], "shift"),
    (["--spacing", "shifted", "--shift", "nan", "--preset", "moons-flow"], "shift"),
])
def test_bad_oracle_settings_are_one_line_errors(tmp_path, capsys, argv, field):
    code, out, err = run_cli(capsys, "sample", "--oracle", "gaussians8", *argv, "--out", tmp_path / "x.png")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and field in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("shift", ["0", "-2", "nan", "inf"])
def test_schedule_refuses_a_shift_that_is_not_positive_and_finite(capsys, shift):
    """``--shift 0`` used to be read as "not given" and silently became 3."""
    code, out, err = run_cli(capsys, "schedule", "cosine", "--spacing", "shifted", "--shift", shift)
    assert code == 2 and out == "" and err.count("\n") == 1 and "shift" in err


def test_schedule_uses_the_shift_it_is_given(capsys):
    import json

    code, out, _ = run_cli(capsys, "schedule", "cosine", "--spacing", "shifted", "--shift", "0.5", "--steps", 2, "--json")
    assert code == 0
    assert json.loads(out)["t"] == [1.0, pytest.approx(0.5 * 0.5 / (0.5 + 0.5 * 0.5), abs=1e-6)]


@pytest.mark.parametrize("schedule", [{"family": "cosine"}, {"family": "flow"}, {"family": "edm", "ztsnr": True}])
def test_karras_on_zero_terminal_snr_is_no_worse_than_uniform(schedule):
    """10 DDIM steps with the exact gaussians8 denoiser: the karras grid (ramp over the uniform grid's
    finite noise levels, t = 1 first) is within 0.005 sliced Wasserstein of uniform t (a third of the
    floor between two data samples, 0.015); the former ramp from a capped sigma of 1e4 was 2-8x worse
    (0.349 / 0.359 / 0.240 against 0.042 / 0.043 / 0.102)."""
    from diffstudio.core.denoiser import Denoiser, oracle_model
    from diffstudio.core.grids import sampling_grid
    from diffstudio.core.samplers import sample
    from diffstudio.core.schedules import make_schedule
    from diffstudio.data.registry import load_dataset
    from diffstudio.engine.metrics import sliced_wasserstein
    from diffstudio.engine.oracle import oracle_data

    ref = load_dataset("gaussians8", n=4096, seed=1, labels=False).x.double()
    x = torch.randn((2000, 2), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    s = make_schedule(**schedule)
    assert float(s.alpha(1.0)) == 0.0
    d = Denoiser(oracle_model(oracle_data("gaussians8").x0_fn, s, "v"), s, "v")
    sw = {spacing: sliced_wasserstein(sample("ddim", d, x, sampling_grid(s, 10, spacing), s), ref)
          for spacing in ("uniform", "karras")}
    assert sw["karras"] <= sw["uniform"] + 0.005, sw


def test_bad_settings_for_a_trained_run_are_one_line_errors(tmp_path, capsys):
    cfg = Config().updated(model={"preset": "tiny", "class_conditional": False})
    run = make_run(tmp_path, cfg)
    for argv, field in ((["--sampler", "ddim_eta", "--eta", "5"], "eta"), (["--steps", "0"], "steps")):
        code, out, err = run_cli(capsys, "sample", run.path, *argv, "--n", 2, "--out", tmp_path / "x.png")
        assert code == 2 and out == "" and err.count("\n") == 1 and field in err, err
    assert not (tmp_path / "x.png").exists()
