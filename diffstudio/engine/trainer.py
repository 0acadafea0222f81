"""The training loop: plain Python with hooks; the Qt worker, the CLI and torchrun all drive it.

One ``torch.Generator`` per process draws batches, times, noise and label dropout, and its state
is checkpointed, so resuming gives bit-identical weights on the CPU."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from diffstudio.core.objectives import diffusion_loss, sample_noise, sample_times
from diffstudio.data.registry import is_toy_source
from diffstudio.engine import distributed as dist_util
from diffstudio.engine.config import Config
from diffstudio.engine.devices import resolve_device  # noqa: F401 - its old home; callers import it here
from diffstudio.engine.lr import LrSegment, continue_schedule, lr_at
from diffstudio.engine.precision import resolve_precision
from diffstudio.engine.sampling import Preview, generate
from diffstudio.models.info import DataInfo


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, out of memory, ...); the message says what to do."""


class TrainerHooks:
    """Override what you need. Called on the training thread."""

    def on_start(self, info: dict) -> None:
        """The loop starts: ``info`` holds run_dir, device, num_params, start_step, total_steps,
        precision (and its reason), dataset, data_kind and world_size."""

    def on_metrics(self, step: int, metrics: dict) -> None:
        """Every ``run.log_every`` steps: step, loss, lr, grad_norm, steps_per_s, images_per_s and
        eta_s (seconds left; NaN when unknown)."""

    def on_preview(self, step: int, preview: Preview) -> None:
        """A sample grid from the current (EMA) weights, decoded to images in a latent run."""

    def on_checkpoint(self, step: int, path: str) -> None:
        """A checkpoint folder was written at ``path``."""

    def on_message(self, level: str, text: str) -> None:
        """A one-line message for people; ``level`` is "info" or "warning"."""

    def on_validation(self, step: int, result) -> None:
        """A held-out evaluation: an :class:`~diffstudio.engine.evaluation.ValidationResult`."""

    def on_quality(self, step: int, quality: dict) -> None:
        """Sample-quality measures ``{measure name: number}``."""

    def on_data_progress(self, done: int, total: int) -> None:
        """Decoding a folder into its training cache: ``done`` of ``total`` images. By default a
        message at most every 2 s and at the end; a progress bar can override it."""
        now = time.monotonic()
        if done == total or now - getattr(self, "_data_progress_at", -math.inf) >= 2.0:
            self._data_progress_at = now
            self.on_message("info", f"dataset cache: {done:,} / {total:,} images decoded")

    def should_stop(self) -> bool:
        """Asked before every step; True ends the run after saving (on every rank when any says so)."""
        return False

    def wait_if_paused(self) -> None:
        """Called before every step; a GUI blocks here while paused."""
        return None


def with_absolute_paths(config: Config) -> Config:
    """``config`` with the folders it names (``data.source`` when a folder, ``data.vae``,
    ``model.init_from``) made absolute (``~`` expanded; links kept), so the run folder's
    config.toml still finds them when the run is sampled, exported, evaluated or resumed from
    another working directory. Built-in dataset names and empty fields are left as they are."""
    import os

    from diffstudio.data.errors import DatasetError
    from diffstudio.data.paths import from_portable
    from diffstudio.data.registry import source_kind

    def absolute(path: str) -> str:
        return os.path.abspath(os.path.expanduser(path)) if path else path

    data, model = {}, {}
    try:
        if source_kind(config.data.source) == "folder":
            data["source"] = absolute(from_portable(config.data.source))
    except (DatasetError, ValueError):  # not found here: loading the data says so
        pass
    if config.data.vae:
        data["vae"] = absolute(config.data.vae)
    if config.model.init_from:
        model["init_from"] = absolute(config.model.init_from)
    return config.updated(data=data, model=model)


@dataclass(frozen=True)
class TrainResult:
    """What a finished run reports (it crosses from the training thread to the app: frozen)."""

    steps: int
    final_loss: float  # NaN when no loss is known (nothing trained, and none saved)
    images_per_second: float  # images trained this session / seconds spent in training steps (all ranks;
    # previews, validation and checkpoints not counted); 0.0 when no step ran
    run_dir: str
    stopped: bool
    nothing_to_do: bool = False  # resumed at or past run.steps: no step was trained


