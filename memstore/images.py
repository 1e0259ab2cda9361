"""Decoding, checking and encoding of reference images.

Every image is checked before anything is written: it exists, is not empty, is a real image, is
not truncated and has no more pixels than the limit (a decompression-bomb guard that reads only the
header). Bytes of JPEG, PNG and WebP files are stored as they came (byte-identical round trips);
anything else, and in-memory images, are encoded as PNG.
"""

from __future__ import annotations

import hashlib
import io
import os
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

# Pillow's own bomb guard warns at 89 MP; ours refuses earlier, before decoding, and is settable.
MAX_PIXELS = int(os.environ.get("CONTINUITY_MAX_PIXELS", 40_000_000))
MAX_BYTES = int(os.environ.get("CONTINUITY_MAX_IMAGE_BYTES", 64 * 1024 * 1024))
KEPT_FORMATS = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}

ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray


@dataclass(frozen=True)
class EncodedImage:
    """An image ready to store: encoded bytes plus the facts we index it by."""

    data: bytes
    format: str
    width: int
    height: int
    sha256: str
    origin: str  # file path or a short description of the in-memory source

    def to_pil(self) -> Image.Image:
        return decode(self.data)


def decode(data: bytes) -> Image.Image:
    """Decode stored bytes to an RGB PIL image."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.convert("RGB")


def _check_header(data: bytes, origin: str, max_pixels: int) -> Image.Image:
    if not data:
        raise EmptyImageError(f"{origin}: the file is empty (0 bytes); give a real image file")
    if len(data) > MAX_BYTES:
        raise ImageTooLargeError(
            f"{origin}: {len(data)} bytes is over the {MAX_BYTES}-byte limit; downscale or recompress it"
        )
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{origin}: {exc}; downscale it") from None
    except UnidentifiedImageError:
        raise NotAnImageError(f"{origin}: not an image Pillow can read; give a JPEG, PNG or WebP file") from None
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


def load_image(source: ImageInput, *, max_pixels: int | None = None) -> EncodedImage:
    """Check and encode one image from a path, bytes, a PIL image or a numpy array."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        origin = str(path)
        if not path.exists():
            raise ImageNotFoundError(f"{origin}: no such file; check the path")
        if not path.is_file():
            raise ImageError(f"{origin}: is not a file")
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data, origin = bytes(source), "<bytes>"
    elif isinstance(source, Image.Image):
        return _from_pil(source, "<PIL image>", limit)
    elif isinstance(source, np.ndarray):
        return _from_pil(_from_array(source), f"<array {source.shape}>", limit)
    else:
        raise ImageError(
            f"cannot read an image from {type(source).__name__}; give a path, bytes, a PIL image or a numpy array"
        )
    img = _check_header(data, origin, limit)
    fmt = img.format or ""
    img = _full_decode(img, origin)
    if fmt in KEPT_FORMATS:
        stored, stored_fmt = data, KEPT_FORMATS[fmt]
    else:
        stored, stored_fmt = _encode_png(img.convert("RGBA" if "A" in img.getbands() else "RGB")), "png"
    return EncodedImage(stored, stored_fmt, img.width, img.height, hashlib.sha256(stored).hexdigest(), origin)


def _from_pil(img: Image.Image, origin: str, limit: int) -> EncodedImage:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise EmptyImageError(f"{origin}: image has size {width}x{height}; it must be at least 1x1")
    if width * height > limit:
        raise ImageTooLargeError(f"{origin}: {width}x{height} pixels is over the {limit}-pixel limit")
    if img.mode not in ("RGB", "RGBA", "L"):
        img = img.convert("RGB")
    data = _encode_png(img)
    return EncodedImage(data, "png", width, height, hashlib.sha256(data).hexdigest(), origin)
