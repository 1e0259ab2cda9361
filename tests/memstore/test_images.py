"""Every kind of bad image is refused with a typed error, before anything is written."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from memstore.errors import (
    EmptyImageError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
)
from memstore.images import load_image
from tests.memstore.test_library import snapshot


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb's signature)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_good_image_round_trip(photos):
    enc = load_image(photos["astronaut"])
    assert (enc.width, enc.height, enc.format) == (512, 512, "png")
    assert np.array_equal(np.asarray(enc.to_pil()), photos["astronaut"])


def test_float_array_is_scaled():
    enc = load_image(np.full((4, 5, 3), 0.5, dtype=np.float32))
    assert np.asarray(enc.to_pil())[0, 0, 0] in (127, 128)


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda p: str(p / "missing.png"), ImageNotFoundError),
        (lambda p: (p / "empty.png").write_bytes(b"") or str(p / "empty.png"), EmptyImageError),
        (lambda p: b"", EmptyImageError),
        (lambda p: b"this is plain text, not an image", NotAnImageError),
        (
            lambda p: png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))[:400],
            TruncatedImageError,
        ),
        (lambda p: bomb_png(100_000, 100_000), ImageTooLargeError),
        (lambda p: np.zeros((0, 10, 3), np.uint8), EmptyImageError),
        (lambda p: np.zeros((10, 10, 7), np.uint8), ImageError),
        (lambda p: np.full((4, 4, 3), np.nan), ImageError),
        (lambda p: 12345, ImageError),
    ],
    ids=[
        "missing",
        "zero-byte-file",
        "empty-bytes",
        "not-image",
        "truncated",
        "bomb",
        "zero-size",
        "bad-channels",
        "nan",
        "wrong-type",
    ],
)
def test_bad_images_refused_and_store_unchanged(tmp_path, library, store, make, error):
    source = make(tmp_path)
    with pytest.raises(error):
        load_image(source)
    library.register("Aria", "character")
    before = snapshot(store)
    with pytest.raises(error):
        library.add_images("Aria", [source])
    with pytest.raises(error):
        library.register("Bram", "character", images=[source])
    assert snapshot(store) == before


def test_truncated_jpeg(tmp_path, photos):
    buf = io.BytesIO()
    Image.fromarray(photos["astronaut"]).save(buf, format="JPEG")
    with pytest.raises(TruncatedImageError):
        load_image(buf.getvalue()[: len(buf.getvalue()) // 2])


def test_pixel_limit_is_settable(photos):
    with pytest.raises(ImageTooLargeError):
        load_image(photos["astronaut"], max_pixels=1000)
