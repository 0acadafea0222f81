"""data.vae on data of any size: a folder streamed from its pixel cache is encoded chunk by chunk
into the same latents as the device-resident path, and an encoding that is stopped keeps what it
did and resumes from there."""

import pytest
import torch

from diffstudio.data.errors import LoadCancelled
from diffstudio.data.streaming import StreamingDataset
from diffstudio.engine.latents import encode_dataset, latent_cache_dir, load_codec
from diffstudio.engine.presets import preset
from diffstudio.engine.trainer import Trainer

from tests.helpers import Previews, Said, blobs, folder, latent_config, tiny_vae


pytestmark = pytest.mark.usefixtures("own_cache")


def latent_run(tmp_path, source, vae, name, budget_mb):
    cfg = preset("quickstart").updated(
        data={"source": str(source), "resolution": 16, "channels": 3, "vae": str(vae), "hflip": True,
              "memory_budget_mb": budget_mb, "val_fraction": 0.0},
        model={"class_conditional": False},
        run={"steps": 2, "out_dir": str(tmp_path / "runs"), "name": name, "preview_every": 10_000,
             "checkpoint_every": 10_000, "log_every": 1, "val_every": 0},
        optim={"batch_size": 4, "warmup_steps": 1}, sampling={"num_samples": 2, "steps": 2, "quality_samples": 0})
    trainer = Trainer(cfg, hooks=Said())
    trainer.run()
    return trainer


def test_a_streamed_folder_encodes_to_the_same_latents_as_the_resident_path(tmp_path, monkeypatch):
    """Before: the streamed dataset had no ``.x`` and a latent run over the budget crashed."""
    source, vae = folder(tmp_path / "pics", 20, seed=3, size=(20, 18)), tmp_path / "vae"
    tiny_vae(vae)
    streamed = latent_run(tmp_path, source, vae, "streamed", budget_mb=1e-4)
    assert any("streamed from the cache" in m for m in streamed.hooks.messages)
    monkeypatch.setenv("DIFFSTUDIO_CACHE", str(tmp_path / "cache2"))  # encode again, held in memory
    resident = latent_run(tmp_path, source, vae, "resident", budget_mb=100)
    assert any("held on cpu" in m for m in resident.hooks.messages)
    assert streamed.data.mean.shape == (20, 4, 8, 8)
    for name in ("mean", "std", "flip_mean", "flip_std"):
        torch.testing.assert_close(getattr(streamed.data, name), getattr(resident.data, name), rtol=0, atol=1e-6)


def test_a_stopped_encoding_keeps_its_latents_and_resumes_from_there(tmp_path):
    tiny_vae(tmp_path / "vae")
    codec = load_codec(tmp_path / "vae")
    data = blobs(40)
    whole = encode_dataset(data, codec, hflip=True, batch_size=8, cache=False)
    asked = []

    def stop_after_two_chunks():
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(LoadCancelled, match="cancelled after 16 of 40 images; it resumes from there"):
        encode_dataset(data, codec, hflip=True, batch_size=8, should_cancel=stop_after_two_chunks)
    assert not list(latent_cache_dir().glob("*[0-9a-f].safetensors"))  # no complete entry yet
    assert len(list(latent_cache_dir().glob("*.partial/*.safetensors"))) == 1  # one shard: 16 images
    said = []
    resumed = encode_dataset(data, codec, hflip=True, batch_size=8, say=lambda level, text: said.append(text))
    assert any("resuming after 16 encoded before" in t for t in said)
    assert any("encoded 24 images" in t for t in said)
    assert not list(latent_cache_dir().glob("*.partial*"))  # folded into the entry
    for name in ("mean", "std", "flip_mean", "flip_std"):
        assert torch.equal(getattr(resumed, name), getattr(whole, name))  # bit-identical


@pytest.mark.parametrize("rank, order", [(0, ["encode", "barrier"]), (1, ["barrier", "encode"])])
def test_under_torchrun_rank_0_encodes_while_the_others_wait_for_its_cache(tmp_path, monkeypatch, rank, order):
    """Before: every rank encoded the whole dataset itself at the same time (N times the work)."""
    import diffstudio.engine.latents as latents

    tiny_vae(tmp_path / "vae")
    events = []

    class World:
        is_main = rank == 0

        def barrier(self):
            events.append("barrier")

    real = latents.encode_dataset

    def encode(*args, say=None, **kwargs):
        events.append("encode")
        assert (say is None) == (rank != 0)  # only rank 0 reports
        return real(*args, say=say, **kwargs)

    monkeypatch.setattr(latents, "encode_dataset", encode)
    cfg = preset("quickstart").updated(data={"vae": str(tmp_path / "vae")})
    t = Trainer(cfg, hooks=Said())
    t.world, t.codec = World(), load_codec(tmp_path / "vae")
    out = t._latents(blobs(4))
    assert events == order and out.mean.shape == (4, 4, 8, 8)


