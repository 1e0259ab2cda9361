"""Decoding, checking and encoding of reference images.

Every image is checked before anything is written: it exists, is not empty, is no larger than the
byte limit (checked on the file's size before it is read), is one of the :data:`ALLOWED_FORMATS`
(checked on the decoded format, so no other Pillow decoder, e.g. EPS through Ghostscript, is ever
reached), is not truncated and has no more pixels than the limit (a decompression-bomb guard that
reads only the header). A batch (one register, one add, one HTTP request) also has a pixel budget,
:data:`MAX_BATCH_PIXELS`: images are decoded one at a time and each header's size is checked against
what is left of the budget before it is decoded. Bytes of JPEG, PNG and WebP files are stored as
they came (byte-identical round trips); anything else, and in-memory images, are encoded as PNG.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import (
    EmptyImageError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
)
from .validation import View

# Pillow's own bomb guard warns at 89 MP; ours refuses earlier, before decoding, and is settable.
MAX_PIXELS = int(os.environ.get("CONTINUITY_MAX_PIXELS", 40_000_000))
MAX_BYTES = int(os.environ.get("CONTINUITY_MAX_IMAGE_BYTES", 64 * 1024 * 1024))
# Several images of one batch are decoded (and embedded) together: the batch budget bounds that memory.
MAX_BATCH_PIXELS = int(os.environ.get("CONTINUITY_MAX_BATCH_PIXELS", 160_000_000))
KEPT_FORMATS = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}
# The formats the README names; every other Pillow plugin (EPS/PS/PDF via Ghostscript, ...) stays unreachable.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_ALLOWED_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"

ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray


class PixelBudgetError(ImageTooLargeError):
    """A batch of images has more pixels in all than its budget (HTTP 413). Belongs in memstore.errors."""


class PixelBudget:
    """The pixels one batch may still decode; :meth:`spend` refuses an image before it is decoded."""

    def __init__(self, limit: int | None = None):
        self.limit = MAX_BATCH_PIXELS if limit is None else limit
        self.spent = 0

    def spend(self, width: int, height: int, origin: str) -> None:
        pixels = width * height
        if self.spent + pixels > self.limit:
            raise PixelBudgetError(
                f"{origin}: {width}x{height} brings this batch to {self.spent + pixels} pixels, over its"
                f" {self.limit}-pixel budget; send fewer or smaller images at a time"
                " (or raise CONTINUITY_MAX_BATCH_PIXELS)"
            )
        self.spent += pixels


@dataclass(frozen=True)
class EncodedImage:
    """An image ready to store: encoded bytes plus the facts we index it by."""

    data: bytes
    format: str
    width: int
    height: int
    sha256: str
    origin: str  # file path or a short description of the in-memory source
    name: str | None = None  # the file name it came from (a path's last part, an upload's filename)
    view: View | None = None  # a view label given with it

    def to_pil(self) -> Image.Image:
        return decode(self.data)


def decode(data: bytes) -> Image.Image:
    """Decode stored bytes to an RGB PIL image."""
    with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
        img.load()
        return img.convert("RGB")


def _too_many_bytes(origin: str, size: int) -> ImageTooLargeError:
    return ImageTooLargeError(f"{origin}: {size} bytes is over the {MAX_BYTES}-byte limit; downscale or recompress it")


def read_file(path: Path) -> bytes:
    """A file's bytes, refused by its size before it is read, and read at most one byte past the
    limit (a file that grows, or lies about its size, is never read whole)."""
    origin = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageNotFoundError(f"{origin}: no such file; check the path") from None
    except OSError as exc:
        raise ImageError(f"{origin}: cannot be read ({exc.strerror}); check the path and its permissions") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{origin}: is not a file")
    if info.st_size > MAX_BYTES:
        raise _too_many_bytes(origin, info.st_size)
    with open(path, "rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise _too_many_bytes(origin, len(data))
    return data


def _check_header(data: bytes, origin: str, max_pixels: int) -> Image.Image:
    if not data:
        raise EmptyImageError(f"{origin}: the file is empty (0 bytes); give a real image file")
    if len(data) > MAX_BYTES:
        raise _too_many_bytes(origin, len(data))
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{origin}: {exc}; downscale it") from None
    except UnidentifiedImageError:
        raise NotAnImageError(f"{origin}: not a {_ALLOWED_NAMES} image; give a file in one of these formats") from None
    except Exception as exc:  # Pillow raises many types on hostile headers
        raise NotAnImageError(f"{origin}: unreadable image header ({exc}); give a valid image file") from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise EmptyImageError(f"{origin}: image has size {width}x{height}; it must be at least 1x1")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{origin}: {width}x{height} = {width * height} pixels is over the {max_pixels}-pixel limit"
            " (decompression-bomb guard); downscale it or raise CONTINUITY_MAX_PIXELS"
        )
    return img


def _full_decode(img: Image.Image, origin: str) -> Image.Image:
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        img.load()
        return img
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise TruncatedImageError(f"{origin}: image data is truncated or corrupt ({exc}); re-export the file") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageError(f"array image has shape {arr.shape}; expected HxW, HxWx1, HxWx3 or HxWx4")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EmptyImageError(f"array image has shape {arr.shape}; it must be at least 1x1")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
            raise ImageError(
                f"array image of dtype {arr.dtype} has non-finite values; expected uint8 0..255 or float 0..1"
            )
        if np.issubdtype(arr.dtype, np.floating) and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(arr))


def load_image(source: ImageInput, *, max_pixels: int | None = None, budget: PixelBudget | None = None) -> EncodedImage:
    """Check and encode one image from a path, bytes, a PIL image or a numpy array; with a
    ``budget``, its pixels are taken from it after the header is read and before it is decoded."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        data, origin = read_file(path), str(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data, origin = bytes(source), "<bytes>"
    elif isinstance(source, Image.Image):
        return _from_pil(source, "<PIL image>", limit, budget)
    elif isinstance(source, np.ndarray):
        return _from_pil(_from_array(source), f"<array {source.shape}>", limit, budget)
    else:
        raise ImageError(
            f"cannot read an image from {type(source).__name__}; give a path, bytes, a PIL image or a numpy array"
        )
    img = _check_header(data, origin, limit)
    if budget is not None:
        budget.spend(img.width, img.height, origin)
    fmt = img.format or ""
    img = _full_decode(img, origin)
    if fmt in KEPT_FORMATS:
        stored, stored_fmt = data, KEPT_FORMATS[fmt]
    else:
        stored, stored_fmt = _encode_png(img.convert("RGBA" if "A" in img.getbands() else "RGB")), "png"
    return EncodedImage(stored, stored_fmt, img.width, img.height, hashlib.sha256(stored).hexdigest(), origin)


