"""Nothing encoded is lost on a crash: an encode killed with SIGKILL resumes from its last shard and
gives latents bit-identical to an uninterrupted encode; a damaged shard is encoded again."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffstudio.data.image_folder import load_image_folder
from diffstudio.engine.latents import encode_dataset, latent_cache_dir, load_codec
from diffstudio.engine.shard_log import ShardLog

from tests.helpers import blobs, tiny_vae

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("mean", "std", "flip_mean", "flip_std")

# Encodes the folder in batches of 4 with a shard after every batch; the second encode call of the
# third batch (its mirror images) never returns, so the kill lands mid-batch with two shards written.
CHILD = """
import sys, time
from diffstudio.data.image_folder import load_image_folder
from diffstudio.engine.latents import encode_dataset, load_codec
folder, vae = sys.argv[1:]
codec = load_codec(vae)
calls, encode = [], codec.encode
def parked(x):
    calls.append(1)
    while len(calls) == 6:
        time.sleep(1)
    return encode(x)
codec.encode = parked
encode_dataset(load_image_folder(folder, 16, 3), codec, hflip=True, batch_size=4, shard_every_s=0)
print("finished", flush=True)
"""


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSTUDIO_CACHE", str(tmp_path / "cache"))


def picture_folder(root, count=22):
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
    return root


def kill_when(child, ready, what):
    """SIGKILL ``child`` as soon as ``ready()`` holds (polling the file system)."""
    deadline = time.monotonic() + 120  # a guard against a hang, not a timing assertion
    while not ready():
        if child.poll() is not None:
            pytest.fail(f"the child ended before {what}: {child.communicate()}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"no {what} after 120 s: {child.communicate()}")
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL


def child_env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_an_encode_killed_mid_batch_resumes_from_its_shards_bit_identically(tmp_path):
    folder, vae = picture_folder(tmp_path / "pics"), tmp_path / "vae"
    tiny_vae(vae)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(vae)], env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shards = lambda: sorted(latent_cache_dir().glob("*.partial/[0-9]*.safetensors"))  # noqa: E731
    kill_when(child, lambda: len(shards()) >= 2, "two shards")
    assert [p.name for p in shards()] == ["000000.safetensors", "000001.safetensors"]
    assert not list(latent_cache_dir().glob("*[0-9a-f].safetensors"))  # no complete entry

    data, codec, said = load_image_folder(folder, 16, 3), load_codec(vae), []
    resumed = encode_dataset(data, codec, hflip=True, batch_size=4, say=lambda level, text: said.append(text))
    assert any("resuming after 8 encoded before" in t for t in said), said
    assert any(t.startswith("encoded 14 images") for t in said), said  # 22 - 8: the rest only
    assert not list(latent_cache_dir().glob("*.partial*"))  # the shards became the entry
    assert len(list(latent_cache_dir().glob("*.safetensors"))) == 1

    whole = encode_dataset(data, codec, hflip=True, batch_size=4, cache=False)
    assert resumed.mean.shape == (22, 4, 8, 8)
    for name in NAMES:
        assert torch.equal(getattr(resumed, name), getattr(whole, name)), name


def three_shards(tmp_path):
    """An encode of 20 images cancelled after 3 batches of 4, a shard after each: the data, the
    codec and the shard paths."""
    from diffstudio.data.errors import LoadCancelled

    tiny_vae(tmp_path / "vae")
    codec, data, asked = load_codec(tmp_path / "vae"), blobs(20), []
    with pytest.raises(LoadCancelled, match="cancelled after 12 of 20 images; it resumes from there next time"):
        encode_dataset(data, codec, hflip=True, batch_size=4, shard_every_s=0,
                       should_cancel=lambda: asked.append(1) or len(asked) > 3)
    shards = sorted(latent_cache_dir().glob("*.partial/*.safetensors"))
    assert [p.name for p in shards] == [f"00000{i}.safetensors" for i in range(3)]
    return data, codec, shards


def truncate(p):
    p.write_bytes(p.read_bytes()[:-7])


def flip_last_byte(p):
    b = bytearray(p.read_bytes())
    b[-1] ^= 0x40
    p.write_bytes(bytes(b))


def empty(p):
    p.write_bytes(b"")


@pytest.mark.parametrize("damage", [truncate, flip_last_byte, empty])
@pytest.mark.parametrize("which, kept", [(2, 8), (1, 4)])
def test_a_damaged_shard_and_those_after_it_are_encoded_again(tmp_path, damage, which, kept):
    data, codec, shards = three_shards(tmp_path)
    damage(shards[which])
    said = []
    resumed = encode_dataset(data, codec, hflip=True, batch_size=4, say=lambda level, text: said.append(text))
    assert any(f"resuming after {kept} encoded before" in t for t in said), said
    assert any(t.startswith(f"encoded {20 - kept} images") for t in said), said
    whole = encode_dataset(data, codec, hflip=True, batch_size=4, cache=False)
    for name in NAMES:
        assert torch.equal(getattr(resumed, name), getattr(whole, name)), name


def test_a_shard_out_of_sequence_is_not_trusted(tmp_path):
    log = ShardLog(tmp_path / "log", ("a",))
    log.read()
    log.append({"a": torch.arange(3.0)})
    log.append({"a": torch.arange(3.0, 5.0)})
    (tmp_path / "log" / "000001.safetensors").rename(tmp_path / "log" / "000003.safetensors")  # a gap
    again = ShardLog(tmp_path / "log", ("a",))
    assert torch.equal(again.read()["a"], torch.arange(3.0)) and (again.shards, again.rows) == (1, 3)
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["000000.safetensors"]  # the stray one dropped
    again.append({"a": torch.arange(3.0, 6.0)})
    assert torch.equal(ShardLog(tmp_path / "log", ("a",)).read()["a"], torch.arange(6.0))
    with pytest.raises(ValueError, match="equally long"):
        again.append({"a": torch.zeros(0)})


def test_a_cancelled_partial_from_the_single_file_version_is_adopted(tmp_path):
    """Before the shards, a cancelled encode kept one ``<key>.partial.safetensors``."""
    from safetensors.torch import save_file

    data, codec, shards = three_shards(tmp_path)
    old = ShardLog(shards[0].parent, NAMES).read()
    folder = shards[0].parent
    save_file({k: v[:8].contiguous() for k, v in old.items()}, str(folder.with_suffix(".partial.safetensors")))
    for p in shards:
        p.unlink()
    said = []
    resumed = encode_dataset(data, codec, hflip=True, batch_size=4, say=lambda level, text: said.append(text))
    assert any("resuming after 8 encoded before" in t for t in said), said
    assert not list(latent_cache_dir().glob("*.partial*"))
    whole = encode_dataset(data, codec, hflip=True, batch_size=4, cache=False)
    assert all(torch.equal(getattr(resumed, n), getattr(whole, n)) for n in NAMES)
