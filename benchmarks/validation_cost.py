"""What validation and the quality measures cost: the share of a quickstart run's wall time spent
in ``Trainer._validate`` (every ``run.val_every`` steps and at the end) and in
``Trainer._measure_quality`` (at each preview), measured inside one run so that the machine's
load affects the part and the whole alike.

    python benchmarks/validation_cost.py              # the quickstart preset as shipped
    python benchmarks/validation_cost.py --quick      # 300 steps (figures not meaningful)

Writes benchmarks/results/validation_cost.json.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402
from diffstudio.engine.presets import preset  # noqa: E402
from diffstudio.engine.trainer import Trainer  # noqa: E402


class TimedTrainer(Trainer):
    """Adds up the wall time of each validation and each quality measurement."""

    spent = {"validation": 0.0, "quality": 0.0, "preview": 0.0}
    calls = {"validation": 0, "quality": 0}

    def _timed(self, key, fn):
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.spent[key] += time.perf_counter() - t0
            if key in self.calls:
                self.calls[key] += 1

    def _validate(self):
        return self._timed("validation", super()._validate)

    def _measure_quality(self):
        return self._timed("quality", super()._measure_quality)

    def preview(self):
        return self._timed("preview", super().preview)


def main() -> None:
    args = C.base_parser(__doc__).parse_args()
    C.set_threads(args.threads or 1)
    cfg = preset("quickstart").updated(run={"device": "cpu", "out_dir": "/tmp", "name": "bench-validation"})
    if args.quick:
        cfg = cfg.updated(run={"steps": 300})
    import tempfile

    cfg = cfg.updated(run={"out_dir": tempfile.mkdtemp(prefix="dsbench-")})
    t0 = time.perf_counter()
    result = TimedTrainer(cfg).run()
    wall = time.perf_counter() - t0
    s = TimedTrainer.spent
    out = {"machine": C.machine_info(), "steps": result.steps, "wall_s": round(wall, 2),
           "val_every": cfg.run.val_every, "val_items": cfg.run.val_items, "val_times": cfg.run.val_times,
           "validations": TimedTrainer.calls["validation"], "quality_samples": cfg.sampling.quality_samples,
           "quality_measurements": TimedTrainer.calls["quality"],
           "validation_s": round(s["validation"], 3), "quality_s": round(s["quality"], 3),
           "preview_s": round(s["preview"], 3),
           "validation_share": round(s["validation"] / wall, 4), "quality_share": round(s["quality"] / wall, 4),
           "preview_share": round(s["preview"] / wall, 4), "load_average_at_end": C._loadavg(),
           "git": C.git_revision()}
    print(C.table([[k, out[k]] for k in out if k not in ("machine",)], ["figure", "value"]))
    print(f"saved {C.save_json(args.out, 'validation_cost', out)}")


if __name__ == "__main__":
    main()
