"""The app's Dataset panel on a large folder: memory of what it holds, float32 copy vs pixel cache.

What the panel's loading thread does, in a child process each (peak RSS = the child's
``ru_maxrss`` from ``wait4``, which also counts the memory-mapped cache pages it touched):

- ``imports``: the same imports and nothing else (the baseline subtracted below);
- ``cache``: today's path, ``open_folder`` (the uint8 pixel cache: built on the first run, then
  reused) + ``image_stats`` in chunks + a 16-image preview; run twice (build, then reuse);
- ``float32``: the path the panel used before, ``load_dataset`` (float32 copy of every image)
  + per-image means of it.

Prints seconds and peak RSS per part and the ratio of the data-attributable RSS. Usage:
``python benchmarks/app_dataset_memory.py [--count 3000] [--resolution 128]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as C  # noqa: E402  (puts the repository on sys.path)
from streaming import make_folder  # noqa: E402

CHILD = """
import resource, sys, time
import numpy as np, torch
from diffstudio.data.registry import load_dataset
from diffstudio.data.stats import image_stats
from diffstudio.data.training_data import open_folder
part, folder, res = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
if part == "cache":
    ds = open_folder(folder, resolution=res, channels=3)
    means = image_stats(ds).means
    ds.preview(16)
elif part == "float32":
    ds = load_dataset(folder, resolution=res, channels=3)
    means = ds.x.reshape(len(ds), -1).double().mean(1).numpy()
    ds.preview(16)
print("seconds", time.perf_counter() - t0, flush=True)
print("peak", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, flush=True)
"""


def child(part: str, folder: Path, res: int, env: dict) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, part, str(folder), str(res)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = [float(line.split()[1]) for line in text.splitlines() if line.startswith("seconds")]
    return {"part": part, "rc": os.waitstatus_to_exitcode(status), "seconds": round(seconds[0], 2) if seconds else None,
            "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1), **({"output_tail": text[-800:]} if not seconds else {})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--resolution", type=int, default=128)
    args = p.parse_args(argv)
    out = {"machine": C.machine_info(), "count": args.count, "resolution": args.resolution,
           "float32_mb": round(args.count * 3 * args.resolution**2 * 4 / 2**20, 1),
           "uint8_mb": round(args.count * 3 * args.resolution**2 / 2**20, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        out["make_folder_s"] = round(make_folder(folder, args.count), 1)
        env = {**os.environ, "DIFFSTUDIO_CACHE": str(Path(tmp) / "cache"), "PYTHONPATH": str(C.ROOT)}
        runs = [child(part, folder, args.resolution, env) for part in ("imports", "cache", "cache", "float32")]
    base = runs[0]["peak_rss_mb"]
    for run, name in zip(runs, ("imports", "cache (build)", "cache (reuse)", "float32 (before)")):
        print(f"{name:18s} {run['seconds']!s:>7} s  peak RSS {run['peak_rss_mb']:8.1f} MB  "
              f"(+{run['peak_rss_mb'] - base:.1f} MB over the imports)")
    out["runs"] = runs
    over = [r["peak_rss_mb"] - base for r in runs]
    print(f"data of {args.count} images at {args.resolution} px: float32 {out['float32_mb']} MB, uint8 {out['uint8_mb']} MB; "
          f"RSS over the imports, float32 path / cache reuse: {over[3] / max(over[2], 1e-9):.1f}x")
    out["load_average_at_end"] = C._loadavg()
    C.save_json(C.RESULTS, "app_dataset_memory", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
