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
