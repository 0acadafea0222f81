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
from diffstudio.engine import distributed as dist_util
from diffstudio.engine.config import Config, ConfigError
from diffstudio.engine.sampling import Preview, generate
from diffstudio.models.info import DataInfo


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, out of memory, ...); the message says what to do."""


class TrainerHooks:
    """Override what you need. Called on the training thread."""

    def on_start(self, info: dict) -> None: ...
    def on_metrics(self, step: int, metrics: dict) -> None: ...
    def on_preview(self, step: int, preview: Preview) -> None: ...
    def on_checkpoint(self, step: int, path: str) -> None: ...
    def on_message(self, level: str, text: str) -> None: ...

    def should_stop(self) -> bool:
        return False

    def wait_if_paused(self) -> None:
        return None


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    images_per_second: float
    run_dir: str
    stopped: bool


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError([("run.device", "CUDA was asked for, but no CUDA device is available")])
    return torch.device(name)


def stream_seed(seed: int, offset: int = 0) -> int:
    """The training stream's seed for ``run.seed`` (0..2**63-1): ``1000 seed + offset`` folded into
    the 64 bits ``torch.Generator.manual_seed`` accepts."""
    return (seed * 1000 + offset) % 2**64


def lr_at(step: int, cfg: Config) -> float:
    """Linear warm-up, then cosine decay to 10% (or constant)."""
    o, total = cfg.optim, cfg.run.steps
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.lr_schedule == "constant":
        return o.lr
    progress = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
    return o.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _adamw_kernel(device: torch.device) -> dict:
    """AdamW's fused kernel where PyTorch has one for the device (CPU since 2.4, CUDA): on the CPU the
    default per-tensor loop costs about 4 % of a quickstart step (benchmarks/throughput.py)."""
    if device.type in ("cpu", "cuda"):
        return {"fused": True}
    return {}


class Trainer:
    codec = None  # the VAE of a latent run (data.vae), else None

    def __init__(self, config: Config, *, hooks: TrainerHooks | None = None, run_dir: str | Path | None = None,
                 resume: str | Path | None = None, dataset=None):
        self.config = config.check()
        self.hooks = hooks or TrainerHooks()
        self._run_dir_arg, self._resume, self._dataset = run_dir, resume, dataset
        self.step = 0

    # ---- set-up -------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.config
        self.world = dist_util.init_from_env(cfg.run.device)
        self.device = self.world.device if self.world.size > 1 else resolve_device(cfg.run.device)
        if cfg.run.threads > 0:
            torch.set_num_threads(cfg.run.threads)
        self.data = self._latents(self._load_data()).to(self.device)
        self.info = self._data_info()
        self.schedule = cfg.schedule.build()
        self.objective = cfg.objective.build()
        self._build_model()
        # one stream shared by every rank: each draws the global batch and keeps its shard (_batch)
        self.generator = torch.Generator(device=self.device).manual_seed(stream_seed(cfg.run.seed))
        if self._resume:
            self._load_state(self._resume)
        self.run_dir = self._open_run_dir()

    def _load_data(self):
        if self._dataset is not None:
            return self._dataset
        from diffstudio.data.registry import load_dataset

        d = self.config.data
        return load_dataset(d.source, resolution=d.resolution, channels=d.channels, labels=d.labels,
                            n=d.num_points, seed=self.config.run.seed)

    def _latents(self, data):
        """With ``data.vae``: the data's VAE posteriors (encoded once, cached on disk); the VAE is
        kept (``self.codec``) to decode previews. Without: ``data`` itself."""
        if not self.config.data.vae:
            return data
        from diffstudio.engine.latents import encode_dataset, load_codec

        self.codec = load_codec(self.config.data.vae, self.device)
        return encode_dataset(data, self.codec, hflip=self.config.data.hflip, say=self.hooks.on_message)

    def _data_info(self) -> DataInfo:
        d = self.data
        classes = d.num_classes if (self.config.data.labels and d.labels is not None) else 0
        return DataInfo(kind=d.kind, channels=d.channels if d.kind == "image" else 2,
                        resolution=d.resolution if d.kind == "image" else None, num_classes=classes)

    def _build_model(self) -> None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        from diffstudio.engine.pretrained import initial_model

        cfg = self.config
        torch.manual_seed(cfg.run.seed)
        self.model = initial_model(cfg, self.info, resume=self._resume, say=self.hooks.on_message).to(self.device)
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

        if not self.world.is_main:
            return None
        if self._resume:
            source = self._resume_run_path
            if self._run_dir_arg and Path(self._run_dir_arg).resolve() != source.resolve():
                return self._branch(source, Path(self._run_dir_arg))
            if source.parent.name == ABANDONED or not RunDir.is_run_dir(source):
                raise TrainingError(f"{self._resume} is not the checkpoint of a run folder (an abandoned branch or "
                                    f"a loose file): give a new run folder to continue it there (--out DIR)")
            run = RunDir(source)
            run.clean_partial(0)  # leftovers of a save that was killed
            moved = run.set_aside_after(self.step)
            if moved:
                self.hooks.on_message("info", f"resumed at step {self.step}: {len(moved)} later files (checkpoints, "
                                              f"previews, metrics) moved to {run.path / ABANDONED}")
            return run
        if self._run_dir_arg:
            path = Path(self._run_dir_arg)
            run = RunDir.create(path.parent, path.name)
        else:
            run = RunDir.create(self.config.run.out_dir, self.config.run.name or self.config.data.source)
        run.save_config(self.config)
        return run

    def _branch(self, source: Path, target: Path):
        """Resume ``source``'s checkpoint into a new run folder: the source is left untouched; its
        metrics up to the step are copied so that the new run's history is whole."""
        from diffstudio.engine.run_dir import RunDir

        run = RunDir.create(target.parent, target.name)
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
                "data_info": self.info.__dict__, "loss": loss, "world_size": self.world.size}
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
        self.model.load_state_dict(ckpt.model)
        if self.ema is not None and ckpt.ema:
            self.ema.load_state_dict(ckpt.ema)
        self.optimizer.load_state_dict(ckpt.optimizer)
        fused = _adamw_kernel(self.device).get("fused")
        for group in self.optimizer.param_groups:  # the kernel suits this device, not the saving one
            group.update(fused=fused, foreach=None if fused else group.get("foreach"))
        self.step = int(ckpt.meta["step"])
        self._restore_rng(ckpt.rng.get("train.rank0"))
        self._resume_run_path = Path(ckpt.path).parent.parent
        self.hooks.on_message("info", f"resumed from {ckpt.path} at step {self.step}")

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
        return x, y, t, eps

    def _autocast(self):
        p = self.config.run.precision
        if self.device.type != "cuda" or p == "fp32":
            return torch.autocast("cpu", enabled=False)
        return torch.autocast("cuda", dtype=torch.bfloat16 if p == "bf16" else torch.float16)

    def _train_step(self) -> tuple[float, float]:
        cfg = self.config
        for g in self.optimizer.param_groups:
            g["lr"] = lr_at(self.step, cfg)
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

    def run(self) -> TrainResult:
        try:
            self._setup()
            return self._loop()
        finally:
            self.world.close()

    def _loop(self) -> TrainResult:
        cfg, hooks = self.config, self.hooks
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and cfg.run.precision == "fp16")
        n_params = sum(p.numel() for p in self.model.parameters())
        hooks.on_start({"run_dir": str(self.run_dir.path) if self.run_dir else "", "device": str(self.device),
                        "num_params": n_params, "start_step": self.step, "total_steps": cfg.run.steps,
                        "dataset": cfg.data.source, "data_kind": self.info.kind, "world_size": self.world.size})
        self.model.train()
        images_per_step = cfg.optim.batch_size * cfg.optim.grad_accum * self.world.size
        loss, window_start, window_steps, stopped = float("nan"), time.perf_counter(), 0, False
        rows: list[dict] = []
        throughput = 0.0
        while self.step < cfg.run.steps:
            hooks.wait_if_paused()
            if self.world.any(hooks.should_stop()):
                stopped = True
                break
            loss, grad_norm = self._train_step()
            window_steps += 1
            if self.step % cfg.run.log_every == 0 or self.step == cfg.run.steps:
                elapsed = time.perf_counter() - window_start
                sps = window_steps / elapsed if elapsed > 0 else 0.0
                throughput = sps * images_per_step
                m = {"step": self.step, "loss": loss, "lr": lr_at(self.step - 1, cfg), "grad_norm": grad_norm,
                     "steps_per_s": sps, "images_per_s": throughput,
                     "eta_s": (cfg.run.steps - self.step) / sps if sps > 0 else float("nan")}
                rows.append(m)
                if self.run_dir:
                    self.run_dir.append_metrics(rows)
                rows = []
                hooks.on_metrics(self.step, m)
                window_start, window_steps = time.perf_counter(), 0
            if self.step % cfg.run.preview_every == 0:
                self._emit_preview()
            if self.step % cfg.run.checkpoint_every == 0 and self.step < cfg.run.steps:
                self._save(loss)
        self._finish(loss, stopped)
        return TrainResult(self.step, loss, throughput, str(self.run_dir.path) if self.run_dir else "", stopped)

    def _finish(self, loss: float, stopped: bool) -> None:
        if self.world.is_main and self.step % self.config.run.preview_every != 0 and not stopped:
            self._emit_preview()
        self._save(loss)
        how = "stopped" if stopped else "finished"
        self.hooks.on_message("info", f"training {how} at step {self.step}")
