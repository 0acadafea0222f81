"""A wrong ``model.init_from`` or ``data.vae`` is one error before a folder is decoded into its
cache (or encoded), not after; what only the data can tell is checked once they are loaded."""

import pytest

from diffstudio.engine.config import Config, ConfigError
from diffstudio.engine.pretrained import InitFromError
from diffstudio.engine.trainer import Trainer

from tests.helpers import Said, blobs, folder, latent_config, tiny_unet, tiny_vae


pytestmark = pytest.mark.usefixtures("own_cache")


def trainer(tmp_path, **data):
    cfg = Config().updated(data={"source": str(folder(tmp_path / "pics", 6)), "val_fraction": 0.0, **data},
                           run={"steps": 1, "out_dir": str(tmp_path / "runs"), "val_every": 0},
                           sampling={"quality_samples": 0, "num_samples": 2}, optim={"batch_size": 2})
    return Trainer(cfg, hooks=Said())


def nothing_decoded(tmp_path, t):
    return not (tmp_path / "cache" / "datasets").exists() and not any("decoded" in m for m in t.hooks.messages)


@pytest.mark.parametrize("case", ["vae folder", "missing", "text file", "pickles", "resolution", "channels"])
def test_a_wrong_init_from_is_refused_before_the_folder_is_decoded(tmp_path, case):
    unet = tiny_unet(channels=3, size=16)
    source = {"vae folder": tmp_path / "vae", "missing": tmp_path / "nope", "text file": tmp_path / "a.txt",
              "pickles": tmp_path / "bin"}.get(case, tmp_path / "unet")
    tiny_vae(tmp_path / "vae")
    (tmp_path / "a.txt").write_text("not a model")
    unet.save_pretrained(tmp_path / "bin", safe_serialization=False)
    unet.save_pretrained(tmp_path / "unet")
    data = {"resolution": {"resolution": 8}, "channels": {"channels": 1}}.get(case, {})
    t = trainer(tmp_path, **data)
    t.config = t.config.updated(model={"init_from": str(source)})
    expected = {"vae folder": "holds an AutoencoderKL, not a UNet2DModel (a VAE goes into data.vae)",
                "missing": "does not exist", "text file": "neither a diffusers UNet2DModel folder",
                "pickles": "pickle", "resolution": "built for 16 px images (sample_size), the data give 8 px",
                "channels": "takes 3-channel 16 px images (predicts 3 channels), the data give 1-channel images:"
                            " set data.channels"}[case]
    with pytest.raises(InitFromError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        t.run()
    assert nothing_decoded(tmp_path, t)


@pytest.mark.parametrize("data, expected", [
    ({"resolution": 17}, r"downsamples by 2; 17 px is not a multiple: set data.resolution to one \(e.g. 16 or 18\)"),
    ({"channels": 1}, "the VAE takes 3-channel images and the data have 1"),
])
def test_images_the_vae_cannot_take_are_refused_before_the_folder_is_decoded(tmp_path, data, expected):
    tiny_vae(tmp_path / "vae")
    t = trainer(tmp_path, vae=str(tmp_path / "vae"), **data)
    with pytest.raises(ConfigError, match=expected):
        t.run()
    assert nothing_decoded(tmp_path, t)


def test_latents_the_pretrained_model_cannot_take_are_refused_before_encoding(tmp_path):
    """The latent channels are known from the VAE at once; the native resolution (20 px) only once
    the folder is decoded, but still before any encoding."""
    tiny_vae(tmp_path / "vae")
    tiny_unet(channels=3, size=16).save_pretrained(tmp_path / "pixel-unet")  # a pixel model: known at once
    t = trainer(tmp_path, vae=str(tmp_path / "vae"))
    t.config = t.config.updated(model={"init_from": str(tmp_path / "pixel-unet")})
    with pytest.raises(InitFromError, match="takes 3-channel 16 px latents .* the data give 4-channel latents"):
        t.run()
    assert nothing_decoded(tmp_path, t)
    tiny_unet(channels=4, size=16).save_pretrained(tmp_path / "latent-unet")  # for 32 px images, not 20
    t.config = t.config.updated(model={"init_from": str(tmp_path / "latent-unet")})
    with pytest.raises(InitFromError, match="built for 16 px latents .* the data give 10 px latents: set "
                                            "data.resolution"):
        t.run()
    assert any("decoded" in m for m in t.hooks.messages)
    assert not (tmp_path / "cache" / "latents").exists() and not any("encod" in m for m in t.hooks.messages)


def test_a_built_in_dataset_reports_no_cache_decoding(tmp_path):
    cfg = Config().updated(data={"source": "moons", "val_fraction": 0.0}, run={
        "steps": 1, "out_dir": str(tmp_path), "val_every": 0}, sampling={"quality_samples": 0, "num_samples": 2})
    t = Trainer(cfg, hooks=Said())
    t.run()
    assert not any("images decoded" in m for m in t.hooks.messages)
    assert any(m.startswith("data: moons") for m in t.hooks.messages)


def test_a_checkpoints_weight_file_points_to_its_folder(tmp_path):
    """A checkpoint's model.safetensors holds no architecture; the message names the folder that does."""
    from diffstudio.engine.pretrained import read_pretrained

    cfg = Config().updated(data={"source": "moons", "val_fraction": 0.0}, run={
        "steps": 1, "out_dir": str(tmp_path), "val_every": 0}, sampling={"quality_samples": 0, "num_samples": 2})
    run = Trainer(cfg, hooks=Said()).run()
    step = tmp_path / run.run_dir / "checkpoints" / "step-000001"
    with pytest.raises(InitFromError, match=f"give its checkpoint folder {step}$"):
        read_pretrained(step / "model.safetensors")
    assert read_pretrained(step).kind == "mlp"


def test_a_model_for_non_square_images_is_named_by_its_size(tmp_path):
    """Before: "was built for -1 px images" for sample_size [16, 32]."""
    import json

    tiny_unet(channels=3, size=16).save_pretrained(tmp_path / "unet")
    cfg_file = tmp_path / "unet" / "config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "sample_size": [16, 32]}))
    t = trainer(tmp_path, resolution=16)
    t.config = t.config.updated(model={"init_from": str(tmp_path / "unet")})
    with pytest.raises(InitFromError, match=r"built for 16x32 images \(sample_size \[16, 32\]\); diffstudio trains "
                                            r"on square images$"):
        t.run()


def test_fine_tuning_a_latent_run_without_its_vae_names_the_vae(tmp_path):
    """Before: "set data.channels / data.resolution" (data.channels cannot be 4), and a guessed
    channel count of the data in the message; a run folder without checkpoints got the whole
    list of what init_from accepts."""
    tiny_vae(tmp_path / "vae")
    latent = Trainer(latent_config(tmp_path, tmp_path / "vae", steps=1, val_every=0), run_dir=tmp_path / "latent",
                     dataset=blobs(8)).run()
    t = trainer(tmp_path, resolution=16)
    t.config = t.config.updated(model={"init_from": latent.run_dir})
    with pytest.raises(InitFromError, match=f"trained on the latents of the VAE {tmp_path / 'vae'} \\(4-channel 8 px\\) "
                                            f"and the data give 16 px images: set data.vae={tmp_path / 'vae'}$"):
        t.run()
    assert nothing_decoded(tmp_path, t)
    (tmp_path / "empty-run" / "checkpoints").mkdir(parents=True)
    t.config = t.config.updated(model={"init_from": str(tmp_path / "empty-run")})
    with pytest.raises(InitFromError, match="empty-run is a run folder without any complete checkpoint yet$"):
        t.run()
