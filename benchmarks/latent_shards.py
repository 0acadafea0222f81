"""What keeping a latent encode's progress on disk costs: ``engine.latents.encode_dataset`` appends
the latents done so far to ``<key>.partial/`` as a shard every ``SHARD_EVERY_S`` (30 s) of encoding.

1. End to end, tiny AutoencoderKL (``latent.py``'s) at 32 px (uint8 images), batch 16, ``hflip``
   on: wall and CPU time of a whole encode (cache entry written) against no shards (the baseline),
   in alternating rounds in one process, ratios against the baseline of the same round.
   a. 4,000 images: a shard every 2 s (15x the shipped cadence) and after every batch (the most
      there can be); b. as many images as 2.5 x 30 s of encoding takes here: the shipped 30 s.
   A fast VAE is the worst case: it makes the most latents per second, so the biggest shards.
2. The shard write itself (``ShardLog.append``: SHA-256, safetensors, fsync, rename) for shards of
   1, 16 and 256 MiB: MiB/s, and from it the overhead at the 30 s cadence for an encoder producing
   latents at a given rate (e.g. an SD-sized VAE on a GPU).

    python benchmarks/latent_shards.py            # full
    python benchmarks/latent_shards.py --quick    # smoke run (figures not meaningful)

Writes benchmarks/results/latent_shards.json.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import _common as C  # noqa: E402
from latent import TINY_VAE, images, save_vae  # noqa: E402

from diffstudio.data.dataset import InMemoryDataset  # noqa: E402
from diffstudio.engine.latents import SHARD_EVERY_S, encode_dataset, load_codec  # noqa: E402
from diffstudio.engine.shard_log import ShardLog  # noqa: E402


def encode_once(codec, data, every: float, work: str) -> dict:
    cache = tempfile.mkdtemp(dir=work)
    os.environ["DIFFSTUDIO_CACHE"] = cache
    shards = []
    real = ShardLog.append

    def counted(self, t):
        shards.append(1)
        return real(self, t)

    ShardLog.append = counted
    try:
        w, c = time.perf_counter(), time.process_time()
        encode_dataset(data, codec, hflip=True, batch_size=16, shard_every_s=every)
        w, c = time.perf_counter() - w, time.process_time() - c
    finally:
        ShardLog.append = real
        shutil.rmtree(cache, ignore_errors=True)
    return {"wall_s": round(w, 3), "cpu_s": round(c, 3), "shards": len(shards)}


def compare(codec, data, cadences: dict[str, float], rounds_n: int, work: str) -> dict:
    """Alternating rounds of whole encodes at each cadence; medians and ratios against the first."""
    rounds = []
    for r in range(rounds_n):
        row = {name: encode_once(codec, data, every, work) for name, every in cadences.items()}
        base = next(iter(row.values()))
        for v in row.values():
            v["wall_ratio"] = round(v["wall_s"] / base["wall_s"], 3)
            v["cpu_ratio"] = round(v["cpu_s"] / base["cpu_s"], 3)
        print(f"  round {r + 1}: " + "; ".join(f"{k}: {v}" for k, v in row.items()), flush=True)
        rounds.append(row)
    median = {k: {m: statistics.median(r[k][m] for r in rounds) for m in rounds[0][k]} for k in cadences}
    print(C.table([[k, v["wall_s"], v["wall_ratio"], v["cpu_ratio"], v["shards"]] for k, v in median.items()],
                  ["cadence", "wall s", "wall / none", "cpu / none", "shards"]))
    return {**median, "rounds": rounds}


def uint8_images(n: int) -> InMemoryDataset:
    """``images(n, 32)`` stored as uint8 (4x less memory), as a folder's pixel cache holds them."""
    return InMemoryDataset(((images(n, 32) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8), name="bench")


def write_rate(mib: int, work: str, repeats: int) -> dict:
    n = mib * 2**20 // (4 * 4 * 32 * 32 * 4)  # rows of 4 names, 4x32x32 float32 each
    t = {k: torch.randn(n, 4, 32, 32) for k in ("mean", "std", "flip_mean", "flip_std")}
    times = []
    for _ in range(repeats):
        folder = tempfile.mkdtemp(dir=work)
        log = ShardLog(os.path.join(folder, "p"), tuple(t))
        t0 = time.perf_counter()
        log.append(t)
        times.append(time.perf_counter() - t0)
        shutil.rmtree(folder)
    s = statistics.median(times)
    return {"shard_mib": mib, "write_s_median": round(s, 4), "mib_per_s": round(mib / s, 1)}


def main() -> None:
    args = C.base_parser(__doc__).parse_args()
    C.set_threads(args.threads)
    quick = args.quick
    work = tempfile.mkdtemp(prefix="dsshards-")
    codec = load_codec(save_vae(os.path.join(work, "tiny"), TINY_VAE))
    n = 96 if quick else 4000
    data = uint8_images(n)
    encode_once(codec, uint8_images(16), math.inf, work)  # warm-up
    out = {"machine": C.machine_info(), "quick": quick, "images": n, "shipped_cadence_s": SHARD_EVERY_S}

    print(f"1a. encode {n} images at 32 px (tiny VAE, hflip), alternating rounds", flush=True)
    out["encode_short"] = compare(codec, data, {"none (baseline)": math.inf, "2 s": 2.0, "every batch": 0.0},
                                  1 if quick else 3, work)
    per_image = out["encode_short"]["none (baseline)"]["wall_s"] / n
    long_n = 200 if quick else int(math.ceil(2.5 * SHARD_EVERY_S / per_image))  # two shards and the rest
    print(f"1b. encode {long_n} images ({2.5 * SHARD_EVERY_S:g} s at the rate of 1a), the shipped cadence", flush=True)
    out["encode_long_images"] = long_n
    out["encode_long"] = compare(codec, uint8_images(long_n), {"none (baseline)": math.inf,
                                                               f"{SHARD_EVERY_S:g} s (shipped)": SHARD_EVERY_S},
                                 1 if quick else 2, work)

    print("2. shard write rate", flush=True)
    out["write"] = [write_rate(m, work, 1 if quick else 3) for m in ((1, 16) if quick else (1, 16, 256))]
    print(C.table([[w["shard_mib"], w["write_s_median"], w["mib_per_s"]] for w in out["write"]],
                  ["shard MiB", "write s", "MiB/s"]))
    rate = out["write"][-1]["mib_per_s"]
    # latents made per second -> one shard per 30 s holds 30 * that; it costs shard / rate seconds
    out["overhead_at_30s_per_mib_per_s_of_latents"] = round(1 / rate, 5)
    print(f"  overhead at the {SHARD_EVERY_S:g} s cadence = (MiB/s of latents made) / {rate} "
          f"(e.g. 100 MiB/s of latents: {100 / rate:.1%})")
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {C.save_json(args.out, 'latent_shards' + ('-quick' if quick else ''), out)}")


if __name__ == "__main__":
    main()
