"""A weightless colour embedder: an 8x8x8 RGB histogram, square-rooted (Hellinger) and normalised.

It needs no model, so every store can index images out of the box and tests of the index run
without torch. It finds images of similar palette, which is what an animatic needs, and nothing
about identity: configure CLIP and a face embedder for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Embedder, Embedding, normalize_rows, register_embedder


@register_embedder("color-histogram")
class ColorHistogramEmbedder(Embedder):
    bins: int = 8
    size: int = 128  # images are downscaled first: the histogram barely changes, the time does

    @property
    def ndims(self) -> int:
        return self.bins**3

    @property
    def spec(self) -> str:
        return f"color-histogram:rgb{self.bins}"

    def _embed_batch(self, images: Sequence[Any]) -> list[Embedding]:
        rows = []
        for img in images:
            small = img.convert("RGB")
            small.thumbnail((self.size, self.size))
            arr = np.asarray(small, dtype=np.int64) * self.bins // 256
            idx = (arr[..., 0] * self.bins + arr[..., 1]) * self.bins + arr[..., 2]
            hist = np.bincount(idx.ravel(), minlength=self.ndims).astype(np.float32)
            rows.append(np.sqrt(hist / max(hist.sum(), 1.0)))
        vectors = normalize_rows(np.stack(rows))
        return [Embedding(vector=v) for v in vectors]
