"""Loading whole folders: usable and skipped files, labels, progress, cancel, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffstudio.data import DatasetError, LoadCancelled, load_image_folder


def test_mixed_folder_counts_and_skip_reasons(mixed_folder: Path, good_names: list[str],
                                             bad_reasons: dict[str, str]) -> None:
    dataset = load_image_folder(mixed_folder, 16, 3, use_cache=False)
    assert len(dataset) == len(good_names)
    assert dataset.x.shape == (len(good_names), 3, 16, 16) and dataset.x.dtype == torch.float32
    assert dataset.x.min() >= -1.0 and dataset.x.max() <= 1.0
    assert dataset.kind == "image" and dataset.resolution == 16 and dataset.channels == 3
    assert dataset.name == "mixed" and dataset.labels is None and dataset.num_classes == 0
    reasons = {Path(s.file).name: s.reason for s in dataset.skipped}
    assert set(reasons) == set(bad_reasons)  # notes.txt and .hidden.png are ignored, not skipped
    for name, keyword in bad_reasons.items():
        assert keyword in reasons[name], (name, reasons[name])
    for skipped in dataset.skipped:
        assert Path(skipped.file) == mixed_folder / "bad" / Path(skipped.file).name


def test_bomb_reason_names_the_declared_size(tmp_path: Path, write_file: Callable) -> None:
    write_file(tmp_path / "f", "red.png")
    write_file(tmp_path / "f", "bomb.png")  # declares 100000 x 100000 pixels in ~60 bytes
    dataset = load_image_folder(tmp_path / "f", 8, 3, use_cache=False)
    (skipped,) = dataset.skipped
    assert "decompression bomb" in skipped.reason and "10000000000" in skipped.reason


def test_pixel_limit_parameter_rejects_large_images_and_is_restored(tmp_path: Path) -> None:
    folder = tmp_path / "limit"
    folder.mkdir()
    Image.new("RGB", (40, 40), (9, 9, 9)).save(folder / "big.png")  # 1600 pixels
    Image.new("RGB", (20, 20), (9, 9, 9)).save(folder / "small.png")  # 400 pixels
    before = Image.MAX_IMAGE_PIXELS
    dataset = load_image_folder(folder, 8, 3, max_pixels=1000, use_cache=False)
    assert Image.MAX_IMAGE_PIXELS == before
    assert len(dataset) == 1
    assert [Path(s.file).name for s in dataset.skipped] == ["big.png"]
    assert "decompression bomb" in dataset.skipped[0].reason


def test_labels_from_first_level_subfolders(tmp_path: Path, write_file: Callable) -> None:
    root = tmp_path / "pets"
    write_file(root / "dogs", "red.png")
    write_file(root / "dogs" / "puppies", "green.jpg")  # deeper folders count for the first level
    write_file(root / "cats", "blue.webp")
    write_file(root / "cats", "empty.png")
    dataset = load_image_folder(root, 8, 3, labels=True, use_cache=False)
    assert dataset.class_names == ["cats", "dogs"] and dataset.num_classes == 2
    assert dataset.labels is not None and dataset.labels.dtype == torch.int64
    # files sorted by relative path: cats/blue.webp, dogs/puppies/green.jpg, dogs/red.png
    assert dataset.labels.tolist() == [0, 1, 1]
    assert dataset.x[0, 2].mean() > 0.99 and dataset.x[2, 0].mean() > 0.99  # blue cat, red dog


def test_labels_skip_files_outside_class_folders(tmp_path: Path, write_file: Callable) -> None:
    write_file(tmp_path / "root" / "a", "red.png")
    loose = write_file(tmp_path / "root", "green.jpg")
    dataset = load_image_folder(tmp_path / "root", 8, 3, labels=True, use_cache=False)
    assert len(dataset) == 1 and dataset.class_names == ["a"]
    assert [s.file for s in dataset.skipped] == [str(loose)]
    assert "class sub-folder" in dataset.skipped[0].reason


def test_grey_output_shape(mixed_folder: Path, good_names: list[str]) -> None:
    dataset = load_image_folder(mixed_folder, 12, 1, use_cache=False)
    assert dataset.x.shape == (len(good_names), 1, 12, 12) and dataset.channels == 1


def test_progress_reports_done_and_total(mixed_folder: Path, good_names: list[str],
                                         bad_reasons: dict[str, str]) -> None:
    calls: list[tuple[int, int]] = []
    load_image_folder(mixed_folder, 8, 3, progress=lambda d, t: calls.append((d, t)), use_cache=False)
    total = len(good_names) + len(bad_reasons)
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_cancel_raises_and_writes_no_cache(mixed_folder: Path, isolated_cache: Path) -> None:
    with pytest.raises(LoadCancelled, match="cancelled"):
        load_image_folder(mixed_folder, 8, 3, should_cancel=lambda: True)
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir())


def test_empty_folder_raises_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="No image files") as info:
        load_image_folder(tmp_path / "empty", 8, 3)
    assert str(tmp_path / "empty") in str(info.value) and "0 files skipped" in str(info.value)


def test_folder_of_only_bad_files_names_folder_and_skip_count(
    tmp_path: Path, write_file: Callable, bad_reasons: dict[str, str]
) -> None:
    for name in bad_reasons:
        write_file(tmp_path / "bad", name)
    with pytest.raises(DatasetError) as info:
        load_image_folder(tmp_path / "bad", 8, 3)
    message = str(info.value)
    assert str(tmp_path / "bad") in message and f"all {len(bad_reasons)} image file(s)" in message
    assert len(info.value.skipped) == len(bad_reasons)


def test_missing_path_and_file_path_raise(tmp_path: Path, write_file: Callable) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_image_folder(tmp_path / "nope", 8, 3)
    with pytest.raises(DatasetError, match="not a folder"):
        load_image_folder(write_file(tmp_path, "red.png"), 8, 3)


@pytest.mark.parametrize(("resolution", "channels"), [(8, 2), (0, 3)])
def test_bad_options_raise(mixed_folder: Path, resolution: int, channels: int) -> None:
    with pytest.raises(DatasetError):
        load_image_folder(mixed_folder, resolution, channels)


def test_large_photo_downscales_smoothly(tmp_path: Path) -> None:
    folder = tmp_path / "photo"
    folder.mkdir()
    ramp = np.tile(np.linspace(0, 255, 900).astype(np.uint8), (600, 1))
    Image.fromarray(ramp).convert("RGB").save(folder / "ramp.jpg", quality=95)
    x = load_image_folder(folder, 16, 1, use_cache=False).x[0, 0]
    row = x[8]
    assert (row[1:] - row[:-1] > 0).all()  # monotone left-to-right ramp after crop and resize
    assert abs(float(x.mean())) < 0.05  # the centre square of a 0..255 ramp averages mid-grey


@pytest.mark.parametrize("layout,note", [
    ({"": ["red.png"], "a": ["green.jpg"], "b": ["blue.webp"]},
     "no class labels: 1 image(s) lie directly in the folder beside its sub-folders"),
    ({"only": ["red.png", "green.jpg"]}, "no class labels: every image is in the one sub-folder 'only'"),
    ({"": ["red.png", "green.jpg"]}, None),  # a flat folder is unlabelled by design: nothing to say
    ({"a": ["red.png"], "b": ["green.jpg"]}, None),  # labelled
])
def test_a_folder_whose_layout_gives_no_labels_says_so(tmp_path: Path, write_file: Callable, isolated_cache: Path,
                                                        layout: dict, note: str | None) -> None:
    """Before: data.labels (true by default) was silently dropped for these layouts, in training and
    in ``dataset inspect``; the run trained unconditionally without a word."""
    from diffstudio.data.registry import load_dataset
    from diffstudio.data.training_data import load_training_data, open_folder

    root = tmp_path / "pics"
    for sub, names in layout.items():
        for name in names:
            write_file(root / sub if sub else root, name)
    for data in (load_dataset(str(root), 8, 3), load_training_data(str(root), torch.device("cpu"), resolution=8).dataset,
                 open_folder(str(root), resolution=8)):
        said = [n for n in data.notes if "class labels" in n]
        assert said == ([] if note is None else [said[0]]) and (note is None or said[0].startswith(note)), data.notes
        assert (data.num_classes == 2) == (set(layout) == {"a", "b"})
    assert [n for n in load_dataset(str(root), 8, 3, labels=False).notes if "class labels" in n] == []