def _from_pil(img: Image.Image, origin: str, limit: int, budget: PixelBudget | None) -> EncodedImage:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise EmptyImageError(f"{origin}: image has size {width}x{height}; it must be at least 1x1")
    if width * height > limit:
        raise ImageTooLargeError(f"{origin}: {width}x{height} pixels is over the {limit}-pixel limit")
    if budget is not None:
        budget.spend(width, height, origin)
    if img.mode not in ("RGB", "RGBA", "L"):
        img = img.convert("RGB")
    data = _encode_png(img)
    return EncodedImage(data, "png", width, height, hashlib.sha256(data).hexdigest(), origin)


def as_sequence(images: Sequence[ImageInput] | ImageInput) -> list[ImageInput]:
    """The images of a batch; a lone path, bytes or image (a common slip) is a batch of one."""
    if isinstance(images, (str, bytes, os.PathLike)) or not isinstance(images, Iterable):
        return [images]
    return list(images)


def load_images(images: Sequence[ImageInput], *, max_batch_pixels: int | None = None) -> list[EncodedImage]:
    """Check and encode a batch one image at a time under one :class:`PixelBudget` (all or none)."""
    budget = PixelBudget(max_batch_pixels)
    return [load_image(image, budget=budget) for image in as_sequence(images)]


def header_size(data: bytes, origin: str) -> tuple[int, int]:
    """An image's (width, height) from its header alone (nothing is decoded); refused like :func:`load_image`."""
    img = _check_header(data, origin, MAX_PIXELS)
    return img.width, img.height
