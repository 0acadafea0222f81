"""data.vae: a dataset is encoded once into cached VAE posteriors, the model trains on latents,
previews decode to images of the data's size, and the export (UNet + VAE + scheduler) samples in
diffusers exactly what diffstudio samples."""

import json

import numpy as np
import pytest
import torch

from diffstudio import cli
from diffstudio.data.latents import LatentDataset
from diffstudio.engine.config import ConfigError
from diffstudio.engine.export import export
from diffstudio.engine.latents import decode_preview, encode_dataset, load_codec
from diffstudio.engine.sampling import generate, load_for_sampling, start_noise
from diffstudio.engine.trainer import Trainer

from tests.helpers import Previews, blobs, latent_config, tiny_vae

pytestmark = pytest.mark.usefixtures("own_cache")


def test_codec_scales_and_shifts_like_diffusers(tmp_path):
    vae = tiny_vae(tmp_path / "vae")
    codec = load_codec(tmp_path / "vae")
    x = blobs(4).x
    mean, std = codec.encode(x)
    with torch.no_grad():
        post = vae.encode(x).latent_dist
        assert torch.allclose(mean, (post.mean - 0.1) * 0.5) and torch.allclose(std, post.std * 0.5)
        assert torch.allclose(codec.decode(mean), vae.decode(post.mean).sample, atol=1e-6)
    assert (codec.latent_channels, codec.factor, tuple(mean.shape)) == (4, 2, (4, 4, 8, 8))


def test_latent_batches_follow_the_pixel_stream_and_sample_the_posterior():
    data = blobs(32)
    x = data.x
    same = LatentDataset(x, torch.zeros_like(x), flip_mean=x.flip(-1), flip_std=torch.zeros_like(x))
    for hflip in (False, True):  # std 0: the same indices and flips as the pixel path
        ours, _ = same.sample_batch(8, torch.Generator().manual_seed(5), hflip)
        theirs, _ = data.sample_batch(8, torch.Generator().manual_seed(5), hflip)
        assert torch.equal(ours, theirs)
    one = LatentDataset(torch.full((1, 4, 2, 2), 0.5), torch.full((1, 4, 2, 2), 2.0))
    z, _ = one.sample_batch(20_000, torch.Generator().manual_seed(0))
    assert abs(float(z.mean()) - 0.5) < 0.03 and abs(float(z.std()) - 2.0) < 0.03
    shard0, _ = one.sample_batch(4, torch.Generator().manual_seed(1), shard=(0, 2))
    whole, _ = one.sample_batch(8, torch.Generator().manual_seed(1))
    assert torch.equal(shard0, whole[:4])


def test_encode_train_preview_export_and_diffusers_samples_the_same_images(tmp_path):
    tiny_vae(tmp_path / "pipe" / "vae")  # a pipeline folder's vae/
    cfg = latent_config(tmp_path, tmp_path / "pipe")
    data, hooks = blobs(16), Previews()
    result = Trainer(cfg, run_dir=tmp_path / "run", dataset=data, hooks=hooks).run()
    held_out = round(16 * cfg.data.val_fraction)  # the validation split is encoded apart
    assert result.steps == 5 and any(f"encoding {16 - held_out} images" in m for m in hooks.messages)
    # the held-out items' encoding says so (the app shows the last message: '... 1 images' read as the data)
    latent_messages = [m for m in hooks.messages if "encoding" in m]
    assert latent_messages[-1].startswith("validation items: encoding") and f"{held_out} images" in latent_messages[-1]
    assert not latent_messages[0].startswith("validation")
    preview = hooks.previews[-1]
    assert preview.samples.shape == (4, 3, 16, 16)  # decoded: the data's size, not the latents' 8x8
    assert preview.grid.shape == (2 * 17 + 1, 2 * 17 + 1, 3) and preview.mean_brightness.shape == (4,)
    assert preview.trajectory[0][1].shape == (3, 16, 16)
    from diffstudio.engine.run_dir import RunDir

    assert RunDir(result.run_dir).config().data.vae == str(tmp_path / "pipe")

    again = Previews()  # a second run reads the cache instead of encoding
    Trainer(cfg.updated(run={"steps": 1}), run_dir=tmp_path / "run2", dataset=data, hooks=again).run()
    assert any("read from the cache" in m for m in again.messages)
    assert not any("encoding" in m for m in again.messages)

    out = export(result.run_dir, "diffusers", tmp_path / "exported")
    assert {p.name for p in out.iterdir()} >= {"unet", "vae", "scheduler", "model_index.json", "diffstudio.json"}
    assert json.loads((out / "diffstudio.json").read_text())["latent"]["shift_factor"] == pytest.approx(0.1)
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(out / "unet", use_safetensors=True).eval()
    vae = AutoencoderKL.from_pretrained(out / "vae", use_safetensors=True).eval()
    scheduler = DDIMScheduler.from_pretrained(out / "scheduler")
    loaded = load_for_sampling(result.run_dir)
    z = start_noise(loaded.data_info, 3, seed=7, device="cpu")
    scheduler.set_timesteps(10)
    with torch.no_grad():
        for t in scheduler.timesteps:
            z = scheduler.step(unet(z, t).sample, t, z, eta=0.0).prev_sample
        theirs = vae.decode(z / vae.config.scaling_factor + vae.config.shift_factor).sample
    ours = decode_preview(generate(loaded.model, loaded.config, loaded.data_info, n=3, seed=7),
                          load_codec(cfg.data.vae)).samples
    assert ours.shape == tuple(theirs.shape) == (3, 3, 16, 16)
    assert np.abs(ours - theirs.numpy()).max() < 1e-4


