"""Shared helpers of the benchmark scripts: machine facts, result files, small Pillow figures,
the digits classifier used as a sample-quality judge, and a Trainer runner.

Benchmarks print figures and write ``benchmarks/results/<name>.json`` (and PNGs); they never
assert on timings. Pillow is the only drawing dependency (matplotlib is not a project dependency).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the figures were measured on (including how busy the machine was)."""
    import torch

    info = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_average_at_start": _loadavg(),
        "cpu_bf16_flags": _cpu_bf16_flags(),
    }
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    return info


def _cpu_bf16_flags() -> list[str]:
    """The CPU's bf16/AMX flags from /proc/cpuinfo (AMX makes bf16 convolutions much faster than
    AVX512-BF16 alone, so a bf16 figure means little without them); [] where there is none."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text(errors="replace").split())
    except OSError:
        return []
    return sorted(f for f in flags if f.startswith("amx") or f in ("avx512_bf16", "avx512f"))


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(int(n))


def base_parser(doc: str | None):
    import argparse

    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run in under a minute (figures not meaningful)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default=str(RESULTS), help="folder for the JSON/PNG results")
    return p


# --------------------------------------------------------------------------------------- results


def save_json(out_dir: str | os.PathLike, name: str, data: dict[str, Any]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def watch_marks(stream, marks: dict[str, str], t0: float, *, until: str | None = None,
                deadline: float = math.inf) -> tuple[dict[str, float], str]:
    """Read a child's output pipe: seconds since ``t0`` until each regex in ``marks`` first matched.
    Stops at end of output, at ``deadline`` (a perf_counter time) or once the mark ``until`` is seen.
    Returns (seen, everything read as text)."""
    seen: dict[str, float] = {}
    buf = b""
    while time.perf_counter() < deadline:
        chunk = os.read(stream.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
        now = time.perf_counter() - t0
        text = buf.decode("utf-8", "replace")
        for key, pattern in marks.items():
            if key not in seen and re.search(pattern, text):
                seen[key] = round(now, 3)
        if until is not None and until in seen:
            break
    return seen, buf.decode("utf-8", "replace")


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain fixed-width text table."""
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(header)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


