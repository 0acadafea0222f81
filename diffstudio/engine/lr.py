"""The learning-rate schedule, and how it continues when a run's length changes on resume.

The plan of a fresh run is linear warm-up over ``optim.warmup_steps``, then a half cosine from
``optim.lr`` down to the floor ``FLOOR * optim.lr`` at ``run.steps`` (or ``optim.lr`` throughout
for ``lr_schedule = "constant"``). Resuming with a different ``run.steps`` (extending a finished
run, or shortening one) must not restart or stretch that cosine, which makes the rate jump. From
the resume step ``s`` it instead follows an :class:`LrSegment`: a half cosine from the rate the
old plan had reached at ``s`` down to the same floor at the new ``run.steps``. The segment is stored
in the checkpoint's meta (``lr_segment``), so a further resume continues it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

FLOOR = 0.1
"""The cosine decays to this fraction of ``optim.lr``."""


@dataclass(frozen=True)
class LrSegment:
    """From ``start_step`` on, a half cosine from ``start_lr`` to the floor at ``end_step``."""

    start_step: int
    start_lr: float
    end_step: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (stored in a checkpoint's meta)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "LrSegment | None":
        """The segment stored in a checkpoint's meta, or None (none stored, or unreadable)."""
        if not isinstance(d, dict):
            return None
        try:
            seg = cls(int(d["start_step"]), float(d["start_lr"]), int(d["end_step"]))
        except (KeyError, TypeError, ValueError):
            return None
        return seg if math.isfinite(seg.start_lr) and seg.start_lr > 0 else None


def _half_cosine(start: float, end: float, progress: float) -> float:
    """``end + (start - end) * (1 + cos(pi p)) / 2`` with ``p`` clamped to [0, 1]."""
    p = min(1.0, max(0.0, progress))
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * p))


def lr_at(step: int, cfg, segment: LrSegment | None = None) -> float:
    """The learning rate used for training step ``step`` (0-based: the step that makes the
    model's ``step + 1``-th update). Linear warm-up, then cosine decay to ``FLOOR * lr`` at
    ``cfg.run.steps`` (Loshchilov & Hutter 2017, SGDR without restarts), or constant; from
    ``segment.start_step`` on, the segment's cosine. ``cfg``: a Config."""
    o, total = cfg.optim, cfg.run.steps
    if segment is not None and step >= segment.start_step:
        span = max(1, segment.end_step - segment.start_step)
        return _half_cosine(segment.start_lr, FLOOR * o.lr, (step - segment.start_step) / span)
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.lr_schedule == "constant":
        return o.lr
    return _half_cosine(o.lr, FLOOR * o.lr, (step - o.warmup_steps) / max(1, total - o.warmup_steps))


def continue_schedule(step: int, old_cfg, old_segment: LrSegment | None, new_cfg) -> tuple[LrSegment | None, str | None]:
    """The segment to train with after resuming at ``step`` with ``new_cfg``, and a message when
    the plan changed (None when it did not).

    ``old_cfg`` and ``old_segment`` are what the checkpoint was trained with. The plan changes
    only when the run's length differs from the one the old plan decays to, the schedule is
    cosine and warm-up is over (during warm-up the rate does not depend on the length, so the
    plain schedule over the new length is already continuous)."""
    old_end = old_segment.end_step if old_segment is not None else old_cfg.run.steps
    new_end = new_cfg.run.steps
    if new_end == old_end or new_cfg.optim.lr_schedule == "constant" or step >= new_end:
        return old_segment, None
    if step < new_cfg.optim.warmup_steps and old_segment is None:
        return None, None
    current = lr_at(step, old_cfg, old_segment)
    floor = FLOOR * new_cfg.optim.lr
    segment = LrSegment(step, current, new_end)
    how = "extended" if new_end > old_end else "shortened"
    return segment, (f"run {how} from {old_end} to {new_end} steps: from step {step} the learning rate decays "
                     f"from its current {current:.3g} to the schedule's floor {floor:.3g} over the "
                     f"{new_end - step} remaining steps (the cosine is not restarted)")


__all__ = ["FLOOR", "LrSegment", "continue_schedule", "lr_at"]
