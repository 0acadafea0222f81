"""A corpus of damaged image files, generated here: each is skipped with a reason or fully decoded.

The rule under test (issue 10): an image is usable only when it decoded completely. So a file is
used exactly when Pillow's own complete decode (``Image.open(f).load()``) succeeds, a file whose
pixel data is intact gives the intact image's pixels, and nothing is ever used half-decoded
(a zeroed IDAT used to train as an all-black image).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffstudio.data.decode import decode_image
from diffstudio.data.errors import ImageDecodeError
from diffstudio.data.image_folder import load_image_folder

RES = 16
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow, on damaged TIFF


def _intact_pixels() -> np.ndarray:
    """A 64x64 RGB gradient with noise, every value >= 64: no region of it is black."""
    y, x = np.mgrid[0:64, 0:64]
    base = np.stack([64 + 2 * x, 64 + 2 * y, 64 + x + y], axis=-1)
    noise = np.random.default_rng(0).integers(0, 60, base.shape)
    return np.clip(base + noise, 64, 255).astype(np.uint8)


def _encode(fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_intact_pixels()).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_chunks(data: bytes) -> dict[bytes, tuple[int, int]]:
    """Chunk type -> (offset of its length field, data length), first occurrence."""
    chunks, i = {}, 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i:i + 4])
        chunks.setdefault(data[i + 4:i + 8], (i, length))
        i += 12 + length
    return chunks


def png_bad_idat_crc() -> bytes:
    data = bytearray(_encode("PNG"))
    start, length = _png_chunks(bytes(data))[b"IDAT"]
    crc = start + 8 + length
    data[crc:crc + 4] = bytes(b ^ 0xFF for b in data[crc:crc + 4])
    return bytes(data)


def png_bad_ihdr_crc() -> bytes:
    data = bytearray(_encode("PNG"))
    start, length = _png_chunks(bytes(data))[b"IHDR"]
    data[start + 8 + length] ^= 0xFF
    return bytes(data)


def png_zeroed_idat() -> bytes:
    """The case of the issue: bytes zeroed inside the compressed stream (CRC left as it was)."""
    data = bytearray(_encode("PNG"))
    start, length = _png_chunks(bytes(data))[b"IDAT"]
    lo = start + 8 + 20
    data[lo:lo + min(64, length - 40)] = bytes(min(64, length - 40))
    return bytes(data)


def png_without_iend() -> bytes:
    data = _encode("PNG")
    return data[: _png_chunks(data)[b"IEND"][0]]


def jpeg_truncated_scan() -> bytes:
    data = _encode("JPEG", quality=90)
    scan = data.find(b"\xff\xda")
    return data[: scan + (len(data) - scan) // 2]


def jpeg_corrupt_huffman_markers() -> bytes:
    """Entropy-coded bytes overwritten with 0xFF / 0x00 (spurious markers in the scan)."""
    data = bytearray(_encode("JPEG", quality=90))
    scan = data.find(b"\xff\xda") + 30
    for k in range(scan, scan + 200, 7):
        data[k] = 0xFF if data[k] != 0xFF else 0
    return bytes(data)


def jpeg_corrupt_huffman_noise() -> bytes:
    """Entropy-coded bytes replaced by random bytes: libjpeg may decode these to garbage."""
    data = bytearray(_encode("JPEG", quality=90))
    scan = data.find(b"\xff\xda") + 40
    data[scan:scan + 360] = np.random.default_rng(1).integers(0, 255, 360, dtype=np.uint8).tobytes()
    return bytes(data)


def _half(fmt: str, **options: object) -> Callable[[], bytes]:
    def make() -> bytes:
        data = _encode(fmt, **options)
        return data[: len(data) // 2]

    return make


@dataclass(frozen=True)
class Case:
    name: str  # file name: the extension is what the folder scan sees
    make: Callable[[], bytes]
    expect: str  # "skip": must be skipped; "use": must be used; "pillow": used iff Pillow decodes it fully
    reason: str = ""  # a word the skip reason must contain
    intact_data: bool = False  # when used, its pixels must equal the intact file's


CORPUS = [
    Case("png_bad_idat_crc.png", png_bad_idat_crc, "pillow", intact_data=True),
    Case("png_bad_ihdr_crc.png", png_bad_ihdr_crc, "skip", "not a readable image"),
    Case("png_zeroed_idat.png", png_zeroed_idat, "skip", "broken data stream"),
    Case("png_without_iend.png", png_without_iend, "pillow", intact_data=True),
    Case("jpeg_truncated_scan.jpg", jpeg_truncated_scan, "skip", "truncated"),
    Case("jpeg_huffman_markers.jpg", jpeg_corrupt_huffman_markers, "skip", "broken data stream"),
    Case("jpeg_huffman_noise.jpg", jpeg_corrupt_huffman_noise, "pillow"),
    Case("gif_truncated.gif", _half("GIF"), "skip", "truncated"),
    Case("webp_truncated.webp", _half("WEBP", quality=90), "skip", "corrupt"),
    Case("webp_lossless_truncated.webp", _half("WEBP", lossless=True), "skip", "corrupt"),
    Case("tiff_truncated.tif", _half("TIFF"), "skip", "truncated"),
    Case("tiff_deflate_truncated.tiff", _half("TIFF", compression="tiff_deflate"), "skip", "not a readable"),
    Case("png_named.jpg", lambda: _encode("PNG"), "use", intact_data=True),
    Case("jpeg_named.png", lambda: _encode("JPEG", quality=90), "use"),
]


def _pillow_decodes_fully(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.load()
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for case in CORPUS:
        (folder / case.name).write_bytes(case.make())
    (folder / "intact.png").write_bytes(_encode("PNG"))
    (folder / "intact.jpg").write_bytes(_encode("JPEG", quality=90))
    return folder


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_each_damaged_file_is_skipped_with_a_reason_or_fully_decoded(corpus: Path, case: Case) -> None:
    path = corpus / case.name
    intact = decode_image(corpus / "intact.png", RES, 3).astype(np.float64) / 257
    complete = _pillow_decodes_fully(path)
    try:
        pixels = decode_image(path, RES, 3)
    except ImageDecodeError as exc:
        assert case.expect in ("skip", "pillow"), f"{case.name} was skipped: {exc}"
        assert not complete, f"Pillow decodes {case.name} completely, yet it was skipped: {exc}"
        assert case.reason in str(exc) and str(exc).strip()
        return
    assert case.expect in ("use", "pillow"), f"{case.name} must be skipped but was used"
    assert complete, f"{case.name} was used although Pillow cannot decode it completely"
    values = pixels.astype(np.float64) / 257
    assert values.mean() > 0.3 * intact.mean() and values.max() > 0, "used as a (nearly) black image"
    if case.intact_data:
        np.testing.assert_array_equal(pixels, decode_image(corpus / "intact.png", RES, 3))


def test_jpeg_bytes_under_a_png_name_decode_like_the_jpeg(corpus: Path) -> None:
    np.testing.assert_array_equal(decode_image(corpus / "jpeg_named.png", RES, 3),
                                  decode_image(corpus / "intact.jpg", RES, 3))


def test_zeroed_idat_is_what_pillow_itself_rejects(corpus: Path) -> None:
    """The issue's reproduction: Pillow's own load() raises; we must not hide that."""
    with pytest.raises(OSError, match="broken data stream"), Image.open(corpus / "png_zeroed_idat.png") as img:
        img.load()


def test_folder_of_the_corpus_uses_exactly_the_completely_decodable_files(corpus: Path) -> None:
    dataset = load_image_folder(corpus, RES, 3, use_cache=False)
    usable = {p.name for p in corpus.iterdir() if _pillow_decodes_fully(p)}
    skipped = {Path(s.file).name: s.reason for s in dataset.skipped}
    assert len(dataset) == len(usable) and set(skipped) == {p.name for p in corpus.iterdir()} - usable
    assert {c.name for c in CORPUS if c.expect == "skip"} <= set(skipped)
    assert all(reason.strip() for reason in skipped.values())
    per_image_max = dataset.x.flatten(1).max(dim=1).values
    assert bool((per_image_max > -1.0).all()), "an all-black image was used"


def test_an_unreadable_exif_block_skips_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception while reading EXIF is a reason to skip, never swallowed (it used to hide a
    failed decode behind a no-op second load())."""
    Image.fromarray(_intact_pixels()).save(tmp_path / "ok.bmp")
    assert decode_image(tmp_path / "ok.bmp", RES, 3).shape == (3, RES, RES)

    def broken_exif(self: Image.Image) -> Image.Exif:
        raise SyntaxError("not a TIFF file (header b'\\x00\\x00' not valid)")

    monkeypatch.setattr(Image.Image, "getexif", broken_exif)
    with pytest.raises(ImageDecodeError, match="unreadable EXIF block"):
        decode_image(tmp_path / "ok.bmp", RES, 3)
