"""Dense signals from a text-capable embedder (CLIP): prompt -> reference images, prompt -> entity text.

text -> image: the prompt's text vector searches the library's FAISS hot index of the embedder's
column; each hit maps to its entity through the index's in-memory sidecar (no Lance read), and an
entity scores its best reference. text -> text: the same text tower embeds every entity's
"name. description" once per entities-table version (cached), and the prompt is compared to
those by cosine: every one in a small library, through an IVF index above 4,096 entities
(:mod:`retrieval.signals.text_ann`). Nothing here imports torch; the embedder loads its model when first asked.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from memstore.schema import Entity

from ..fusion import CLIP_IMAGE_RANGE, CLIP_TEXT_RANGE, WEIGHTS, cosine_evidence
from .base import SignalInput, Term, TextEmbedder
from .text_ann import APPROXIMATE_ABOVE, EntityTextIndex

if TYPE_CHECKING:
    from memstore.index import VectorIndex
    from memstore.library import Library


@dataclass(frozen=True)
class DenseHit:
    entity_id: str
    score: float  # cosine similarity in [-1, 1]
    reference_key: int | None = None  # the best-matching reference (text -> image)


def search_images(index: VectorIndex | None, query: np.ndarray, *, k: int, kind: str | None = None) -> list[DenseHit]:
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


class DenseIndex:
    """The text embedder's column of a library's references as a FAISS hot index, held (the store's
    lookup reads the schema) and brought in step with the table by a cheap version check per call."""

    def __init__(self, library: Library, embedder: TextEmbedder):
        self.library = library
        self.embedder = embedder
        self._column: str | None = None
        self._index: VectorIndex | None = None

    @property
    def column(self) -> str | None:
        """The embedder's column, once it exists in the store (checked until it does)."""
        if self._column is None and self.embedder.column_name in self.library.store.vector_columns():
            self._column = self.embedder.column_name
        return self._column

    def index(self) -> VectorIndex | None:
        column = self.column
        if column is None:
            return None
        if self._index is None:
            self._index = self.library.store.index(self.library.name, column)
        else:
            self._index.sync()
        return self._index

    def search(self, vector: np.ndarray, *, k: int = 10, kind: str | None = None) -> list[DenseHit]:
        """Entities nearest a query vector (no Lance read beyond the version check), best first."""
        index = self.index()
        if index is None:
            return []
        return search_images(index, np.asarray(vector, dtype=np.float32), k=k, kind=kind)


#: elements of one matrix-vector product: OpenBLAS runs a larger one on all its threads, and on a busy
#: machine waiting for them costs ~10x the work (4,096 x 512: 7 ms against 0.7 ms in blocks, measured)
PRODUCT_BLOCK_ELEMENTS = 1 << 17


