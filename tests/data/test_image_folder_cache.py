"""The on-disk cache of decoded folders: hits, misses, atomic files, damaged entries."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from diffstudio.data import cache_dir, image_folder, load_image_folder


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoder called although the cache should have been used")

    monkeypatch.setattr(image_folder, "decode_image", fail)


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = image_folder.decode_image

    def counting(path: os.PathLike, *args: object) -> object:
        calls.append(Path(path).name)
        return real(path, *args)

    monkeypatch.setattr(image_folder, "decode_image", counting)
    return calls


def test_cache_dir_follows_environment(isolated_cache: Path) -> None:
    assert cache_dir() == isolated_cache


def test_second_load_reads_cache(mixed_folder: Path, isolated_cache: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_image_folder(mixed_folder, 8, 3, labels=False)
    files = list(isolated_cache.glob("*.safetensors"))
    assert len(files) == 1 and not list(isolated_cache.glob("*.tmp"))  # atomic: no temp left
    forbid_decoding(monkeypatch)
    calls: list[tuple[int, int]] = []
    second = load_image_folder(mixed_folder, 8, 3, progress=lambda d, t: calls.append((d, t)))
    assert torch.equal(first.x, second.x)
    assert second.skipped == first.skipped and second.name == first.name
    assert calls and calls[-1][0] == calls[-1][1]


def test_cache_keeps_labels_and_class_names(tmp_path: Path, write_file: Callable,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    write_file(tmp_path / "d" / "x", "red.png")
    write_file(tmp_path / "d" / "y", "blue.webp")
    write_file(tmp_path / "d" / "y", "text.png")
    first = load_image_folder(tmp_path / "d", 8, 3, labels=True)
    forbid_decoding(monkeypatch)
    second = load_image_folder(tmp_path / "d", 8, 3, labels=True)
    assert second.class_names == ["x", "y"] and second.labels is not None
    assert torch.equal(first.labels, second.labels) and second.skipped == first.skipped


def test_metadata_is_json(mixed_folder: Path, isolated_cache: Path) -> None:
    dataset = load_image_folder(mixed_folder, 8, 3)
    (path,) = isolated_cache.glob("*.safetensors")
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
        assert f.get_tensor("pixels").dtype.name == "uint16"
    assert [s["file"] for s in json.loads(meta["skipped"])] == [s.file for s in dataset.skipped]
    assert json.loads(meta["class_names"]) == []


@pytest.mark.parametrize("change", ["touch", "add", "remove", "options"])
def test_changes_invalidate_cache(tmp_path: Path, write_file: Callable,
                                  monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    folder = tmp_path / "c"
    red = write_file(folder, "red.png")
    write_file(folder, "blue.webp")
    load_image_folder(folder, 8, 3)
    calls = count_decodes(monkeypatch)
    resolution = 8
    if change == "touch":
        os.utime(red, ns=(red.stat().st_atime_ns, red.stat().st_mtime_ns + 10**9))
    elif change == "add":
        write_file(folder, "grey.bmp")
    elif change == "remove":
        red.unlink()
    else:
        resolution = 16
    dataset = load_image_folder(folder, resolution, 3)
    assert calls, "a changed folder or option must be decoded again"
    assert dataset.resolution == resolution
    assert len(dataset) == {"add": 3, "remove": 1}.get(change, 2)
    # a changed listing replaces its stale entry; other options keep their own entry
    assert len(list(cache_dir().glob("*.safetensors"))) == (2 if change == "options" else 1)


def test_damaged_cache_file_is_ignored_and_rewritten(mixed_folder: Path, isolated_cache: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_image_folder(mixed_folder, 8, 3)
    (path,) = isolated_cache.glob("*.safetensors")
    path.write_bytes(b"garbage")
    calls = count_decodes(monkeypatch)
    second = load_image_folder(mixed_folder, 8, 3)
    assert calls and torch.equal(first.x, second.x)
    with safe_open(str(path), framework="np") as f:  # rewritten, readable again
        assert f.get_tensor("pixels").shape[0] == len(first)


def test_use_cache_false_writes_nothing(mixed_folder: Path, isolated_cache: Path) -> None:
    load_image_folder(mixed_folder, 8, 3, use_cache=False)
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir())


def test_unwritable_cache_does_not_stop_loading(mixed_folder: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("DIFFSTUDIO_CACHE", str(blocker))
    assert len(load_image_folder(mixed_folder, 8, 3)) > 0
