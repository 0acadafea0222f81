"""Inspect a dataset source: what loads, what is skipped and why, classes, brightness.

Backs ``diffstudio dataset inspect PATH_OR_NAME [--json]``: :func:`inspect_source` returns a
JSON-serialisable dict and :func:`format_inspection` renders it as a text report. A folder is read
through its uint8 pixel cache (the one training uses, built on first use) in chunks
(:mod:`diffstudio.data.stats`), never as a float copy of all its images.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from diffstudio.data.dataset import SkippedFile
from diffstudio.data.errors import DatasetError, LoadCancelled
from diffstudio.data.paths import printable
from diffstudio.data.registry import load_dataset, source_kind
from diffstudio.data.stats import image_stats

HISTOGRAM_BINS = 20


def inspect_source(source: str, resolution: int | None = None,
                   channels: int | None = None) -> dict[str, Any]:
    """Open ``source`` (a folder through its pixel cache) and describe it as a JSON-serialisable dict.

    Keys: source, source_type, name, kind, usable, skipped [{file, reason}], notes (the loader's
    messages: classes dropped, the resolution "native" chose and the sizes found), resolution,
    channels, classes, class_counts, value_range, and for images mean_brightness_histogram
    {edges, counts} of the per-image mean pixel value; for points point_mean and point_std.
    A folder without one usable image gives usable 0 and an ``error`` message instead of
    raising; a source that does not exist raises DatasetError. Every string is valid Unicode:
    file names that are not UTF-8 appear with ``\\xNN`` escapes (:func:`~diffstudio.data.paths.printable`),
    so the dict can be printed to a strict UTF-8 stream and written as JSON.
    """
    origin = source_kind(source)
    try:
        if origin == "folder":
            from diffstudio.data.training_data import open_folder

            dataset = open_folder(source, resolution=resolution, channels=channels, labels=True)
        else:
            dataset = load_dataset(source, resolution, channels, labels=True)
    except LoadCancelled:
        raise
    except DatasetError as exc:
        if not exc.skipped:
            raise
        return _failed_report(source, origin, exc)
    return _report(source, origin, dataset)


def _report(source: str, origin: str, dataset) -> dict[str, Any]:
    """``dataset``: an InMemoryDataset, or a StreamingDataset over a folder's pixel cache."""
    stats = image_stats(dataset) if dataset.kind == "image" else None
    value_range = stats.value_range if stats else (float(dataset.x.min()), float(dataset.x.max()))
    report: dict[str, Any] = {
        "source": printable(source), "source_type": origin, "name": printable(dataset.name),
        "kind": dataset.kind, "usable": len(dataset), "skipped": _skipped(dataset.skipped),
        "notes": [printable(n) for n in dataset.notes],
        "resolution": dataset.resolution, "channels": dataset.channels,
        "classes": [printable(c) for c in dataset.class_names], "class_counts": _class_counts(dataset),
        "value_range": list(value_range),
    }
    if stats is not None:
        report["mean_brightness_histogram"] = means_histogram(stats.means)
    else:
        report["point_mean"] = dataset.x.double().mean(0).tolist()
        report["point_std"] = dataset.x.double().std(0).tolist()
    return report


def _failed_report(source: str, origin: str, exc: DatasetError) -> dict[str, Any]:
    return {
        "source": printable(source), "source_type": origin, "name": printable(source), "kind": "image",
        "usable": 0, "skipped": _skipped(exc.skipped), "notes": [], "resolution": None,
        "channels": None, "classes": [], "class_counts": [], "error": printable(str(exc)),
    }


def _skipped(skipped: list[SkippedFile]) -> list[dict[str, str]]:
    return [{k: printable(v) for k, v in asdict(s).items()} for s in skipped]


def brightness_histogram(x: torch.Tensor, bins: int = HISTOGRAM_BINS) -> dict[str, list]:
    """Histogram of per-image mean pixel value over [-1, 1] of images ``x`` (N, C, H, W) float in
    [-1, 1]: {edges (bins+1), counts (bins)}."""
    return means_histogram(x.double().mean(dim=tuple(range(1, x.ndim))).numpy(), bins)


def means_histogram(means: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, list]:
    """Histogram over [-1, 1] of per-image means ``means`` (N,) (clipped to [-1, 1]), as
    ``torch.histc`` bins them: {edges (bins+1), counts (bins)}."""
    clipped = torch.from_numpy(np.asarray(means, dtype=np.float64)).clamp(-1.0, 1.0)
    counts = torch.histc(clipped, bins=bins, min=-1.0, max=1.0)
    edges = torch.linspace(-1.0, 1.0, bins + 1, dtype=torch.float64)
    return {
        "edges": [round(e, 6) + 0.0 for e in edges.tolist()],  # + 0.0 turns -0.0 into 0.0
        "counts": [int(c) for c in counts],
    }


def _class_counts(dataset) -> list[int]:
    if dataset.labels is None:
        return []
    return torch.bincount(dataset.labels.cpu(), minlength=dataset.num_classes).tolist()


def format_inspection(d: dict[str, Any]) -> str:
    """A readable multi-line report of an :func:`inspect_source` result."""
    lines = [f"Dataset: {d['name']} ({d['source_type']}: {d['source']})", _summary_line(d)]
    if d.get("error"):
        lines.append(f"Error: {d['error']}")
    if d.get("classes"):
        counts = d.get("class_counts") or [None] * len(d["classes"])
        pairs = zip(d["classes"], counts)
        listed = ", ".join(f"{c} ({k})" if k is not None else c for c, k in pairs)
        lines.append(f"Classes ({len(d['classes'])}): {listed}")
    if "value_range" in d:
        lines.append("Value range: [{:.3f}, {:.3f}]".format(*d["value_range"]))
    if "point_mean" in d:
        lines.append(f"Point mean: {_vec(d['point_mean'])}  std: {_vec(d['point_std'])}")
    lines += _histogram_lines(d.get("mean_brightness_histogram"))
    lines += [f"Note: {note}" for note in d.get("notes", [])]
    lines += _skipped_lines(d.get("skipped", []))
    return "\n".join(lines)


def _summary_line(d: dict[str, Any]) -> str:
    if d["kind"] == "points":
        return f"Kind: 2-D points, {d['usable']} usable"
    if d.get("resolution") is None:
        return f"Kind: images, {d['usable']} usable"
    colour = {1: "grey", 3: "RGB"}.get(d["channels"], f"{d['channels']} channels")
    return f"Kind: images, {d['usable']} usable, {d['resolution']}x{d['resolution']} {colour}"


def _histogram_lines(hist: dict[str, list] | None, width: int = 40) -> list[str]:
    if not hist:
        return []
    edges, counts = hist["edges"], hist["counts"]
    peak = max(max(counts), 1)
    lines = [f"Mean brightness per image (-1 black .. 1 white), {len(counts)} bins:"]
    for lo, hi, count in zip(edges[:-1], edges[1:], counts):
        bar = "#" * round(width * count / peak)
        lines.append(f"  [{lo:+.2f}, {hi:+.2f}) {bar} {count}")
    return lines


def _skipped_lines(skipped: list[dict[str, str]]) -> list[str]:
    if not skipped:
        return ["Skipped: none"]
    return [f"Skipped ({len(skipped)}):"] + [f"  {s['file']}: {s['reason']}" for s in skipped]


def _vec(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:+.3f}" for v in values) + ")"
