"""Fixtures of the retrieval tests: a bag-of-words text embedder double (the Embedder interface's
``embed_texts``), so the dense paths run without model weights."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import pytest

from memstore.embedders.base import Embedder, Embedding, normalize_rows, register_embedder

DIM = 64


def bag(text: str) -> np.ndarray:
    vec = np.zeros(DIM, np.float32)
    for word in re.findall(r"[a-z]+", text.lower()):
        vec[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIM] += 1.0
    vec[0] += 0.05  # never all-zero
    return vec / np.linalg.norm(vec)


@register_embedder("test-bag-of-words")
class BagOfWords(Embedder):
    """Images are never embedded by it (tests give vectors); texts are hashed bags of words."""

    @property
    def ndims(self) -> int:
        return DIM

    @property
    def spec(self) -> str:
        return "test:bag-of-words-64"

    @property
    def has_text(self) -> bool:
        return True

    def _embed_batch(self, images: Sequence) -> list[Embedding]:
        return [Embedding(vector=bag(str(np.asarray(img).mean()))) for img in images]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return normalize_rows(np.stack([bag(t) for t in texts]))


@pytest.fixture
def bow(library):
    emb = BagOfWords(column="bow")
    library.set_embedders([emb])
    return emb


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)
