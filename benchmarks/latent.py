"""Latent diffusion (``data.vae``) on this machine: encode time per 1,000 images and training
steps/s on latents, with a tiny AutoencoderKL and with a Stable-Diffusion-sized one (random weights;
nothing is downloaded).

1. Encode: seconds per 1,000 images (posterior mean and std, ``engine.latents.encode_images``,
   batch 8), for the tiny VAE at 32 px and the SD-sized VAE (SD 1.x/2.x's AutoencoderKL config:
   block_out_channels 128-256-512-512, 2 layers per block, 4 latent channels, 83.7 M parameters)
   at 128 and 256 px. The SD-sized VAE is too slow on a 2-core CPU for 1,000 images: it encodes a
   few images and the figure is scaled (said in the output). Also the decode time per image (the
   previews' cost).
2. Training steps/s of the tiny UNet, batch 32, in the engine (``Trainer``): on pixels (32 px RGB,
   the baseline), on the tiny VAE's latents of the same images (16 px x 4 channels, encoded by
   the Trainer itself and then read from the cache), and on SD-sized latents of 256 px images
   (32 px x 4 channels; posteriors given as a ``LatentDataset``, since encoding enough 256 px images
   with the big VAE would take long; the per-step work does not depend on how they were made).
   Two rounds, the three runs in turn; ratios against the pixel baseline of the same round.

    python benchmarks/latent.py            # full
    python benchmarks/latent.py --quick    # smoke run (figures not meaningful)

Writes benchmarks/results/latent.json.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import _common as C  # noqa: E402
from diffstudio.data.dataset import InMemoryDataset  # noqa: E402
from diffstudio.data.latents import LatentDataset  # noqa: E402
from diffstudio.engine.config import Config  # noqa: E402
from diffstudio.engine.trainer import TrainerHooks  # noqa: E402

SD_VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32,
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              scaling_factor=0.18215, sample_size=512)
TINY_VAE = dict(block_out_channels=(16, 32), layers_per_block=1, latent_channels=4, norm_num_groups=8,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                scaling_factor=0.5, sample_size=32)


def save_vae(folder: str, spec: dict) -> str:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, **spec).save_pretrained(folder, safe_serialization=True)
    return folder


def images(n: int, size: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    low = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=size, mode="bilinear").contiguous()


def encode_figures(name: str, folder: str, size: int, n: int) -> dict:
    from diffstudio.engine.latents import decode_latents, encode_images, load_codec

    codec = load_codec(folder)
    x = images(n, size)
    encode_images(codec, x[:1])  # warm-up
    t0 = time.perf_counter()
    mean, _ = encode_images(codec, x, batch_size=8)
    enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    decode_latents(codec, mean[: min(n, 2)], batch_size=8)
    dec = (time.perf_counter() - t0) / min(n, 2)
    params = sum(p.numel() for p in codec.vae.parameters())
    row = {"vae": name, "params_M": round(params / 1e6, 2), "image_px": size, "images_measured": n,
           "latent_shape": list(mean.shape[1:]), "encode_s_per_1000": round(enc / n * 1000, 1),
           "scaled_from": n if n < 1000 else None, "decode_s_per_image": round(dec, 4)}
    print(f"  {name:>9} {size:>4} px: encode {row['encode_s_per_1000']:>9.1f} s / 1000 images "
          f"(measured on {n}{', scaled' if n < 1000 else ''}), decode {dec * 1000:.0f} ms / image", flush=True)
    return row


class _Rate(TrainerHooks):
    def __init__(self):
        self.rows = []

    def on_metrics(self, step, m):
        self.rows.append(m["steps_per_s"])


def train_rate(cfg: Config, dataset, steps: int) -> float:
    hooks = _Rate()
    C.train(cfg.updated(run={"steps": steps, "log_every": max(1, steps // 4), "preview_every": 10**9,
                             "checkpoint_every": 10**9}), hooks=hooks, dataset=dataset)
    return statistics.median(hooks.rows[1:] or hooks.rows)  # the first window includes warm-up


def main() -> None:
    args = C.base_parser(__doc__).parse_args()
    C.set_threads(args.threads)
    quick = args.quick
    work = tempfile.mkdtemp(prefix="dslatent-")
    os.environ.setdefault("DIFFSTUDIO_CACHE", os.path.join(work, "cache"))
    tiny = save_vae(os.path.join(work, "tiny"), TINY_VAE)
    sd = save_vae(os.path.join(work, "sd"), SD_VAE)
    out = {"machine": C.machine_info(), "quick": quick}

    print("1. encode time", flush=True)
    out["encode"] = [encode_figures("tiny", tiny, 32, 64 if quick else 1000),
                     encode_figures("SD-sized", sd, 128, 2 if quick else 8),
                     encode_figures("SD-sized", sd, 256, 1 if quick else 4)]

    print("2. training steps/s (tiny UNet, batch 32)", flush=True)
    steps = 8 if quick else 24
    base = Config().updated(
        data={"source": "bench", "labels": False}, model={"preset": "tiny", "class_conditional": False},
        objective={"parameterization": "v"}, optim={"batch_size": 32, "warmup_steps": 5},
        run={"threads": args.threads or 0})
    pixels = InMemoryDataset(images(256, 32), name="bench")
    g = torch.Generator().manual_seed(1)
    sd_latents = LatentDataset(torch.randn(256, 4, 32, 32, generator=g), 0.1 * torch.rand(256, 4, 32, 32, generator=g))
    rounds = []
    for r in range(1 if quick else 2):
        row = {"pixels_32px": train_rate(base, pixels, steps),
               "tiny_vae_latents_16px": train_rate(base.updated(data={"vae": tiny}), pixels, steps),
               "sd_latents_32px_of_256px_images": train_rate(base, sd_latents, steps)}
        row = {k: round(v, 2) for k, v in row.items()}
        row["ratios"] = {k: round(v / row["pixels_32px"], 3) for k, v in row.items() if k != "pixels_32px"}
        print(f"  round {r + 1}: {row}", flush=True)
        rounds.append(row)
    out["training_rounds"] = rounds
    keys = [k for k in rounds[0] if k != "ratios"]
    out["training_median_steps_per_s"] = {k: statistics.median(r[k] for r in rounds) for k in keys}
    out["training_median_ratio"] = {k: statistics.median(r["ratios"][k] for r in rounds) for k in rounds[0]["ratios"]}
    print(C.table([[k, v] for k, v in out["training_median_steps_per_s"].items()], ["run", "steps/s (median)"]))
    print(f"wrote {C.save_json(args.out, 'latent' + ('-quick' if quick else ''), out)}")


if __name__ == "__main__":
    main()
