"""Dense signals from a text-capable embedder (CLIP): prompt -> reference images, prompt -> entity text.

text -> image: the prompt's text vector searches the library's FAISS hot index of the embedder's
column; each hit maps to its entity through the index's in-memory sidecar (no Lance read), and an
entity scores its best reference. text -> text: the same text tower embeds every entity's
"name. description" once per entities-table version (cached), and the prompt is compared to
those by cosine. Nothing here imports torch; the embedder loads its model when first asked.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memstore.schema import Entity


@dataclass(frozen=True)
class DenseHit:
    entity_id: str
    score: float  # cosine similarity in [-1, 1]
    reference_key: int | None = None  # the best-matching reference (text -> image)


def text_capable(embedder: Any) -> bool:
    return embedder is not None and bool(getattr(embedder, "has_text", False)) and hasattr(embedder, "embed_texts")


def embed_prompt(embedder: Any, prompt: str) -> np.ndarray:
    vec = np.asarray(embedder.embed_texts([prompt]), dtype=np.float32).reshape(-1)
    return vec / max(float(np.linalg.norm(vec)), 1e-12)


def search_images(index: Any, query: np.ndarray, *, k: int, kind: str | None = None) -> list[DenseHit]:
    """Entities whose references are nearest the query vector, best reference per entity."""
    if index is None or index.ntotal == 0:
        return []
    scores, ids = index.search(query, k, kind=kind)
    codes = index.entity_codes_of(ids[0])
    valid = (codes >= 0) & (ids[0] >= 0)
    # FAISS returns best first, so an entity's first occurrence is its best reference
    _, first = np.unique(np.where(valid, codes, -1), return_index=True)
    keep = sorted(i for i in first.tolist() if valid[i])
    names = index.entity_ids
    return [DenseHit(names[int(codes[i])], float(scores[0][i]), int(ids[0][i])) for i in keep]


class EntityTextVectors:
    """Text vectors of a library's entities, cached per entities-table version."""

    def __init__(self, embedder: Any):
        self.embedder = embedder
        self._cache: dict[str, tuple[int, list[str], np.ndarray]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def text_of(entity: Entity) -> str:
        names = ", ".join([entity.name, *entity.aliases])
        return f"{names}. {entity.description}".strip()

    def vectors(self, library: str, version: int, entities: Sequence[Entity]) -> tuple[list[str], np.ndarray]:
        with self._lock:
            cached = self._cache.get(library)
            if cached is not None and cached[0] == version:
                return cached[1], cached[2]
            ids = [e.id for e in entities]
            old = {} if cached is None else dict(zip(cached[1], cached[2]))
            texts = {e.id: self.text_of(e) for e in entities}
            # re-embed only entities whose text is new (an update changes the version, not all texts)
            todo = [e.id for e in entities if e.id not in old or self._texts.get(e.id) != texts[e.id]]
            if todo:
                fresh = np.asarray(self.embedder.embed_texts([texts[i] for i in todo]), dtype=np.float32)
                fresh /= np.maximum(np.linalg.norm(fresh, axis=1, keepdims=True), 1e-12)
                old.update(zip(todo, fresh))
            self._texts.update(texts)
            dim = int(getattr(self.embedder, "ndims", 0) or (len(next(iter(old.values()))) if old else 1))
            matrix = np.stack([old[i] for i in ids]) if ids else np.zeros((0, dim), np.float32)
            self._cache[library] = (version, ids, matrix)
            return ids, matrix

    @property
    def _texts(self) -> dict[str, str]:
        if not hasattr(self, "_text_store"):
            self._text_store: dict[str, str] = {}
        return self._text_store

    def search(
        self, library: str, version: int, entities: Sequence[Entity], query: np.ndarray, *, k: int
    ) -> list[DenseHit]:
        ids, matrix = self.vectors(library, version, entities)
        if not ids:
            return []
        sims = matrix @ query.astype(np.float32)
        order = np.argsort(-sims)[:k]
        return [DenseHit(ids[i], float(sims[i])) for i in order]
