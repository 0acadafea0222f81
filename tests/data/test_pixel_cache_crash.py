"""The pixel cache build under ``kill -9``: a build killed mid-chunk resumes from its last recorded
chunk and the entry is byte-identical to an uninterrupted build's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffstudio.data import pixel_cache
from diffstudio.data.pixel_cache import BUILDING, CHUNK, META, PIXELS
from diffstudio.data.training_data import open_folder

ROOT = Path(__file__).resolve().parents[2]
COUNT, BAD = 600, (5, 290, 401)  # three chunks of CHUNK=256, the last short; files that are not images

# Builds the cache of the folder; the progress report of file CHUNK + 100 (in the second chunk, after
# the first chunk's record) never returns, so the kill lands mid-chunk with unrecorded pixels written.
CHILD = """
import sys, time
from diffstudio.data.pixel_cache import CHUNK
from diffstudio.data.training_data import open_folder
def progress(done, total):
    while done == CHUNK + 100:
        time.sleep(1)
open_folder(sys.argv[1], resolution=16, channels=3, progress=progress)
print("finished", flush=True)
"""


def jpeg_folder(root: Path) -> Path:
    """COUNT small JPEGs in two class folders (files BAD are not images), in listing order."""
    rng = np.random.default_rng(11)
    for i in range(COUNT):
        path = root / ("cats" if i < COUNT // 2 else "dogs") / f"{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i in BAD:
            path.write_bytes(b"not a jpeg")
        else:
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path, quality=90)
    return root


def entry(cache_root: Path) -> Path:
    (path,) = (cache_root / "datasets").glob("pixels-*")
    return path


def test_a_build_killed_mid_chunk_resumes_from_its_last_record_byte_identically(tmp_path, monkeypatch):
    assert COUNT > 2 * CHUNK  # the kill lands in the second chunk of three
    folder, cache_root = jpeg_folder(tmp_path / "pics"), tmp_path / "cache"
    monkeypatch.setenv("DIFFSTUDIO_CACHE", str(cache_root))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)

    def recorded() -> int:
        try:
            return json.loads((entry(cache_root) / BUILDING).read_text())["done"]
        except (ValueError, OSError):  # no entry yet, or the record is being replaced
            return 0

    deadline = time.monotonic() + 120  # a guard against a hang, not a timing assertion
    while recorded() < CHUNK:
        assert child.poll() is None, f"the child ended before its first record: {child.communicate()}"
        assert time.monotonic() < deadline, "no record after 120 s"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    path = entry(cache_root)
    record = json.loads((path / BUILDING).read_text())
    assert (record["done"], record["kept"]) == (CHUNK, CHUNK - 1) and not (path / META).exists()

    decoded: list[int] = []
    real = pixel_cache.decode_image
    monkeypatch.setattr(pixel_cache, "decode_image", lambda p, *a: decoded.append(1) or real(p, *a))
    progress: list[int] = []
    resumed = open_folder(str(folder), resolution=16, channels=3, progress=lambda d, t: progress.append(d))
    assert len(decoded) == COUNT - CHUNK and progress[0] == CHUNK  # only the unrecorded files
    assert not (path / BUILDING).exists() and len(resumed) == COUNT - len(BAD)

    monkeypatch.setenv("DIFFSTUDIO_CACHE", str(tmp_path / "whole"))
    whole = open_folder(str(folder), resolution=16, channels=3)
    assert (path / PIXELS).read_bytes() == (entry(tmp_path / "whole") / PIXELS).read_bytes()
    assert (path / META).read_bytes() == (entry(tmp_path / "whole") / META).read_bytes()
    assert np.array_equal(resumed.labels.numpy(), whole.labels.numpy())


class Killed(BaseException):
    """Stands for the process dying at that instant: nothing after it runs."""


def test_a_build_killed_after_its_last_chunk_but_before_meta_decodes_nothing_again(tmp_path, monkeypatch):
    """Before: the pixel file, already cut to the kept images, no longer matched the record's
    "all files" size, so a build killed between that cut and meta.json started again from file 0."""
    folder, cache_root = jpeg_folder(tmp_path / "pics"), tmp_path / "cache"
    monkeypatch.setenv("DIFFSTUDIO_CACHE", str(cache_root))
    real_write = pixel_cache._write_json

    def dies_at_meta(path, value):
        if path.name == META:
            raise Killed
        real_write(path, value)

    monkeypatch.setattr(pixel_cache, "_write_json", dies_at_meta)
    with pytest.raises(Killed):
        open_folder(str(folder), resolution=16, channels=3)
    path = entry(cache_root)
    assert (path / PIXELS).stat().st_size == (COUNT - len(BAD)) * 3 * 16 * 16 and (path / BUILDING).exists()
    monkeypatch.setattr(pixel_cache, "_write_json", real_write)
    decoded: list[int] = []
    real = pixel_cache.decode_image
    monkeypatch.setattr(pixel_cache, "decode_image", lambda p, *a: decoded.append(1) or real(p, *a))
    resumed = open_folder(str(folder), resolution=16, channels=3)
    assert decoded == [] and len(resumed) == COUNT - len(BAD) and (path / META).exists()
    monkeypatch.setenv("DIFFSTUDIO_CACHE", str(tmp_path / "whole"))
    open_folder(str(folder), resolution=16, channels=3)
    assert (path / PIXELS).read_bytes() == (entry(tmp_path / "whole") / PIXELS).read_bytes()
    assert (path / META).read_bytes() == (entry(tmp_path / "whole") / META).read_bytes()