def test_dry_run_of_a_latent_run_counts_the_posteriors_and_the_vae(tmp_path):
    """Before: the footprint counted only the latent means (half of what is held, a quarter with
    hflip) as "images", and the VAE kept on the device for previews was left out of the peak."""
    from diffstudio.engine.dry_run import estimate, format_estimate

    vae = tiny_vae(tmp_path / "vae")
    cfg = preset("quickstart").updated(
        data={"source": str(folder(tmp_path / "pics", 20, seed=3, size=(20, 18))), "resolution": 16, "channels": 3, "vae": str(tmp_path / "vae"),
              "hflip": True, "val_fraction": 0.0}, model={"class_conditional": False}, optim={"batch_size": 4})
    e = estimate(cfg, probe_steps=0)
    assert e.data_bytes == 20 * 4 * 8 * 8 * 4 * 4  # mean, std, and both of the mirror images, float32
    assert e.vae_bytes == sum(p.numel() * 4 for p in vae.parameters())
    assert e.peak_bytes >= e.state_bytes + e.activation_bytes + e.data_bytes + e.vae_bytes
    text = format_estimate(e)
    assert "4x8x8 latents" in text and f"VAE {e.vae_bytes / 1024**2:.1f} MiB" in text


def test_a_latent_runs_quality_is_measured_on_decoded_images_and_eval_repeats_it(tmp_path):
    """Before: quality compared latent samples with latent means (a histogram or brightness spread
    of latents, not of images), and ``diffstudio eval`` fed pixel images to the latent model."""
    import json

    from diffstudio.engine.eval_run import evaluate_checkpoint
    from diffstudio.engine.latents import decode_latents
    from diffstudio.engine.quality import reference_items, score_samples
    from diffstudio.engine.sampling import generate, load_for_sampling

    tiny_vae(tmp_path / "vae")
    data = blobs(16)
    cfg = latent_config(tmp_path, tmp_path / "vae", steps=2, val_every=2).updated(
        sampling={"quality_samples": 6, "num_samples": 2, "steps": 4, "sampler": "ddim", "eta": 0.0,
                  "spacing": "trailing"}, data={"val_fraction": 0.25})
    result = Trainer(cfg, run_dir=tmp_path / "run", dataset=data).run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r["quality"] for r in rows if "quality" in r][-1]
    assert set(logged) == {"histogram_distance"}
    # by hand: the same samples, decoded, against the training images (pixels)
    loaded = load_for_sampling(result.run_dir)
    p = generate(loaded.model, loaded.config, loaded.data_info, n=6, seed=cfg.sampling.seed + 1)
    decoded = decode_latents(load_codec(tmp_path / "vae"), torch.from_numpy(p.samples)).numpy()
    from diffstudio.data.split import split_dataset

    _, train, _ = split_dataset(data, 0.25, cfg.data.val_seed, cfg.run.val_items)
    expected = score_samples("blobs", "image", decoded, None, reference_items(train))
    assert logged["histogram_distance"] == pytest.approx(expected["histogram_distance"], abs=1e-6)
    evaluated = evaluate_checkpoint(result.run_dir, dataset=data)
    validation = [r["validation"] for r in rows if "validation" in r][-1]
    assert evaluated["quality"]["histogram_distance"] == pytest.approx(expected["histogram_distance"], abs=1e-6)
    assert evaluated["items"] == 4  # the held-out latents; eval repeats the run's own validation figure
    assert evaluated["x0_mse_mean"] == pytest.approx(validation["x0_mse_mean"], rel=1e-6)


def test_a_run_records_absolute_folders_so_it_samples_and_resumes_from_anywhere(tmp_path, monkeypatch):
    """Before: config.toml kept ``data.vae = "vae"`` as typed, relative to where training started,
    so ``diffstudio sample`` / export / resume from another directory could not find the VAE."""
    from diffstudio import cli
    from diffstudio.engine.run_dir import RunDir

    work = tmp_path / "work"
    folder(work / "pics", 20, seed=3, size=(20, 18))
    tiny_vae(work / "vae")
    monkeypatch.chdir(work)
    code = cli.main(["train", "--preset", "quickstart", "--steps", "1", "--out", str(tmp_path / "run"),
                     "--set", "data.source=pics", "--set", "data.vae=vae", "--set", "data.channels=3",
                     "--set", "data.resolution=16", "--set", "sampling.quality_samples=0", "--set", "run.val_every=0"])
    assert code == 0
    cfg = RunDir(tmp_path / "run").config()
    assert (cfg.data.source, cfg.data.vae) == (str(work / "pics"), str(work / "vae"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sample", str(tmp_path / "run"), "--n", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert cli.main(["train", "--resume", str(tmp_path / "run"), "--steps", "2"]) == 0


def test_a_vae_with_two_latent_channels_trains_and_previews(tmp_path):
    """Before: the latent preview grid broadcast (8, 8, 2) into RGB and the run died at its first preview."""
    from diffusers import AutoencoderKL

    from diffstudio.data.pixels import image_grid

    torch.manual_seed(0)
    AutoencoderKL(in_channels=1, out_channels=1, latent_channels=2, block_out_channels=(8, 8), layers_per_block=1,
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  norm_num_groups=4, sample_size=16).save_pretrained(tmp_path / "vae")
    hooks = Previews()
    result = Trainer(latent_config(tmp_path, tmp_path / "vae", steps=2, preview_every=2), run_dir=tmp_path / "run",
                     dataset=blobs(8, channels=1), hooks=hooks).run()
    assert result.steps == 2 and hooks.previews[-1].samples.shape == (4, 1, 16, 16)  # decoded to the data's images
    two = torch.stack([torch.full((4, 4), -1.0), torch.full((4, 4), 1.0)])[None]  # (1, 2, 4, 4)
    grid = image_grid(two, pad=0)
    assert grid.shape == (4, 4, 3) and (grid == 0).all()  # the first channel, as grey
