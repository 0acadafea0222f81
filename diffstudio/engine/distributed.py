"""Several processes (``torchrun``), one or many machines: torch.distributed + DDP.

Rank 0 owns the run folder (config, metrics, previews, checkpoints). Every rank holds the same random
stream, draws the step's global batch (``batch_size`` per process x processes) and trains on its own
slice of it; DDP averages the gradients. K processes therefore train as one process with K times the
batch would, and a run can resume on a different number of processes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    """This process's place among the ``size`` processes of a ``torchrun`` job (one process: rank 0 of 1) and its device."""
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run folder and sends previews."""
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP across processes; the bare model in a single process."""
        if self.size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any (so a stop on rank 0 stops all)."""
        if self.size == 1:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (the same on every rank)."""
        if self.size == 1:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.size

    def gather_bytes(self, state: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's uint8 tensor (RNG states), in rank order, on every rank."""
        if self.size == 1:
            return [state]
        out: list = [None] * self.size
        dist.all_gather_object(out, state)
        return out

    def barrier(self) -> None:
        """Wait until every rank gets here (nothing in a single process)."""
        if self.size > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (after a barrier) when one was joined; nothing in a single process."""
        if self.size > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def init_from_env(device: str = "auto") -> World:
    """Join the process group that ``torchrun`` describes in the environment (WORLD_SIZE, RANK,
    LOCAL_RANK, MASTER_ADDR/PORT); a single process otherwise. NCCL on CUDA, gloo on the CPU."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return World(rank, size, dev)