def single_threaded_products(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector`` in row blocks small enough for one BLAS thread (the same numbers: each
    row's product is computed by the same kernel either way)."""
    rows = max(1, PRODUCT_BLOCK_ELEMENTS // max(matrix.shape[1], 1))
    if len(matrix) <= rows:
        return matrix @ vector
    return np.concatenate([matrix[i : i + rows] @ vector for i in range(0, len(matrix), rows)])


class EntityTextVectors:
    """Text vectors of a library's entities, cached per entities-table version; above
    ``approximate_above`` entities searched through an IVF index kept in step with them
    (:mod:`retrieval.signals.text_ann`), below it by an exact scan."""

    def __init__(self, embedder: TextEmbedder, *, approximate_above: int = APPROXIMATE_ABOVE):
        self.embedder = embedder
        self.approximate_above = int(approximate_above)
        self._cache: dict[str, tuple[int, list[str], np.ndarray]] = {}
        self._texts: dict[str, str] = {}  # entity id -> the text its cached vector was made from
        self._approximate: dict[str, EntityTextIndex] = {}  # library -> its index, when large
        self._lock = threading.Lock()

    @staticmethod
    def text_of(entity: Entity) -> str:
        names = ", ".join([entity.name, *entity.aliases])
        return f"{names}. {entity.description}".strip()

    def vectors(self, library: str, version: int, entities: Collection[Entity]) -> tuple[list[str], np.ndarray]:
        with self._lock:
            cached = self._cache.get(library)
            if cached is not None and cached[0] == version:
                return cached[1], cached[2]
            ids = [e.id for e in entities]
            old = {} if cached is None else dict(zip(cached[1], cached[2], strict=True))
            texts = {e.id: self.text_of(e) for e in entities}
            # re-embed only entities whose text is new (an update changes the version, not all texts)
            todo = [e.id for e in entities if e.id not in old or self._texts.get(e.id) != texts[e.id]]
            if todo:
                fresh = np.asarray(self.embedder.embed_texts([texts[i] for i in todo]), dtype=np.float32)
                fresh /= np.maximum(np.linalg.norm(fresh, axis=1, keepdims=True), 1e-12)
                old.update(zip(todo, fresh, strict=True))
            self._texts.update(texts)
            dim = int(getattr(self.embedder, "ndims", 0) or (len(next(iter(old.values()))) if old else 1))
            matrix = np.stack([old[i] for i in ids]) if ids else np.zeros((0, dim), np.float32)
            self._cache[library] = (version, ids, matrix)
            if len(ids) > self.approximate_above:
                self._approximate.setdefault(library, EntityTextIndex(matrix.shape[1])).sync(ids, matrix, set(todo))
            else:
                self._approximate.pop(library, None)
            return ids, matrix

    def approximate(self, library: str) -> EntityTextIndex | None:
        """The library's IVF index of text vectors, while it is large enough to have one."""
        return self._approximate.get(library)

    def search(
        self, library: str, version: int, entities: Collection[Entity], query: np.ndarray, *, k: int
    ) -> list[DenseHit]:
        """``entities`` is read only when the version moved on (a view of the catalog's dict is enough)."""
        ids, matrix = self.vectors(library, version, entities)
        if not ids:
            return []
        ann = self._approximate.get(library)
        if ann is not None:
            with self._lock:  # another thread's sync may be removing and adding ids in it
                return [DenseHit(eid, score) for eid, score in ann.search(query, k)]
        sims = single_threaded_products(matrix, query.astype(np.float32))
        if len(sims) > k:  # a partition, then a sort of k: tens of thousands of entities cost no full sort
            top = np.argpartition(-sims, k - 1)[:k]
            order = top[np.argsort(-sims[top], kind="stable")]
        else:
            order = np.argsort(-sims, kind="stable")
        return [DenseHit(ids[i], float(sims[i])) for i in order.tolist()]


class ClipDense:
    """Terms "clip_image" (prompt vs reference images) and "clip_text" (prompt vs entity text).

    ``ranges``: the cosine span mapped onto evidence 0..1 per term; another embedder than CLIP
    ViT-B needs its own."""

    weights = {"clip_image": WEIGHTS["clip_image"], "clip_text": WEIGHTS["clip_text"]}

    def __init__(
        self,
        index: DenseIndex,
        *,
        k: int = 64,
        text_k: int = 20,
        ranges: Mapping[str, tuple[float, float]] | None = None,
    ):
        self.index = index
        self.text_vectors = EntityTextVectors(index.embedder)
        self.k = k
        self.text_k = text_k
        self.ranges = {"clip_image": CLIP_IMAGE_RANGE, "clip_text": CLIP_TEXT_RANGE, **(ranges or {})}

    def terms(self, given: SignalInput) -> Iterator[Term]:
        qvec = given.prompt_vector if given.entities else None
        if qvec is None:
            return
        for h in self.index.search(qvec, k=self.k):
            if h.entity_id in given.allowed:
                evidence = cosine_evidence(h.score, self.ranges["clip_image"])
                yield Term(h.entity_id, "clip_image", evidence, f"CLIP text->image {h.score:.2f}", h.score)
        entities = given.entities.values()
        for h in self.text_vectors.search(given.library.name, given.version, entities, qvec, k=self.text_k):
            if h.entity_id in given.allowed:
                evidence = cosine_evidence(h.score, self.ranges["clip_text"])
                yield Term(h.entity_id, "clip_text", evidence, f"CLIP text->text {h.score:.2f}", h.score)
