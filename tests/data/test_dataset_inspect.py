"""inspect_source / format_inspection: the data behind `diffstudio dataset inspect`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from diffstudio.data import DatasetError, format_inspection, inspect_source


def test_folder_report_lists_usable_and_skipped(mixed_folder: Path, good_names: list[str],
                                                bad_reasons: dict[str, str]) -> None:
    report = inspect_source(str(mixed_folder), resolution=16)
    json.dumps(report)  # JSON-serialisable
    assert report["source_type"] == "folder" and report["kind"] == "image"
    assert report["usable"] == len(good_names) and report["resolution"] == 16
    assert report["channels"] == 3 and report["classes"] == []
    reasons = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == set(bad_reasons)
    hist = report["mean_brightness_histogram"]
    assert len(hist["edges"]) == len(hist["counts"]) + 1 and sum(hist["counts"]) == len(good_names)
    text = format_inspection(report)
    assert f"{len(good_names)} usable" in text and "16x16 RGB" in text
    for name, keyword in bad_reasons.items():
        assert any(name in line and keyword in line for line in text.splitlines())


def test_builtin_report_has_classes_and_flat_lighting_histogram() -> None:
    shapes = inspect_source("shapes")
    assert shapes["classes"] == ["circle", "square", "triangle", "star"]
    assert shapes["class_counts"] == [1000] * 4 and shapes["skipped"] == []
    lighting = inspect_source("lighting")
    counts = lighting["mean_brightness_histogram"]["counts"]
    assert sum(counts) == 4096 and min(counts) > 0.7 * 4096 / len(counts)
    text = format_inspection(lighting)
    assert "Mean brightness" in text and "Skipped: none" in text


def test_toy_report_has_point_statistics() -> None:
    report = inspect_source("swissroll")
    json.dumps(report)
    assert report["kind"] == "points" and report["resolution"] is None
    assert "mean_brightness_histogram" not in report and len(report["point_std"]) == 2
    assert "2-D points" in format_inspection(report)


def test_folder_without_usable_images_reports_error(tmp_path: Path, write_file: Callable) -> None:
    write_file(tmp_path / "bad", "empty.png")
    write_file(tmp_path / "bad", "text.png")
    report = inspect_source(str(tmp_path / "bad"))
    json.dumps(report)
    assert report["usable"] == 0 and len(report["skipped"]) == 2 and "error" in report
    assert "Error: No usable image" in format_inspection(report)


def test_missing_source_raises() -> None:
    with pytest.raises(DatasetError, match="neither a built-in"):
        inspect_source("/no/such/folder/anywhere")


def test_a_folder_is_inspected_from_its_pixel_cache_in_chunks(tmp_path: Path, monkeypatch) -> None:
    """No float32 copy of the folder: the report reads the uint8 cache (the one training uses), and
    its histogram and value range equal those of the float32 images."""
    import numpy as np
    from PIL import Image

    import diffstudio.data.registry as registry
    import diffstudio.data.stats as stats
    from diffstudio.data.inspect import brightness_histogram
    from diffstudio.data.pixel_cache import entry_path

    rng = np.random.default_rng(1)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(12):
        level = rng.integers(0, 256)
        pixels = np.clip(rng.normal(level, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    full = registry.load_dataset(str(folder), resolution=16)  # the reference float32 copy

    def no_float_copy(*args, **kwargs):
        raise AssertionError("inspect decoded the folder into a float32 dataset")

    monkeypatch.setattr(registry, "_load_folder", no_float_copy)
    monkeypatch.setattr(stats, "CHUNK_BYTES", 3 * 16 * 16 * 5)  # 5 images a chunk: 3 chunks
    report = inspect_source(str(folder), resolution=16)
    assert report["usable"] == 12
    assert report["mean_brightness_histogram"] == brightness_histogram(full.x)
    assert report["value_range"] == [float(full.x.min()), float(full.x.max())]
    assert any(p.name.startswith("pixels-") for p in entry_path("x").parent.iterdir())  # the cache was built
    from diffstudio.data.training_data import open_folder

    chunks = list(stats.pixel_chunks(open_folder(str(folder), resolution=16)))
    assert [len(c) for c in chunks] == [5, 5, 2] and all(c.dtype == np.uint8 for c in chunks)
