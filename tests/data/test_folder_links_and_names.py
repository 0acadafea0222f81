"""Awkward folders: symbolic links (loops, duplicates), classes without usable images, file names
that are not UTF-8, and the resolution "native" picks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffstudio.data.image_folder import load_image_folder
from diffstudio.data.inspect import format_inspection, inspect_source
from diffstudio.data.native_size import NATIVE_MAX_RESOLUTION, choose_native_resolution
from diffstudio.data.paths import from_portable, is_encodable, printable, to_portable
from diffstudio.data.registry import load_dataset

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX links and byte file names")

CAFE = os.fsdecode(b"caf\xe9")  # Latin-1 'café': not valid UTF-8, so a str with a lone surrogate
NAIVE = os.fsdecode(b"na\xefve.png")


def _png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (12, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def awkward(tmp_path: Path) -> Path:
    """data-café/ with cats (3 images, one of them reached twice, one with a non-UTF-8 name, a
    link loop), dogs -> ../elsewhere/dogs (2 images), birds (only a broken file), fish (empty)."""
    root = tmp_path / f"data-{CAFE}"
    for i in range(2):
        _png(root / "cats" / f"c{i}.png", (200, 40 * i, 0))
        _png(tmp_path / "elsewhere" / "dogs" / f"d{i}.png", (0, 40 * i, 200))
    _png(root / "cats" / NAIVE, (90, 90, 20))
    (root / "cats" / "again.png").symlink_to("c0.png")
    (root / "cats" / "loop").symlink_to("..")
    (root / "dogs").symlink_to(tmp_path / "elsewhere" / "dogs")
    (root / "birds").mkdir()
    (root / "birds" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "fish").mkdir()
    return root


def test_symlinked_class_folder_is_followed_and_empty_classes_dropped(awkward: Path) -> None:
    dataset = load_image_folder(awkward, 8, 3, labels=True, use_cache=False)
    assert dataset.class_names == ["cats", "dogs"]  # birds dropped, fish never a class
    assert len(dataset) == 5
    assert np.bincount(dataset.labels.numpy()).tolist() == [3, 2]  # renumbered 0..1
    notes = "\n".join(dataset.notes)
    assert "class 'birds' dropped" in notes and "labels renumbered" in notes
    assert "'fish' holds no image files" in notes


def test_links_loops_and_duplicates_are_listed_as_skipped(awkward: Path) -> None:
    dataset = load_image_folder(awkward, 8, 3, labels=True, use_cache=False)
    reasons = {Path(s.file).name: s.reason for s in dataset.skipped}
    assert "symbolic link loop" in reasons["loop"]
    assert "same file as cats/c0.png" in reasons["again.png"]  # the real file wins over the link
    assert "truncated" in reasons["broken.png"]
    assert len(dataset.skipped) == 3


def test_a_second_link_to_a_class_folder_is_listed_once(tmp_path: Path) -> None:
    _png(tmp_path / "d" / "a" / "x.png", (255, 0, 0))
    _png(tmp_path / "d" / "b" / "y.png", (0, 0, 255))
    (tmp_path / "d" / "a" / "to_b").symlink_to("../b")  # deep link to a sibling class
    (tmp_path / "d" / "c").symlink_to("b")
    (tmp_path / "d" / "b" / "gone.png").symlink_to("missing.png")
    dataset = load_image_folder(tmp_path / "d", 8, 3, labels=True, use_cache=False)
    assert dataset.class_names == ["a", "b"] and np.bincount(dataset.labels.numpy()).tolist() == [1, 1]
    reasons = {Path(s.file).name: s.reason for s in dataset.skipped}
    assert reasons["to_b"].startswith("same folder as") and reasons["c"].startswith("same folder as")
    assert "broken symbolic link" in reasons["gone.png"]


def test_non_utf8_names_are_printable_everywhere(awkward: Path) -> None:
    os.rename(awkward / "dogs", awkward / CAFE)  # a class folder whose name is not UTF-8
    dataset = load_image_folder(awkward, 8, 3, labels=True, use_cache=False)
    assert dataset.class_names == ["caf\\xe9", "cats"] and dataset.name == "data-caf\\xe9"
    texts = [dataset.name, *dataset.class_names, *dataset.notes]
    texts += [t for s in dataset.skipped for t in (s.file, s.reason)]
    assert all(is_encodable(t) for t in texts)
    report = inspect_source(str(awkward))
    json.dumps(report, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    format_inspection(report).encode("utf-8")


def test_cached_load_gives_the_same_classes_notes_and_skips(awkward: Path) -> None:
    first = load_image_folder(awkward, 8, 3, labels=True)
    second = load_image_folder(awkward, 8, 3, labels=True)
    assert second.class_names == first.class_names and second.notes == first.notes
    assert second.skipped == first.skipped and bool((second.labels == first.labels).all())


def test_dataset_inspect_cli_on_a_strict_utf8_stdout(awkward: Path) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": os.pathsep.join(sys.path)}
    run = [sys.executable, "-m", "diffstudio", "dataset", "inspect", os.fsencode(awkward)]
    text = subprocess.run(run, env=env, capture_output=True, timeout=120)
    assert text.returncode == 0, text.stderr.decode(errors="replace")
    out = text.stdout.decode("utf-8")  # strict: the output is valid UTF-8
    assert "5 usable" in out and "cats (3), dogs (2)" in out and "data-caf\\xe9" in out
    assert "Skipped (3):" in out and "class 'birds' dropped" in out
    as_json = subprocess.run(run + ["--json"], env=env, capture_output=True, timeout=120)
    assert as_json.returncode == 0, as_json.stderr.decode(errors="replace")
    report = _strict_json(as_json.stdout.decode("utf-8"))
    assert report["usable"] == 5 and report["classes"] == ["cats", "dogs"] and report["class_counts"] == [3, 2]
    assert report["name"] == "data-caf\\xe9" and len(report["skipped"]) == 3


def test_printable_and_portable_forms() -> None:
    assert printable(f"/d/{CAFE}/x.png") == "/d/caf\\xe9/x.png" and printable("/d/café") == "/d/café"
    uri = to_portable(f"/d/{CAFE}")
    assert uri == "file:///d/caf%E9" and is_encodable(uri)
    assert from_portable(uri) == f"/d/{CAFE}" and to_portable("/d/café") == "/d/café"
    assert from_portable("digits") == "digits"
    with pytest.raises(ValueError, match="another host"):
        from_portable("file://server/share/x")


def test_a_file_uri_loads_the_folder_it_names(awkward: Path) -> None:
    by_path = load_dataset(str(awkward), resolution=8)
    by_uri = load_dataset(to_portable(str(awkward)), resolution=8)
    assert len(by_uri) == len(by_path) == 5 and by_uri.class_names == by_path.class_names


# -- resolution "native" -----------------------------------------------------------------------


def test_native_never_upscales_and_names_the_sizes(tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / "f" / f"small{i}.png", (200, 100, 50), (48, 40))
    _png(tmp_path / "f" / "big.png", (10, 100, 50), (100, 100))
    dataset = load_dataset(str(tmp_path / "f"))  # resolution None: "native"
    assert dataset.resolution == 40
    assert "40 px" in dataset.notes[0] and "48x40 (3)" in dataset.notes[0] and "100x100 (1)" in dataset.notes[0]
    explicit = load_dataset(str(tmp_path / "f"), resolution=64)  # explicit: as asked, and said
    assert explicit.resolution == 64
    assert explicit.notes == ["3 of 4 images are smaller than 64 px and are upscaled (smallest square side "
                              "40 px; sizes found: 48x40 (3), 100x100 (1))"]
    assert load_dataset(str(tmp_path / "f"), resolution=40).notes == []


def test_native_caps_large_images_and_says_so(tmp_path: Path) -> None:
    _png(tmp_path / "f" / "photo.png", (10, 100, 50), (300, 200))
    dataset = load_dataset(str(tmp_path / "f"))
    assert dataset.resolution == NATIVE_MAX_RESOLUTION
    assert "300x200 (1)" in dataset.notes[0] and "downscaled" in dataset.notes[0]


def test_choose_native_resolution_rules() -> None:
    choice = choose_native_resolution([(48, 40), None, (64, 64), (48, 40)])
    assert choice.resolution == 40 and choice.sizes == {(48, 40): 2, (64, 64): 1}
    assert choose_native_resolution([(1000, 800)], cap=32).resolution == 32
    assert choose_native_resolution([None]).resolution == NATIVE_MAX_RESOLUTION
    many = choose_native_resolution([(w, w) for w in range(10, 20)])
    assert many.resolution == 10 and "and 5 more size(s)" in many.note
    with pytest.raises(ValueError):
        choose_native_resolution([(8, 8)], cap=0)


def test_native_never_picks_less_than_training_takes(tmp_path: Path) -> None:
    """Before: a folder of 5x3 images trained at 3 px, below data.resolution's own minimum (4)."""
    import diffstudio.engine.config  # noqa: F401 - registers the settings
    from diffstudio.engine.settings import by_name

    minimum = by_name()["data.resolution"].spec.ge
    choice = choose_native_resolution([(5, 3)] * 9 + [(8, 8)])
    assert choice.resolution == minimum == 4
    assert "9 of 10 images are smaller and are upscaled" in choice.note
    for i in range(3):
        _png(tmp_path / "small" / f"{i}.png", (10 * i, 0, 0), (5, 3))
    assert load_dataset(str(tmp_path / "small")).resolution == 4