def stream_seed(seed: int, offset: int = 0) -> int:
    """The training stream's seed for ``run.seed`` (0..2**63-1): ``1000 seed + offset`` folded into
    the 64 bits ``torch.Generator.manual_seed`` accepts."""
    return (seed * 1000 + offset) % 2**64


def _adamw_kernel(device: torch.device) -> dict:
    """AdamW's fused kernel where PyTorch has one for the device (CPU since 2.4, CUDA): on the CPU the
    default per-tensor loop costs about 4 % of a quickstart step (benchmarks/throughput.py)."""
    if device.type in ("cpu", "cuda"):
        return {"fused": True}
    return {}


class Trainer:
    """One training run of ``config``: set up data, model, optimizer and run folder, then
    :meth:`run` the loop, reporting through ``hooks`` (a :class:`TrainerHooks`).

    ``run_dir``: the run folder (default: a new one under ``run.out_dir``); ``resume``: a checkpoint
    or run folder to continue; ``dataset``: data already loaded instead of ``data.source``;
    ``dry_run``: set up without writing anything (:mod:`diffstudio.engine.dry_run`). Raises
    ConfigError for invalid settings here; :meth:`run` raises TrainingError, the data's errors,
    InitFromError, VaeError or CheckpointError, each a one-line message."""

    codec = None  # the VAE of a latent run (data.vae), else None
    _pretrained = None  # the model.init_from network, read before the data (released once built)

    def __init__(self, config: Config, *, hooks: TrainerHooks | None = None, run_dir: str | Path | None = None,
                 resume: str | Path | None = None, dataset=None, dry_run: bool = False):
        self.config = with_absolute_paths(config.check())
        self.dry_run = dry_run  # set up data and model but write no run folder (engine/dry_run.py)
        self.hooks = hooks or TrainerHooks()
        self._run_dir_arg, self._resume, self._dataset = run_dir, resume, dataset
        self.step = 0
        self.lr_segment: LrSegment | None = None  # how the lr continues after a resume changed the length
        self.run_dir = None
        self._saved_loss = float("nan")  # the loss stored in the checkpoint resumed from

    # ---- set-up -------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.config
        self.world = dist_util.init_from_env(cfg.run.device)
        self.device = self.world.device if self.world.size > 1 else resolve_device(cfg.run.device)
        self.precision = resolve_precision(cfg.run.precision, self.device,  # refused here, before any data
                                           points=is_toy_source(cfg.data.source))
        if cfg.run.threads > 0:
            torch.set_num_threads(cfg.run.threads)
        self._check_out_folder()
        self._pretrained = self._read_sources()  # before any data: a wrong folder is one error at once
        train, val = self._split_data(self._load_data())
        if self.codec is not None:  # a latent run's quality measures compare decoded samples with images
            from diffstudio.engine.quality import reference_items

            self._pixel_reference = reference_items(train)
        self.data = self._latents(train).to(self.device)
        self.val_data = self._latent_validation(val)
        self.info = self._data_info()
        self.schedule = cfg.schedule.build()
        self.objective = cfg.objective.build()
        self._build_model()
        # one stream shared by every rank: each draws the global batch and keeps its shard (_batch)
        self.generator = torch.Generator(device=self.device).manual_seed(stream_seed(cfg.run.seed))
        self.validation = self._validation_set()
        if self._resume:
            self._load_state(self._resume)
        if self.nothing_to_do:
            return
        self.run_dir = self._open_run_dir()
        self._advise()

    @property
    def nothing_to_do(self) -> bool:
        """Resumed at or past ``run.steps``."""
        return bool(self._resume) and self.step >= self.config.run.steps

    def _advise(self) -> None:
        """Warnings about the settings and the data, before the first step (engine/advice.py)."""
        from diffstudio.engine.advice import training_advice

        if not self.world.is_main:
            return
        for item in training_advice(self.config, self.data):
            self.hooks.on_message(item.level, item.text)

    def _load_data(self):
        """Device-resident (uint8 where exact) within ``data.memory_budget_mb``, else streamed from the
        folder's pixel cache; rank 0 builds the cache while the other ranks wait, then they open it."""
        if self._dataset is not None:
            return self._dataset.as_uint8()
        from diffstudio.data.training_data import load_training_data

        d = self.config.data
        if not self.world.is_main:
            self.world.barrier()
        loaded = load_training_data(d.source, self.device, resolution=d.resolution, channels=d.channels,
                                    labels=d.labels, n=d.num_points, seed=self.config.run.seed,
                                    memory_budget_mb=d.memory_budget_mb, should_cancel=self.hooks.should_stop,
                                    progress=self.hooks.on_data_progress)
        if self.world.is_main:
            self.world.barrier()
            self.hooks.on_message("info", loaded.placement)
        return loaded.dataset

    def _split_data(self, full):
        """(training items, the held-out items validation evaluates): a fixed split by
        ``data.val_seed`` (data/split.py), computed identically by every rank and on resume."""
        from diffstudio.data.split import split_dataset

        d = self.config.data
        self.split, train, val = split_dataset(full, d.val_fraction, d.val_seed, self.config.run.val_items)
        if self.world.is_main and not self.dry_run and self.split.n > len(self.split.train):
            from diffstudio.data.split import describe_split

            unit = "images" if getattr(full, "kind", "image") == "image" else "points"
            self.hooks.on_message("info", f"data: {describe_split(self.split.n, self.split.n - len(self.split.train), unit)}")
        return train, None if val is None else val.to(self.device)

    def _validation_set(self):
        from diffstudio.engine.evaluation import make_validation_set

        if not self.config.run.val_every or self.val_data is None or not self.world.is_main:
            return None
        r, o = self.config.run, self.objective
        return make_validation_set(self.val_data, self.schedule, count=r.val_times, items=r.val_items,
                                   seed=self.config.data.val_seed, conditional=self.conditional,
                                   offset_noise=o.offset_noise)

    def _check_out_folder(self) -> None:
        """Before any data: RunDirError naming the folder and the OS's reason when a new run folder
        cannot be created (``run.out_dir``, or the run folder asked for), not after a long load."""
        from diffstudio.engine.run_dir import RunDirError, run_folder_problem

        if not self.world.is_main or self.dry_run:
            return
        problem = run_folder_problem(self._run_dir_arg, self.config.run.out_dir, self._resume)
        if problem:
            raise RunDirError(f"{'run folder' if self._run_dir_arg else 'run.out_dir'}: {problem}")

    def _read_sources(self):
        """Read the folders the run starts from before any data is loaded or encoded, so a wrong
        ``data.vae`` or ``model.init_from`` is one error at once, not after a long cache build: the
        VAE (kept as ``self.codec`` to encode and decode) and the pretrained model (returned; None
        when there is none, or when resuming, which no longer needs it)."""
        cfg = self.config
        if cfg.data.vae:
            from diffstudio.engine.latents import load_codec

            self.codec = load_codec(cfg.data.vae, self.device)
        pre = None
        if cfg.model.init_from and not self._resume:
            from diffstudio.engine.pretrained import read_pretrained

            pre = read_pretrained(cfg.model.init_from)
        self._check_before_data(pre)
        return pre

    def _check_before_data(self, pre) -> None:
        """What the settings alone tell about the fit, before a folder is decoded or encoded: a 2-D
        toy given a VAE, images whose explicit ``data.channels`` / ``data.resolution`` the VAE cannot
        take, a pretrained model built for another explicit size. The same checks run again on the
        loaded data (``check_compatible``, ``check_fits``), which also cover "native" sizes."""
        from diffstudio.data.registry import source_kind
        from diffstudio.data.errors import DatasetError

        d = self.config.data
        try:
            kind = "points" if source_kind(d.source) == "toy" else "image"
        except DatasetError:
            return  # loading the data gives this error, with the known names
        codec = self.codec
        if codec is not None:
            from diffstudio.engine.latents import check_compatible

            if kind == "points" or d.channels or d.resolution:
                probe = DataInfo(kind=kind, channels=d.channels or codec.in_channels,
                                 resolution=d.resolution or codec.factor, num_classes=0)
                check_compatible(probe, codec)
        if pre is None:
            return
        from diffstudio.engine.pretrained import check_fits

        if kind == "points" or pre.kind != "unet":  # a UNet for points, or an MLP for images
            check_fits(pre, DataInfo(kind=kind, channels=2, num_classes=0))
            return
        channels = codec.latent_channels if codec is not None else d.channels
        side = 0 if d.resolution is None else d.resolution // (codec.factor if codec is not None else 1)
        # what is not known yet (native size, a folder's channels) is not checked here
        from types import SimpleNamespace

        known = SimpleNamespace(kind="image", channels=channels, resolution=side)
        check_fits(pre, known, latent=codec is not None)

    def _latents(self, data, what: str = ""):
        """With ``data.vae``: the data's VAE posteriors (encoded once, cached on disk, interruptible
        and resumed), after checking that the images fit the VAE and their latents fit the
        pretrained model; its messages start with ``what`` when given. Without: ``data`` itself."""
        if self.codec is None:
            return data
        from diffstudio.engine.latents import check_compatible, encode_dataset

        check_compatible(data, self.codec)
        if self._pretrained is not None:
            from diffstudio.engine.pretrained import check_fits

            side = data.resolution // self.codec.factor
            check_fits(self._pretrained, self._info_of(data, self.codec.latent_channels, side), latent=True)
        # rank 0 encodes into the latent cache while the other ranks wait, then they read it
        if not self.world.is_main:
            self.world.barrier()
        say = self.hooks.on_message if self.world.is_main else None
        if say is not None and what:
            say = (lambda level, text, _say=say: _say(level, f"{what}: {text}"))
        latents = encode_dataset(data, self.codec, hflip=self.config.data.hflip, should_cancel=self.hooks.should_stop,
                                 say=say)
        if self.world.is_main:
            self.world.barrier()
        return latents

    def _latent_validation(self, val):
        """The held-out items as validation data: pixels, or with ``data.vae`` their latent
        posterior means (the x0 the model learns), on the device."""
        if val is None or self.codec is None:
            return val
        from diffstudio.data.dataset import InMemoryDataset

        latents = self._latents(val, "validation items")  # told apart from the training set's message
        return InMemoryDataset(x=latents.mean, labels=latents.labels, class_names=latents.class_names,
                               name=latents.name).to(self.device)

    def _data_info(self) -> DataInfo:
        return self._info_of(self.data)

    def _info_of(self, d, channels: int | None = None, resolution: int | None = None) -> DataInfo:
        """What the model is fitted to: ``d``'s kind, channels, side and classes (``channels`` and
        ``resolution`` given: those of its latents)."""
        return DataInfo.from_dataset(d, labels=self.config.data.labels, channels=channels, resolution=resolution)

    def _build_model(self) -> None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        from diffstudio.engine.pretrained import initial_model

        cfg = self.config
        torch.manual_seed(cfg.run.seed)
        self.model = initial_model(cfg, self.info, resume=self._resume, say=self.hooks.on_message,
                                   pretrained=self._pretrained).to(self.device)
        self._pretrained = None  # its weights now live in the model
        self.conditional = getattr(self.model, "num_classes", 0) > 0 or (
            cfg.model.class_conditional and self.info.num_classes > 0)
        decay = cfg.optim.ema_decay
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(decay)) if decay > 0 else None
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                                           betas=(cfg.optim.beta1, cfg.optim.beta2), **_adamw_kernel(self.device))
        self.forward = self.world.wrap(self.model)
        if cfg.run.compile:
            self.hooks.on_message("info", "torch.compile: the first steps compile the model (seconds to minutes)")
            self.forward = torch.compile(self.forward)

    def _open_run_dir(self):
        from diffstudio.engine.run_dir import ABANDONED, RunDir

        if not self.world.is_main or self.dry_run:
            return None
        if self._resume:
            source = self._resume_run_path
            if self._run_dir_arg and Path(self._run_dir_arg).resolve() != source.resolve():
                return self._branch(source, Path(self._run_dir_arg))
            if source.parent.name == ABANDONED or not RunDir.is_run_dir(source):
                raise TrainingError(f"{self._resume} is not the checkpoint of a run folder (an abandoned branch or "
                                    f"a loose file): give a new run folder to continue it there (--out DIR)")
            run = RunDir(source)
            run.check_writable()  # a read-only folder fails now, not at the first log line
            run.clean_partial(0)  # leftovers of a save that was killed
            moved = run.set_aside_after(self.step)
            if moved:
                self.hooks.on_message("info", f"resumed at step {self.step}: {len(moved)} later files (checkpoints, "
                                              f"previews, metrics) moved to {run.path / ABANDONED}")
            return run
        if self._run_dir_arg:
            path = Path(self._run_dir_arg)
            run = self._new_run_dir(path.parent, path.name, asked=True)
        else:
            run = self._new_run_dir(self.config.run.out_dir, self.config.run.name or self.config.data.source)
        run.save_config(self.config)
        return run

    def _new_run_dir(self, parent, name: str, asked: bool = False):
        """``RunDir.create(parent, name)``, saying in one line when the folder was taken and the run
        goes to ``name-2`` (a warning when the folder was asked for by path: ``--out``, the app's
        run folder)."""
        from diffstudio.engine.run_dir import RunDir

        run = RunDir.create(parent, name)
        if run.moved_note():
            self.hooks.on_message("warning" if asked else "info", run.moved_note())
        return run

    def _branch(self, source: Path, target: Path):
        """Resume ``source``'s checkpoint into a new run folder: the source is left untouched; its
        metrics up to the step are copied so that the new run's history is whole."""
        from diffstudio.engine.run_dir import RunDir

        run = self._new_run_dir(target.parent, target.name, asked=True)
        run.save_config(self.config)
        if RunDir.is_run_dir(source):
            rows, _ = RunDir(source).read_metrics()
            run.append_metrics([r for r in rows if isinstance(r.get("step"), (int, float)) and r["step"] <= self.step])
        self.hooks.on_message("info", f"continuing step {self.step} of {source} in the new run folder {run.path}")
        return run

    # ---- checkpoints ---------------------------------------------------------------------------
    def _rng_state(self) -> dict[str, torch.Tensor]:
        states = self.world.gather_bytes(self.generator.get_state().cpu())
        return {f"train.rank{r}": s for r, s in enumerate(states)}

    def _save(self, loss: float) -> str | None:
        from diffstudio.engine.checkpoint import save_checkpoint

        rng = self._rng_state()  # every rank takes part in the gather
        if not self.world.is_main:
            return None
        if self.run_dir.checkpoint_dir(self.step).exists():  # already saved at this step
            return str(self.run_dir.checkpoint_dir(self.step))
        meta = {"step": self.step, "config": self.config.to_dict(), "model_spec": self.model.spec,
                "data_info": self.info.__dict__, "loss": loss if math.isfinite(loss) else None,
                "world_size": self.world.size,
                "lr_segment": self.lr_segment.to_dict() if self.lr_segment is not None else None,
                "val_split": {"n": self.split.n, "held_out": len(self.split.val), "sha1": self.split.fingerprint()}}
        path = save_checkpoint(self.run_dir.checkpoint_dir(self.step), model=self.model.state_dict(),
                               ema=self.ema.state_dict() if self.ema else None,
                               optimizer=self.optimizer.state_dict(), meta=meta, rng=rng)
        self.run_dir.mark_latest(self.step)
        self.run_dir.prune_checkpoints(self.config.run.keep_checkpoints)
        self.hooks.on_checkpoint(self.step, str(path))
        return str(path)

    def _load_state(self, source) -> None:
        from diffstudio.engine.checkpoint import load_checkpoint

        ckpt = load_checkpoint(source)
        try:
            self.model.load_state_dict(ckpt.model)
        except RuntimeError:  # another network than the checkpoint's: say which settings made it
            from diffstudio.engine.pretrained import resume_mismatch

            raise resume_mismatch(ckpt.meta.get("config"), self.config, source) from None
        if self.ema is not None and ckpt.ema:
            self.ema.load_state_dict(ckpt.ema)
        self.optimizer.load_state_dict(ckpt.optimizer)
        fused = _adamw_kernel(self.device).get("fused")
        for group in self.optimizer.param_groups:  # the kernel suits this device, not the saving one
            group.update(fused=fused, foreach=None if fused else group.get("foreach"))
        self.step = int(ckpt.meta["step"])
        self._check_split(ckpt.meta.get("val_split"))
        self._restore_rng(ckpt.rng.get("train.rank0"))
        self._resume_run_path = Path(ckpt.path).parent.parent
        loss = ckpt.meta.get("loss")
        self._saved_loss = float(loss) if isinstance(loss, (int, float)) else float("nan")
        if self.nothing_to_do:
            self.hooks.on_message("info", f"already at step {self.step}, nothing to do (the run was asked for "
                                          f"{self.config.run.steps} steps; give more steps to train further)")
            return
        self.hooks.on_message("info", f"resumed from {ckpt.path} at step {self.step}")
        self._continue_lr(ckpt.meta)

    def _continue_lr(self, meta: dict) -> None:
        """Keep the learning rate continuous when the resumed run's length changed (engine/lr.py)."""
        old_cfg = self.config
        if isinstance(meta.get("config"), dict):
            try:
                old_cfg = Config.from_dict(meta["config"])
            except ValueError:  # a checkpoint of an older settings layout: judge by the current one
                old_cfg = self.config
        self.lr_segment, note = continue_schedule(self.step, old_cfg, LrSegment.from_dict(meta.get("lr_segment")),
                                                  self.config)
        if note:
            self.hooks.on_message("info", note)

    def _check_split(self, saved: dict | None) -> None:
        """A resumed run must hold out the items it held out before (same data, share and seed)."""
        if saved and saved.get("sha1") != self.split.fingerprint():
            raise TrainingError(f"the dataset or its validation split changed since the checkpoint ({saved.get('n')} "
                                f"items, {saved.get('held_out')} held out; now {self.split.n} and "
                                f"{len(self.split.val)}): resuming would train on validation items")

    def _restore_rng(self, state) -> None:
        """Continue the saved random stream (shared by the ranks, see _batch: any world size
        resumes). A stream saved on another device type cannot carry over (a CPU generator's state
        is not a CUDA one's): reseed from the step and say that exactness is lost."""
        if state is None:
            return
        try:
            self.generator.set_state(state.to(torch.uint8).cpu())
        except RuntimeError:
            self.generator.manual_seed(stream_seed(self.config.run.seed, self.step))
            self.hooks.on_message("warning", f"the checkpoint's random stream comes from another device type than "
                                             f"{self.device.type}: reseeded, so the run is no longer bit-identical "
                                             f"to an uninterrupted one")

    # ---- the loop -------------------------------------------------------------------------------
    def _model_fn(self, x, timestep, cond):
        return self.forward(x, timestep, cond)

    def _batch(self):
        """This rank's share of the step's global batch: data, label dropout, times and noise are
        drawn for ``batch_size * world`` items from the shared stream and sliced, so ``W`` processes
        train exactly as one process with ``W`` times the batch (up to the order of float sums)."""
        cfg, rank, world = self.config, self.world.rank, self.world.size
        b = cfg.optim.batch_size
        part = slice(rank * b, (rank + 1) * b)
        x, y = self.data.sample_batch(b, self.generator, cfg.data.hflip, shard=(rank, world))
        if self.conditional and y is not None:
            drop = torch.rand(b * world, generator=self.generator, device=y.device)[part] < cfg.model.cond_drop_prob
            y = torch.where(drop, torch.full_like(y, self.info.num_classes), y)
        else:
            y = None
        o = self.objective
        t = sample_times(self.schedule, b * world, self.generator, o.time_sampling, o.logit_mean, o.logit_std,
                         x.device)[part]
        eps = sample_noise(x.new_empty((b * world,) + tuple(x.shape[1:])), self.generator, o.offset_noise)[part]
        self.data.prefetch(self.generator, b, shard=(rank, world))  # the next step's rows (streaming path)
        return x, y, t, eps

    def _autocast(self):
        return self.precision.autocast()

    def _train_step(self) -> tuple[float, float]:
        cfg = self.config
        for g in self.optimizer.param_groups:
            g["lr"] = lr_at(self.step, cfg, self.lr_segment)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(cfg.optim.grad_accum):
            x, y, t, eps = self._batch()
            with self._autocast():
                loss = diffusion_loss(self._model_fn, self.schedule, self.objective, x, y, t=t, eps=eps)
            self.scaler.scale(loss / cfg.optim.grad_accum).backward()
            total += float(loss.detach()) / cfg.optim.grad_accum
        total = self.world.mean(total)  # the global batch's loss: every rank sees the same NaN
        if not math.isfinite(total):
            raise TrainingError(self._nan_message(total))
        self.scaler.unscale_(self.optimizer)
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return total, grad_norm

    def _nan_message(self, loss: float) -> str:
        latest = self.run_dir.latest_checkpoint() if self.run_dir else None
        keep = f"the last good checkpoint is {latest}" if latest else "no checkpoint had been written yet"
        return (f"the loss became {loss} at step {self.step + 1}; training stopped and {keep}. "
                f"Try a lower learning rate, gradient clipping, or min-SNR weighting.")

    def preview(self) -> Preview:
        """Sample ``sampling.num_samples`` images (or points) from the EMA weights when kept, else the
        model's, with the run's sampler and seed; a latent run's are decoded by its VAE."""
        model = self.ema.module if self.ema is not None else self.model
        model.eval()
        try:
            p = generate(model, self.config, self.info, device=self.device, step=self.step)
            if self.codec is not None:
                from diffstudio.engine.latents import decode_preview

                p = decode_preview(p, self.codec)
            return p
        finally:
            model.train()

    def _eval_models(self):
        """(name, module) of the weights validation evaluates (run.val_model), in eval mode."""
        which = self.config.run.val_model
        out = []
        if which in ("ema", "both"):
            out.append(("ema", self.ema.module) if self.ema is not None else ("raw", self.model))
        if which in ("raw", "both") and not (out and out[0][0] == "raw"):
            out.append(("raw", self.model))
        return out

    def _validate(self) -> None:
        """Evaluate on the fixed validation set (main rank; no gradients) and log one row per model."""
        from diffstudio.engine.evaluation import evaluate

        if self.validation is None or not self.world.is_main:
            return
        for name, model in self._eval_models():
            model.eval()
            try:
                result = evaluate(model, self.schedule, self.objective, self.validation, step=self.step,
                                  model_name=name)
            finally:
                model.train()
            if self.run_dir:
                self.run_dir.append_metrics([{"step": self.step, "validation": result.to_json()}])
            self.hooks.on_validation(self.step, result)

    def _measure_quality(self) -> None:
        """Sample-quality measures on ``sampling.quality_samples`` fresh samples (engine/quality.py)."""
        from diffstudio.engine.quality import measure_quality

        n = self.config.sampling.quality_samples
        if n <= 0 or not self.world.is_main:
            return
        model = self.ema.module if self.ema is not None else self.model
        model.eval()
        try:
            reference = self.data if self.codec is None else self._pixel_reference
            quality = measure_quality(model, self.config, self.info, reference, n=n, device=self.device,
                                      codec=self.codec)
        finally:
            model.train()
        if quality:
            if self.run_dir:
                self.run_dir.append_metrics([{"step": self.step, "quality": quality}])
            self.hooks.on_quality(self.step, quality)

    def _emit_preview(self) -> None:
        if not self.world.is_main:
            return
        p = self.preview()
        stats = {"step": self.step}
        if p.mean_brightness is not None:
            stats["mean_brightness"] = [round(float(v), 5) for v in p.mean_brightness]
        if p.grid is not None:
            self.run_dir.save_preview(self.step, p.grid, stats)
        self.hooks.on_preview(self.step, p)
        self._measure_quality()

    def run(self) -> TrainResult:
        """Train to ``run.steps``. An exception leaves with ``.run_dir`` set to the run folder (when
        one was opened), so that the error boundary can put its log there."""
        try:
            self._setup()
            if self.nothing_to_do:
                return TrainResult(self.step, self._saved_loss, 0.0, str(self._resume_run_path), False, True)
            return self._loop()
        except BaseException as e:
            if self.run_dir is not None and getattr(e, "run_dir", None) is None:
                try:
                    e.run_dir = str(self.run_dir.path)
                except (AttributeError, TypeError):  # an exception type without a __dict__
                    pass
            raise
        finally:
            if getattr(self, "data", None) is not None:
                self.data.close()
            world = getattr(self, "world", None)
            if world is not None:
                world.close()

    def _loop(self) -> TrainResult:
        cfg, hooks = self.config, self.hooks
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.uses_grad_scaler)
        n_params = sum(p.numel() for p in self.model.parameters())
        hooks.on_start({"run_dir": str(self.run_dir.path) if self.run_dir else "", "device": str(self.device),
                        "num_params": n_params, "start_step": self.step, "total_steps": cfg.run.steps,
                        "precision": self.precision.effective, "precision_reason": self.precision.reason,
                        "dataset": cfg.data.source, "data_kind": self.info.kind, "world_size": self.world.size})
        self.model.train()
        images_per_step = cfg.optim.batch_size * cfg.optim.grad_accum * self.world.size
        loss, window_start, window_steps, stopped = float("nan"), time.perf_counter(), 0, False
        rows: list[dict] = []
        trained, train_time = 0, 0.0  # steps of this session and the seconds spent in them
        while self.step < cfg.run.steps:
            hooks.wait_if_paused()
            if self.world.any(hooks.should_stop()):
                stopped = True
                break
            started = time.perf_counter()
            loss, grad_norm = self._train_step()
            train_time += time.perf_counter() - started
            trained += 1
            window_steps += 1
            if self.step % cfg.run.log_every == 0 or self.step == cfg.run.steps:
                elapsed = time.perf_counter() - window_start
                sps = window_steps / elapsed if elapsed > 0 else 0.0
                m = {"step": self.step, "loss": loss, "lr": lr_at(self.step - 1, cfg, self.lr_segment), "grad_norm": grad_norm,
                     "steps_per_s": sps, "images_per_s": sps * images_per_step,
                     "eta_s": (cfg.run.steps - self.step) / sps if sps > 0 else float("nan")}
                rows.append(m)
                if self.run_dir:
                    self.run_dir.append_metrics(rows)
                rows = []
                hooks.on_metrics(self.step, m)
                window_start, window_steps = time.perf_counter(), 0
            if self.step % cfg.run.preview_every == 0:
                self._emit_preview()
            if cfg.run.val_every and self.step % cfg.run.val_every == 0:
                self._validate()
            if self.step % cfg.run.checkpoint_every == 0 and self.step < cfg.run.steps:
                self._save(loss)
        self._finish(loss, stopped)
        if not math.isfinite(loss):  # stopped before a step: the loss is the checkpoint's
            loss = self._saved_loss
        throughput = trained * images_per_step / train_time if train_time > 0 else 0.0
        return TrainResult(self.step, loss, throughput, str(self.run_dir.path) if self.run_dir else "", stopped)

    def _finish(self, loss: float, stopped: bool) -> None:
        if self.world.is_main and self.step % self.config.run.preview_every != 0 and not stopped:
            self._emit_preview()
        if self.config.run.val_every and self.step % self.config.run.val_every != 0 and not stopped:
            self._validate()
        self._save(loss)
        how = "stopped" if stopped else "finished"
        self.hooks.on_message("info", f"training {how} at step {self.step}")
