""""What the model sees" on latents: the schedule panel's thumbnails when ``data.vae`` is set.

A latent-diffusion model never sees pixels: it sees ``z_1 = alpha_1 z_0 + sigma_1 eps`` with ``z_0``
the VAE's (scaled, shifted) latent of the image. :class:`LatentThumbnails` encodes the image with
the user's VAE (``engine.latents.load_codec`` / ``encode_images``: the scaling the training cache
uses) on a :class:`~diffstudio.gui.worker.TaskThread` (an SD-sized VAE takes seconds on a CPU), keeps
the VAE and each (VAE, image) latent, and decodes the schedule-dependent latents on a second thread,
newest request first; the UI thread never runs the VAE. Nothing here imports Qt widgets.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from PySide6.QtCore import QObject, Signal

from diffstudio.gui.worker import TaskThread

THUMB_SEED = 0
LATENTS_KEPT = 8  # (VAE, image) latents remembered


@dataclass(frozen=True)
class EncodedImage:
    """One image's latent: ``z0`` float64 (c, h, w) (the posterior mean in scaled units), ``noise``
    float64 (c, h, w) (``eps``, drawn with ``THUMB_SEED``) and ``clean`` float32 (C, H, W), the decode
    of ``z0`` (what the model's x0 looks like as an image)."""

    z0: torch.Tensor
    noise: torch.Tensor
    clean: torch.Tensor

    @property
    def shape_text(self) -> str:
        """The latent's shape for people: "4 × 8 × 8" (channels × height × width in latent pixels)."""
        return " × ".join(str(s) for s in self.z0.shape)


def image_key(image: torch.Tensor) -> str:
    """A hash of an image's values and shape (which image a latent belongs to)."""
    x = image.detach().cpu().contiguous()
    return hashlib.sha256(str(tuple(x.shape)).encode() + x.numpy().tobytes()).hexdigest()[:16]


class LatentThumbnails(QObject):
    """The latent of the schedule panel's image under ``data.vae``, and decodes on demand.

    :meth:`set_source` (VAE folder, image (C, H, W) in [-1, 1]): ``changed`` is emitted when the
    latent for it becomes known, fails (``error``: one line) or is no longer wanted.
    :meth:`decode` (key, latents (N, c, h, w)): ``decoded(key, images (N, C, H, W) float32)`` follows,
    for the newest request only when several were made while one was decoding."""

    changed = Signal()
    decoded = Signal(object, object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.vae = ""
        self.key: tuple[str, str] | None = None
        self.encoded: EncodedImage | None = None
        self.error = ""
        self._codec = None  # (vae folder, LatentCodec): the VAE is loaded once
        self._codec_lock = threading.Lock()  # one encode job at a time, so the VAE is loaded once
        self._latents: dict[tuple[str, str], EncodedImage] = {}
        self._encoding: TaskThread | None = None
        self._decoding: TaskThread | None = None
        self._wanted: tuple[object, torch.Tensor] | None = None

    @property
    def active(self) -> bool:
        """``data.vae`` is set: the thumbnails are decoded latents (once encoded)."""
        return bool(self.vae)

    @property
    def busy(self) -> bool:
        """The image is being encoded."""
        return self._encoding is not None

    def state(self) -> tuple:
        """What the thumbnails depend on besides the schedule (for the panel's redraw key)."""
        return (self.vae, self.key, self.encoded is not None, self.error)

    def set_source(self, vae: str, image: torch.Tensor) -> None:
        """Show ``image`` (C, H, W) in [-1, 1] as latents of the VAE at ``vae`` ("" for pixels); encodes
        it in the background unless its latent is known. Raises nothing: a VAE that cannot be read
        or does not fit the image ends in ``error`` (one line) and ``changed``."""
        vae = str(vae or "")
        key = (vae, image_key(image)) if vae else None
        if key == self.key and vae == self.vae and (self.encoded is not None or self.error or self.busy):
            return
        self.vae, self.key, self.error = vae, key, ""
        self.encoded = self._latents.get(key) if key else None
        if key is None or self.encoded is not None:
            self.changed.emit()
            return
        self._encode(vae, key, image)
        self.changed.emit()

    def decode(self, key, latents: torch.Tensor) -> None:
        """Decode ``latents`` (N, c, h, w) in scaled units with the loaded VAE off the UI thread;
        ``decoded(key, images (N, C, H, W) float32)`` follows. A failure goes to ``error`` and ``changed``."""
        self._wanted = (key, latents)
        if self._decoding is None:
            self._start_decode()

    def codec(self):
        """The loaded LatentCodec of ``vae`` (None before it is loaded)."""
        return self._codec[1] if self._codec is not None and self._codec[0] == self.vae else None

    # ---- background work ----
    def _encode(self, vae: str, key: tuple[str, str], image: torch.Tensor) -> None:
        from diffstudio.data.errors import LoadCancelled
        from diffstudio.engine.latents import check_compatible, decode_latents, encode_images, load_codec

        if self._encoding is not None:
            self._encoding.cancel()  # its result is still kept for its key
        pixels = image.detach().to(torch.float32).cpu()

        def job(_progress, should_cancel):
            with self._codec_lock:
                if should_cancel():  # superseded while an earlier job held the lock
                    raise LoadCancelled("superseded")
                known = self._codec
                loaded = known[1] if known is not None and known[0] == vae else load_codec(vae, "cpu")
                self._codec = (vae, loaded)
            check_compatible(SimpleNamespace(kind="image", channels=pixels.shape[0],
                                             resolution=pixels.shape[-1]), loaded)
            mean, _std = encode_images(loaded, pixels[None])
            clean = decode_latents(loaded, mean)[0]
            gen = torch.Generator().manual_seed(THUMB_SEED)
            noise = torch.randn(mean.shape[1:], generator=gen, dtype=torch.float64)
            return vae, loaded, key, EncodedImage(mean[0].to(torch.float64), noise, clean)

        thread = TaskThread(job, describe=_one_line)
        thread.succeeded.connect(self._on_encoded)
        thread.failed.connect(self._on_encode_failed)
        self._encoding = thread
        thread.start()

    def _on_encoded(self, result) -> None:
        if self.sender() is self._encoding:
            self._encoding = None
        _vae, _codec, key, encoded = result
        if len(self._latents) >= LATENTS_KEPT:
            self._latents.pop(next(iter(self._latents)))
        self._latents[key] = encoded
        if key == self.key:
            self.encoded = encoded
            self.changed.emit()

    def _on_encode_failed(self, message: str, _exc) -> None:
        if self.sender() is not self._encoding:
            return  # superseded
        self._encoding = None
        self.error = message
        self.changed.emit()

    def _start_decode(self) -> None:
        from diffstudio.engine.latents import decode_latents

        key, latents = self._wanted
        self._wanted = None
        codec = self.codec()
        if codec is None:
            return
        thread = TaskThread(lambda _p, _c: (key, decode_latents(codec, latents.to(torch.float32))),
                            describe=_one_line)
        thread.succeeded.connect(self._on_decoded)
        thread.failed.connect(self._on_decode_failed)
        self._decoding = thread
        thread.start()

    def _on_decoded(self, result) -> None:
        self._decoding = None
        if self._wanted is not None:
            self._start_decode()  # a newer request came meanwhile: this result is already stale
            return
        self.decoded.emit(*result)

    def _on_decode_failed(self, message: str, _exc) -> None:
        self._decoding = None
        self.error = message
        if self._wanted is not None:
            self._start_decode()
        self.changed.emit()

    def wait(self) -> None:
        """Block until the encode and decode in flight have finished (tests, shutdown)."""
        for thread in (self._encoding, self._decoding):
            if thread is not None:
                thread.wait()


def _one_line(exc: BaseException) -> str:
    from diffstudio.engine.errors import report_error

    return report_error(exc).message.splitlines()[0]
