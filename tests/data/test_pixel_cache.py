"""The uint8 pixel cache that training reads: reuse, invalidation, interrupted and resumed builds,
damaged entries, skipped files, and the memory budget that decides device-resident vs streamed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffstudio.data import load_image_folder, pixel_cache
from diffstudio.data.errors import LoadCancelled
from diffstudio.data.folder_scan import scan_folder
from diffstudio.data.pixel_cache import (
    BUILDING, META, PIXELS, build_pixel_cache, entry_path, open_pixel_cache, pixel_cache_key,
)
from diffstudio.data.streaming import StreamingDataset
from diffstudio.data.training_data import AUTO_CPU_CAP, load_training_data, memory_budget

RES = 6
OPTIONS = {"resolution": RES, "channels": 3, "labels": False, "background": [255, 255, 255],
           "max_pixels": 8192 * 8192}


def make_folder(root: Path, count: int, bad: tuple[int, ...] = ()) -> Path:
    """``count`` random 8-bit RGB PNGs named 000.png...; the indices in ``bad`` are not images."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(count):
        path = root / f"{i:03d}.png"
        if i in bad:
            path.write_bytes(b"not a png")
        else:
            Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(path)
    return root


def build(root: Path, **kwargs):
    files, _ = scan_folder(root, labels=False)
    key = pixel_cache_key(root, files, OPTIONS)
    return key, build_pixel_cache(key, files, OPTIONS, **kwargs)


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = pixel_cache.decode_image

    def counting(path, *args):
        calls.append(Path(path).name)
        return real(path, *args)

    monkeypatch.setattr(pixel_cache, "decode_image", counting)
    return calls


def test_cache_holds_the_folders_pixels_as_uint8_and_is_reused(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "f", 7, bad=(3,))
    key, cache = build(folder)
    assert (cache.count, cache.channels, cache.resolution) == (6, 3, RES)
    assert (entry_path(key) / PIXELS).stat().st_size == 6 * 3 * RES * RES  # one byte per value
    assert [Path(s.file).name for s in cache.skipped] == ["003.png"]
    pixels = cache.memmap()
    assert pixels.dtype == np.uint8 and pixels.shape == (6, 3, RES, RES)
    # the same values the float loader gives for these 8-bit files: v / 127.5 - 1
    floats = load_image_folder(folder, RES, 3, use_cache=False).x
    assert torch.equal(torch.from_numpy(np.array(pixels)).float().div(127.5).sub(1.0), floats)
    calls = count_decodes(monkeypatch)
    _, again = build(folder)
    assert calls == [] and np.array_equal(np.array(again.memmap()), np.array(pixels))
    assert again.skipped == cache.skipped


def test_a_changed_folder_gets_a_new_entry_and_the_stale_one_goes(tmp_path, isolated_cache):
    folder = make_folder(tmp_path / "f", 4)
    key_a, _ = build(folder)
    (folder / "001.png").unlink()
    key_b, cache = build(folder)
    assert key_a != key_b and cache.count == 3
    assert sorted(p.name for p in isolated_cache.glob("pixels-*")) == [entry_path(key_b).name]


def test_interrupted_build_resumes_from_its_last_record_and_matches_a_whole_build(tmp_path, monkeypatch):
    monkeypatch.setattr(pixel_cache, "CHUNK", 4)
    folder = make_folder(tmp_path / "f", 11, bad=(2, 9))
    files, _ = scan_folder(folder, labels=False)
    key = pixel_cache_key(folder, files, OPTIONS)
    seen: list[int] = []
    with pytest.raises(LoadCancelled, match="resumes"):
        build_pixel_cache(key, files, OPTIONS, progress=lambda d, t: seen.append(d),
                          should_cancel=lambda: len(seen) > 6)  # during the second chunk
    assert open_pixel_cache(key) is None  # a partial entry is never used
    record = json.loads((entry_path(key) / BUILDING).read_text())
    assert record["done"] == 4 and record["kept"] == 3 and not (entry_path(key) / META).exists()
    calls = count_decodes(monkeypatch)
    progress: list[tuple[int, int]] = []
    resumed = build_pixel_cache(key, files, OPTIONS, progress=lambda d, t: progress.append((d, t)))
    assert calls == [f"{i:03d}.png" for i in range(4, 11)]  # only what was not recorded
    assert progress[0] == (4, 11) and progress[-1] == (11, 11)
    assert not (entry_path(key) / BUILDING).exists()
    monkeypatch.setenv("DIFFSTUDIO_CACHE", str(tmp_path / "fresh"))
    whole = build_pixel_cache(key, files, OPTIONS)
    assert np.array_equal(np.array(resumed.memmap()), np.array(whole.memmap()))
    assert [Path(s.file).name for s in resumed.skipped] == ["002.png", "009.png"] == \
        [Path(s.file).name for s in whole.skipped]