@contextmanager
def stopwatch(into: dict, key: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        into[key] = round(into.get(key, 0.0) + time.perf_counter() - t0, 3)


def peak_rss_mb() -> float:
    """This process's peak resident set size (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


# --------------------------------------------------------------------------------------- training


def train(cfg, *, hooks=None, dataset=None, out_dir: str | None = None, name: str = "run", device: str = "cpu"):
    """Run the engine's Trainer on ``cfg`` (on ``device``, the CPU unless told) in a temporary folder;
    returns (trainer, result, seconds)."""
    from diffstudio.engine.trainer import Trainer

    out_dir = out_dir or tempfile.mkdtemp(prefix="dsbench-")
    cfg = cfg.updated(run={"out_dir": out_dir, "name": name, "device": device})
    trainer = Trainer(cfg, hooks=hooks, dataset=dataset)
    t0, c0 = time.perf_counter(), time.process_time()
    result = trainer.run()
    trainer.bench_cpu_seconds = time.process_time() - c0  # CPU time of this process (all threads)
    return trainer, result, time.perf_counter() - t0


def ema_model(trainer):
    """The weights previews use (EMA when enabled), in eval mode."""
    model = trainer.ema.module if trainer.ema is not None else trainer.model
    return model.eval()


# --------------------------------------------------------------------------------------- digits judge


class DigitsJudge:
    """A scikit-learn LogisticRegression trained on 75 % of the real 8x8 digits (pixels mapped to
    [-1, 1] exactly as the built-in dataset does); the other 25 % give the real-data reference."""

    def __init__(self, C: float = 10.0, seed: int = 0, threshold: float = 0.9):
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split

        d = load_digits()
        x = d.images.reshape(len(d.images), -1).astype(np.float64) / 8.0 - 1.0
        xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.25, random_state=seed, stratify=d.target)
        self.threshold = threshold
        self.clf = LogisticRegression(C=C, max_iter=5000).fit(xtr, ytr)
        self.held_out = self.score(xte, yte)

    def score(self, samples, requested=None) -> dict[str, float]:
        """``samples`` (N, 64) or (N, 1, 8, 8) in [-1, 1]; ``requested`` (N,) class labels or None.

        recognized: top-class probability >= threshold; as_requested: recognized and the top class is
        the requested one; argmax_as_requested: the top class is the requested one (any confidence)."""
        x = np.clip(np.asarray(samples, dtype=np.float64).reshape(len(samples), -1), -1.0, 1.0)
        x = np.nan_to_num(x)
        p = self.clf.predict_proba(x)
        conf, top = p.max(1), p.argmax(1)
        out = {"recognized": float((conf >= self.threshold).mean()), "mean_confidence": float(conf.mean())}
        if requested is not None:
            req = np.asarray(requested)
            out["as_requested"] = float(((conf >= self.threshold) & (top == req)).mean())
            out["argmax_as_requested"] = float((top == req).mean())
        return out


# --------------------------------------------------------------------------------------- figures (Pillow)

BG, FG, GRID = (255, 255, 255), (20, 20, 20), (210, 210, 210)
PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]


def _font(size: int = 13):
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def image_tile(grid_uint8: np.ndarray, scale: int = 2):
    from PIL import Image

    img = Image.fromarray(grid_uint8)
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)


def histogram(values_list: Sequence[np.ndarray], labels: Sequence[str], *, lo: float = -1.0, hi: float = 1.0,
              bins: int = 20, size: tuple[int, int] = (520, 220), title: str = "", outline_first: bool = True):
    """Overlaid density histograms; the first series (e.g. the data) is drawn as an outline."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, BG)
    d = ImageDraw.Draw(img)
    f = _font(12)
    left, right, top, bottom = 40, w - 10, 22, h - 28
    edges = np.linspace(lo, hi, bins + 1)
    dens = [np.histogram(np.clip(v, lo, hi), edges, density=True)[0] for v in values_list]
    ymax = max(1e-9, max(float(x.max()) for x in dens)) * 1.1
    d.rectangle([left, top, right, bottom], outline=GRID)
    bw = (right - left) / bins
    for k, (dn, lab) in enumerate(zip(dens, labels)):
        colour = PALETTE[k % len(PALETTE)] if k else (0, 0, 0)
        for i, v in enumerate(dn):
            x0, x1 = left + i * bw, left + (i + 1) * bw
            y = bottom - (bottom - top) * v / ymax
            if k == 0 and outline_first:
                d.line([(x0, y), (x1, y)], fill=colour, width=2)
            else:
                inset = 2 + 2 * k
                d.rectangle([x0 + inset, y, x1 - inset, bottom], fill=colour)
        d.text((left + 6 + 150 * k, top - 18), lab, fill=colour, font=f)
    for xv in (lo, 0.5 * (lo + hi), hi):
        px = left + (xv - lo) / (hi - lo) * (right - left)
        d.text((px - 10, bottom + 4), f"{xv:g}", fill=FG, font=f)
    if title:
        d.text((left, bottom + 14), title, fill=FG, font=f)
    return img


def line_plot(series: dict[str, tuple[Sequence[float], Sequence[float]]], *, title: str, xlabel: str,
              ylabel: str, size: tuple[int, int] = (520, 300), logx: bool = True, ylim: tuple[float, float] | None = None):
    """Lines with point markers; x on a log2 axis by default."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, BG)
    d = ImageDraw.Draw(img)
    f = _font(12)
    left, right, top, bottom = 52, w - 150, 26, h - 36
    xs_all = [x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys if y is not None and math.isfinite(y)]
    tx = (lambda x: math.log2(x)) if logx else (lambda x: x)
    x0, x1 = tx(min(xs_all)), tx(max(xs_all))
    y0, y1 = ylim if ylim else (min(0.0, min(ys_all)), max(ys_all) * 1.05 if ys_all else 1.0)
    px = lambda x: left + (tx(x) - x0) / max(1e-9, x1 - x0) * (right - left)  # noqa: E731
    py = lambda y: bottom - (min(max(y, y0), y1) - y0) / max(1e-9, y1 - y0) * (bottom - top)  # noqa: E731
    d.rectangle([left, top, right, bottom], outline=GRID)
    d.text((left, 4), title, fill=FG, font=f)
    for xv in sorted(set(xs_all)):
        d.text((px(xv) - 6, bottom + 4), f"{xv:g}", fill=FG, font=f)
    for yv in np.linspace(y0, y1, 5):
        d.text((4, py(yv) - 7), f"{yv:.2f}", fill=FG, font=f)
        d.line([(left, py(yv)), (right, py(yv))], fill=GRID)
    d.text((left + (right - left) // 2 - 30, bottom + 18), xlabel, fill=FG, font=f)
    for k, (name, (xs, ys)) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        pts = [(px(x), py(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        for p in pts:
            d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=colour)
        d.text((right + 8, top + 16 * k), name, fill=colour, font=f)
    d.text((right + 8, bottom - 14), ylabel, fill=FG, font=f)
    return img


def caption(text: str, width: int, height: int = 22):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), BG)
    ImageDraw.Draw(img).text((6, 4), text, fill=FG, font=_font(13))
    return img


def stack(images: Iterable, *, horizontal: bool = False, pad: int = 8):
    """Paste images in a row or a column on white."""
    from PIL import Image

    images = list(images)
    if horizontal:
        w, h = sum(i.width for i in images) + pad * (len(images) + 1), max(i.height for i in images) + 2 * pad
    else:
        w, h = max(i.width for i in images) + 2 * pad, sum(i.height for i in images) + pad * (len(images) + 1)
    out = Image.new("RGB", (w, h), BG)
    pos = pad
    for i in images:
        out.paste(i, (pos, pad) if horizontal else (pad, pos))
        pos += (i.width if horizontal else i.height) + pad
    return out


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return rev + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