def test_cli_sample_of_a_latent_run_writes_decoded_images(tmp_path):
    tiny_vae(tmp_path / "vae")
    cfg = latent_config(tmp_path, tmp_path / "vae", steps=2)
    result = Trainer(cfg, run_dir=tmp_path / "run", dataset=blobs(16)).run()
    code = cli.main(["sample", result.run_dir, "--n", "4", "--steps", "3", "--out", str(tmp_path / "s.png"),
                     "--npy", str(tmp_path / "s.npy")])
    assert code == 0 and np.load(tmp_path / "s.npy").shape == (4, 3, 16, 16)


def test_data_that_do_not_fit_the_vae_are_one_clear_error(tmp_path):
    tiny_vae(tmp_path / "vae")
    codec = load_codec(tmp_path / "vae")
    with pytest.raises(ConfigError, match="data.vae: the VAE takes 3-channel images and the data have 1"):
        encode_dataset(blobs(4, channels=1), codec)
    with pytest.raises(ConfigError, match="downsamples by 2; 15 px"):
        encode_dataset(blobs(4, size=15), codec)
    from diffusers import AutoencoderKL

    AutoencoderKL(block_out_channels=(8,), norm_num_groups=4).save_pretrained(tmp_path / "bin", safe_serialization=False)
    with pytest.raises(ConfigError, match="pickle"):
        load_codec(tmp_path / "bin")
    with pytest.raises(ConfigError, match="not an AutoencoderKL"):
        from diffusers import UNet2DModel

        UNet2DModel(block_out_channels=(8, 8), norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
                    up_block_types=("UpBlock2D",) * 2).save_pretrained(tmp_path / "unet")
        load_codec(tmp_path / "unet")


def test_a_folder_streamed_from_its_cache_encodes_to_the_latents_of_the_same_folder_held_in_memory(tmp_path):
    """A folder over the memory budget (a StreamingDataset, no ``.x``) is encoded in chunks from its
    pixel cache: same cache key and same posteriors as the device-resident uint8 copy."""
    from PIL import Image

    from diffstudio.data.streaming import StreamingDataset
    from diffstudio.data.training_data import load_training_data
    from diffstudio.engine.latents import cache_key

    rng = np.random.default_rng(2)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    tiny_vae(tmp_path / "vae")
    codec = load_codec(tmp_path / "vae")
    held = load_training_data(str(folder), torch.device("cpu"), resolution=16, memory_budget_mb=1.0).dataset
    streamed = load_training_data(str(folder), torch.device("cpu"), resolution=16, memory_budget_mb=1e-4).dataset
    assert isinstance(streamed, StreamingDataset) and held.x.dtype == torch.uint8
    assert cache_key(streamed, codec, True) == cache_key(held, codec, True)
    a = encode_dataset(held, codec, hflip=True, cache=False)
    b = encode_dataset(streamed, codec, hflip=True, cache=False)
    for name in ("mean", "std", "flip_mean", "flip_std"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.mean.shape == (6, 4, 8, 8)


def test_the_latent_shape_is_read_from_the_config_alone_as_the_loaded_vae_has_it(tmp_path):
    from diffusers import UNet2DModel

    from diffstudio.models.vae import VaeError, load_vae, read_latent_geometry

    tiny_vae(tmp_path / "vae", channels=1)
    codec = load_vae(tmp_path / "vae")
    geometry = read_latent_geometry(tmp_path / "vae")
    assert geometry == (codec.in_channels, codec.latent_channels, codec.factor) == (1, 4, 2)
    z, _ = codec.encode(torch.zeros(1, 1, 8, 8))
    assert tuple(z.shape[1:]) == (4, 8 // 2, 8 // 2)  # the factor is the real downsampling
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    unet.save_pretrained(tmp_path / "u")
    with pytest.raises(VaeError, match="model.init_from"):
        read_latent_geometry(tmp_path / "u")
