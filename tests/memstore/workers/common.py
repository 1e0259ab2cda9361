"""Shared by the worker processes: unique tiny images and a count of Lance commit retries."""

from __future__ import annotations

import hashlib
import io
import random

import numpy as np
from PIL import Image

RETRIES = {"count": 0}


def count_retries() -> None:
    """Wrap Store.retry so this process counts the conflicts it retried (the logic is unchanged)."""
    from memstore.store import Store

    original = Store.retry
    if getattr(original, "_counted", False):
        return

    def retry(self, fn, attempts: int = 8):
        calls = [0]

        def counted():
            calls[0] += 1
            return fn()

        try:
            return original(self, counted, attempts)
        finally:
            RETRIES["count"] += max(0, calls[0] - 1)

    retry._counted = True  # type: ignore[attr-defined]
    Store.retry = retry  # type: ignore[method-assign]


def tiny_png(rng: random.Random, size: int = 8) -> bytes:
    """A random small PNG; random pixels make every image's sha256 unique."""
    arr = np.frombuffer(rng.randbytes(size * size * 3), dtype=np.uint8).reshape(size, size, 3)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
