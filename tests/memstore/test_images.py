"""Every kind of bad image is refused with a typed error, before anything is written."""

from __future__ import annotations

import io
import os
import stat
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


# --- allowed formats, byte limit before reading, pixel budget per batch ---------------------------------
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\nnewpath 0 0 moveto 8 8 lineto stroke\n%%EOF\n"


def test_eps_named_png_is_refused_and_ghostscript_never_runs(tmp_path, library, store, monkeypatch):
    from PIL import EpsImagePlugin

    path = tmp_path / "x.png"
    path.write_bytes(EPS)
    with Image.open(path) as img:  # Pillow unrestricted would take it for EPS and hand it to Ghostscript
        assert img.format == "EPS"

    def ghostscript(*args, **kwargs):
        raise AssertionError("Ghostscript was reached")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    with pytest.raises(NotAnImageError, match="not a JPEG, PNG, WebP, BMP, GIF or TIFF image"):
        load_image(path)
    before = snapshot(store)
    with pytest.raises(NotAnImageError):
        library.register("Poster", "prop", images=[str(path)])
    assert snapshot(store) == before


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "TIFF", "WEBP", "JPEG"])
def test_every_allowed_format_loads(fmt):
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 6, 3), 200, np.uint8)).save(buf, format=fmt)
    enc = load_image(buf.getvalue())
    assert (enc.width, enc.height) == (6, 8)


def test_sparse_gigabyte_file_is_refused_without_being_read(tmp_path):
    import tracemalloc

    path = tmp_path / "huge.png"
    with open(path, "wb") as handle:
        handle.truncate(1 << 30)  # 1 GiB of holes: nothing on disk, all of it on a read
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match="1073741824 bytes is over"):
            load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_file_is_read_at_most_one_byte_past_the_limit(tmp_path, monkeypatch):
    from memstore import images

    monkeypatch.setattr(images, "MAX_BYTES", 1000)
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes(np.zeros((4, 4, 3), np.uint8)) + b"\0" * 2000)
    with pytest.raises(ImageTooLargeError, match="over the 1000-byte limit"):
        load_image(path)
    reads = []
    real_open = open

    class Spy:  # a file whose size grew past the limit after its stat: the read stops at limit + 1
        def __init__(self, *args):
            self.handle = real_open(*args)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def read(self, n):
            reads.append(n)
            return self.handle.read(n)

    small = tmp_path / "small.png"
    small.write_bytes(b"\0" * 10)
    monkeypatch.setattr(images, "open", Spy, raising=False)
    regular = stat.S_IFREG | 0o644
    monkeypatch.setattr(images.Path, "stat", lambda self: os.stat_result((regular,) + (0,) * 5 + (10, 0, 0, 0)))
    small.write_bytes(b"\0" * 5000)
    with pytest.raises(ImageTooLargeError):
        load_image(small)
    assert reads == [1001]


def test_batch_pixel_budget_refuses_before_decoding(library, store, monkeypatch):
    from memstore import images

    monkeypatch.setattr(images, "MAX_BATCH_PIXELS", 10_000)
    decoded = []
    real_decode = images._full_decode
    monkeypatch.setattr(
        images, "_full_decode", lambda img, origin: decoded.append(img.size) or real_decode(img, origin)
    )
    rng = np.random.default_rng(3)
    batch = [png_bytes(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(3)]  # 4096 px each
    library.register("Aria", "character")
    before = snapshot(store)
    with pytest.raises(images.PixelBudgetError, match="over its 10000-pixel budget"):
        library.register("Bram", "character", images=batch)
    assert decoded == [(64, 64), (64, 64)]  # one at a time; the third refused from its header
    with pytest.raises(images.PixelBudgetError):
        library.add_images("Aria", batch)
    assert snapshot(store) == before
    assert len(library.add_images("Aria", batch[:2])) == 2  # within the budget
