"""Named, ready-to-train configurations: the app's default and the seed's experiments."""

from __future__ import annotations

from diffstudio.engine.config import (
    Config,
    DataConfig,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
)


def _quickstart() -> Config:
    """Class-conditional 8x8 digits: ZTSNR + v-prediction + trailing (Lin et al. 2024's recipe)."""
    return Config(
        data=DataConfig(source="digits"),
        schedule=ScheduleConfig(family="scaled_linear", ztsnr=True),
        objective=ObjectiveConfig(parameterization="v", weighting="min_snr", gamma=5.0),
        sampling=SamplingConfig(sampler="ddim", steps=25, spacing="trailing", guidance_scale=1.5, guidance_rescale=0.7),
        run=RunConfig(steps=1500, preview_every=100, checkpoint_every=500, name="quickstart"),
    )


def _lighting(ztsnr: bool, param: str, spacing: str, name: str) -> Config:
    """Lin et al. 2024's uniform-lighting experiment on 32x32 grayscale images of every brightness."""
    return Config(
        data=DataConfig(source="lighting", resolution=32, channels=1, labels=False),
        model=ModelConfig(preset="tiny", class_conditional=False),
        schedule=ScheduleConfig(family="scaled_linear", ztsnr=ztsnr),
        objective=ObjectiveConfig(parameterization=param),
        optim=OptimConfig(batch_size=64, lr=2e-3, warmup_steps=25),
        sampling=SamplingConfig(sampler="ddim", steps=50, spacing=spacing, num_samples=64),
        run=RunConfig(steps=500, preview_every=100, checkpoint_every=250, name=name),
    )


def _moons_flow() -> Config:
    """Rectified flow on two moons with a small MLP: watch a flow straighten in the plane."""
    return Config(
        data=DataConfig(source="moons", labels=False),
        model=ModelConfig(class_conditional=False, mlp_width=128, mlp_depth=3),
        schedule=ScheduleConfig(family="flow"),
        objective=ObjectiveConfig(parameterization="flow"),
        optim=OptimConfig(batch_size=256, lr=3e-3, warmup_steps=50, ema_decay=0.99),
        sampling=SamplingConfig(sampler="euler", steps=32, spacing="uniform", num_samples=512),
        run=RunConfig(steps=2000, preview_every=200, checkpoint_every=1000, name="moons-flow"),
    )


def _gaussians8_v() -> Config:
    cfg = _moons_flow()
    return cfg.updated(data={"source": "gaussians8"}, schedule={"family": "cosine"},
                       objective={"parameterization": "v"}, sampling={"sampler": "ddim", "steps": 25},
                       run={"name": "gaussians8-v"})


def _shapes() -> Config:
    cfg = _quickstart()
    return cfg.updated(data={"source": "shapes", "hflip": True}, model={"preset": "small"},
                       run={"steps": 3000, "preview_every": 250, "name": "shapes"})


def _shapes_at(resolution: int) -> Config:
    """Coloured shapes at 64, 128 or 256 px: the UNet's levels sized for it (tiny at 64 and 128 px,
    1.2M / 3.0M parameters, trainable on a CPU; small at 256 px, 28M, for a GPU); batch and count
    kept to what a CPU or one GPU holds."""
    batch, count, model = {64: (32, 2000, "tiny"), 128: (16, 1000, "tiny"), 256: (8, 500, "small")}[resolution]
    cfg = _shapes()
    return cfg.updated(data={"resolution": resolution, "num_points": count}, model={"preset": model},
                       optim={"batch_size": batch, "lr": 1e-3},
                       sampling={"num_samples": 16, "guidance_scale": 1.5},
                       run={"steps": 5000, "preview_every": 500, "checkpoint_every": 1000,
                            "name": f"shapes-{resolution}"})


def _finetune_ztsnr_v() -> Config:
    """Lin et al. 2024, Sec. 5: fine-tune an eps-trained model (e.g. a lighting-sd-eps run) to
    v-prediction on the same betas rescaled to zero terminal SNR, sampled with trailing spacing.
    ``model.init_from`` must name the model (see :data:`REQUIRED`)."""
    cfg = _lighting(True, "v", "trailing", "finetune-ztsnr-v")
    # EMA 0.98, not 0.995: the average starts at the pretrained (eps) weights, and 0.995 still
    # carries 0.995**300 = 22 % of them after 300 steps (measured: spread 0.18 EMA vs 0.90 raw)
    return cfg.updated(optim={"lr": 1e-3, "warmup_steps": 25, "ema_decay": 0.98},
                       run={"steps": 300, "preview_every": 50, "checkpoint_every": 150})


PRESETS: dict[str, tuple[str, callable]] = {
    "quickstart": ("Digits 8x8, class-conditional; ZTSNR + v + trailing (the app's default)", _quickstart),
    "lighting-sd-eps": ("Lighting 32x32: Stable Diffusion schedule, eps, leading (the flawed recipe)",
                        lambda: _lighting(False, "eps", "leading", "lighting-sd-eps")),
    "lighting-ztsnr-v": ("Lighting 32x32: same betas rescaled to zero terminal SNR, v, trailing (the fix)",
                         lambda: _lighting(True, "v", "trailing", "lighting-ztsnr-v")),
    "finetune-ztsnr-v": ("Fine-tune an eps model (model.init_from, e.g. a lighting-sd-eps run) to ZTSNR + v + "
                         "trailing", _finetune_ztsnr_v),
    "moons-flow": ("Two moons in 2-D: rectified flow with an MLP", _moons_flow),
    "gaussians8-v": ("Eight Gaussians in 2-D: cosine schedule, v-prediction", _gaussians8_v),
    "shapes": ("Coloured shapes 32x32 RGB, class-conditional", _shapes),
    "shapes-64": ("Coloured shapes 64x64 RGB, class-conditional (tiny UNet, 4 levels)", lambda: _shapes_at(64)),
    "shapes-128": ("Coloured shapes 128x128 RGB, class-conditional (tiny UNet, 5 levels)", lambda: _shapes_at(128)),
    "shapes-256": ("Coloured shapes 256x256 RGB, class-conditional (small UNet, 6 levels; a GPU)",
                   lambda: _shapes_at(256)),
}


# presets that cannot run until the user fills a setting: {preset: ((setting, what to give), ...)}
REQUIRED: dict[str, tuple[tuple[str, str], ...]] = {
    "finetune-ztsnr-v": (("model.init_from", "give the eps-trained model to fine-tune (a run folder, checkpoint, "
                                             "export or diffusers UNet folder), e.g. a lighting-sd-eps run: "
                                             "--set model.init_from=runs/lighting-sd-eps"),),
}


def missing_required(name: str, config: Config) -> list[tuple[str, str]]:
    """``[(setting, message)]`` for each setting the preset ``name`` needs and ``config`` leaves
    empty (an empty list when it can run)."""
    out = []
    for field, message in REQUIRED.get(name, ()):
        section, key = field.split(".", 1)
        if not str(getattr(getattr(config, section), key) or "").strip():
            out.append((field, f"the {name} preset needs it: {message}"))
    return out


def preset(name: str) -> Config:
    """A fresh copy of the named preset.
    Raises KeyError for an unknown name."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name][1]()