def test_a_partial_build_that_cannot_be_trusted_starts_again(tmp_path, monkeypatch):
    monkeypatch.setattr(pixel_cache, "CHUNK", 2)
    folder = make_folder(tmp_path / "f", 5)
    files, _ = scan_folder(folder, labels=False)
    key = pixel_cache_key(folder, files, OPTIONS)
    with pytest.raises(LoadCancelled):
        build_pixel_cache(key, files, OPTIONS, should_cancel=lambda: True)
    (entry_path(key) / BUILDING).write_text("{ torn")  # killed while writing the record
    calls = count_decodes(monkeypatch)
    cache = build_pixel_cache(key, files, OPTIONS)
    assert len(calls) == 5 and cache.count == 5


@pytest.mark.parametrize("damage", ["meta", "pixels"])
def test_a_damaged_entry_is_rebuilt_never_used(tmp_path, monkeypatch, damage):
    folder = make_folder(tmp_path / "f", 3)
    key, first = build(folder)
    if damage == "meta":
        (entry_path(key) / META).write_text("garbage")
    else:
        with open(entry_path(key) / PIXELS, "r+b") as f:
            f.truncate(10)
    assert open_pixel_cache(key) is None
    calls = count_decodes(monkeypatch)
    _, second = build(folder)
    assert len(calls) == 3 and np.array_equal(np.array(second.memmap()), np.array(first.memmap()))


def test_memory_budget_setting_and_auto():
    assert memory_budget(1.5, torch.device("cpu")) == 3 << 19
    auto = memory_budget(0, torch.device("cpu"))
    assert 0 < auto <= AUTO_CPU_CAP


def test_the_budget_decides_between_device_resident_uint8_and_streaming(tmp_path):
    folder = make_folder(tmp_path / "f", 5)
    size = 5 * 3 * RES * RES
    resident = load_training_data(str(folder), torch.device("cpu"), resolution=RES, channels=3,
                                  memory_budget_mb=size / 2**20)
    assert resident.dataset.x.dtype == torch.uint8 and resident.dataset.nbytes == size
    assert "held on cpu" in resident.placement
    streamed = load_training_data(str(folder), torch.device("cpu"), resolution=RES, channels=3,
                                  memory_budget_mb=(size - 1) / 2**20)
    assert isinstance(streamed.dataset, StreamingDataset) and "streamed" in streamed.placement
    assert torch.equal(streamed.dataset.preview(5), resident.dataset.preview(5))
    streamed.dataset.close()


def test_generated_float_data_stays_float_and_8_bit_levels_become_uint8():
    lighting = load_training_data("lighting", torch.device("cpu"), n=64).dataset
    assert lighting.x.dtype == torch.float32  # quantising would change the data
    levels = torch.randint(0, 256, (4, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    from diffstudio.data.dataset import InMemoryDataset

    floats = InMemoryDataset(x=levels.float() / 127.5 - 1.0)
    packed = floats.as_uint8()
    assert packed.x.dtype == torch.uint8 and packed.nbytes * 4 == floats.nbytes
    for hflip in (False, True):
        a = floats.sample_batch(8, torch.Generator().manual_seed(3), hflip)[0]
        b = packed.sample_batch(8, torch.Generator().manual_seed(3), hflip)[0]
        assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)


def test_a_folder_the_app_has_loaded_fills_the_pixel_cache_without_decoding_again(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "f", 6, bad=(1,))
    loaded = load_image_folder(folder, RES, 3)  # the app's load: writes the uint16 folder cache
    calls = count_decodes(monkeypatch)
    data = load_training_data(str(folder), torch.device("cpu"), resolution=RES, channels=3,
                              memory_budget_mb=1.0).dataset
    assert calls == [] and len(data) == 5
    assert torch.equal(data.preview(5), loaded.x) and [s.file for s in data.skipped] == [s.file for s in loaded.skipped]


def test_a_build_waits_for_another_process_building_the_same_entry(tmp_path, monkeypatch):
    import fcntl
    import threading

    folder = make_folder(tmp_path / "f", 3)
    files, _ = scan_folder(folder, labels=False)
    key = pixel_cache_key(folder, files, OPTIONS)
    lock = entry_path(key).parent / f".pixels-{key}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    calls = count_decodes(monkeypatch)
    with open(lock, "a+b") as held:  # "another process" holds the build lock
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(LoadCancelled, match="another process"):
            build_pixel_cache(key, files, OPTIONS, should_cancel=lambda: True)
        done = []
        waiter = threading.Thread(target=lambda: done.append(build_pixel_cache(key, files, OPTIONS)))
        waiter.start()
        waiter.join(0.6)
        assert waiter.is_alive() and calls == []  # still waiting, nothing decoded
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    waiter.join(30)
    assert done and done[0].count == 3 and len(calls) == 3
