"""load_dataset: one entry point for built-ins, toys and folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from diffstudio.data import DatasetError, known_names, list_builtin, load_dataset


def test_list_builtin_names_kinds_descriptions() -> None:
    entries = {name: (kind, text) for name, kind, text in list_builtin()}
    assert set(entries) == {"digits", "shapes", "lighting", "lighting-flat",
                            "moons", "swissroll", "checkerboard", "gaussians8"}
    assert entries["shapes"][0] == "image" and entries["moons"][0] == "points"
    assert all(text for _, text in entries.values())
    assert known_names() == [name for name, _, _ in list_builtin()]


def test_builtin_by_name_with_options_and_memo() -> None:
    dataset = load_dataset("shapes", resolution=16, channels=1, n=20, seed=1)
    assert dataset.x.shape == (20, 1, 16, 16) and dataset.num_classes == 4
    assert load_dataset("shapes", resolution=16, channels=1, n=20, seed=1) is dataset
    assert not torch.equal(load_dataset("shapes", resolution=16, channels=1, n=20, seed=2).x, dataset.x)


def test_toy_by_name_ignores_image_options() -> None:
    dataset = load_dataset("gaussians8", resolution=64, channels=3, n=100, seed=0)
    assert dataset.kind == "points" and dataset.x.shape == (100, 2) and dataset.num_classes == 8


def test_labels_false_drops_labels() -> None:
    dataset = load_dataset("digits", labels=False)
    assert dataset.labels is None and dataset.num_classes == 0 and len(dataset) == 1797


def test_progress_called_for_generated() -> None:
    calls: list[tuple[int, int]] = []
    load_dataset("lighting-flat", n=10, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(10, 10)]


def test_folder_path_with_defaults_and_auto_labels(tmp_path: Path, write_file: Callable) -> None:
    write_file(tmp_path / "ds" / "a", "red.png")
    write_file(tmp_path / "ds" / "b", "blue.webp")
    dataset = load_dataset(str(tmp_path / "ds"))  # 12x12 images: "native" is 12 px, not 64
    assert dataset.x.shape == (2, 3, 12, 12) and dataset.class_names == ["a", "b"]
    assert "12 px" in dataset.notes[0] and "12x12 (2)" in dataset.notes[0]
    flat = tmp_path / "flat"
    write_file(flat, "red.png")
    write_file(flat, "green.jpg")
    unlabelled = load_dataset(str(flat), resolution=8, channels=1, n=1)
    assert unlabelled.labels is None and unlabelled.x.shape == (1, 1, 8, 8)


def test_unknown_source_lists_known_names(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset("imagenet")
    message = str(info.value)
    assert "'imagenet'" in message and all(name in message for name in known_names())
    with pytest.raises(DatasetError):
        load_dataset(str(tmp_path / "missing"))


def test_path_like_name_is_a_folder_not_a_builtin(tmp_path: Path, write_file: Callable,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write_file(tmp_path / "digits", "red.png")
    monkeypatch.chdir(tmp_path)
    assert load_dataset("digits").name == "digits" and len(load_dataset("digits")) == 1797
    assert len(load_dataset("./digits", resolution=8)) == 1