# -- end to end: a 2-step training run on the awkward folder ----------------------------------


def test_two_step_training_run_on_the_awkward_folder(awkward: Path, tmp_path: Path) -> None:
    from diffstudio.engine.checkpoint import load_checkpoint
    from diffstudio.engine.config import Config
    from diffstudio.engine.presets import preset
    from diffstudio.engine.trainer import Trainer

    cfg = preset("quickstart").updated(
        data={"source": str(awkward)},
        run={"steps": 2, "preview_every": 2, "checkpoint_every": 2, "log_every": 1, "name": "",
             "out_dir": str(tmp_path / "runs"), "device": "cpu"},
        optim={"batch_size": 4}, sampling={"num_samples": 4, "steps": 2})
    result = Trainer(cfg).run()
    run = Path(result.run_dir)
    assert result.steps == 2 and run.name == "data-caf-xe9"  # the folder's base name, valid UTF-8
    meta = load_checkpoint(run).meta
    assert meta["data_info"] == {"kind": "image", "channels": 3, "resolution": 12, "num_classes": 2}
    saved = Config.load(run / "config.toml")  # valid UTF-8 TOML: the name is written as a file: URI
    assert saved.data.source == to_portable(str(awkward)) and saved.data.source.startswith("file://")
    again = load_dataset(saved.data.source, labels=True)
    assert len(again) == 5 and again.class_names == ["cats", "dogs"] and len(again.skipped) == 3
