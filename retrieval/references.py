"""Which references of the chosen entities to condition on: era, source order, quality, relevance
to the prompt, and MMR diversity; then the images of the chosen references only (one read)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from memstore.schema import Entity, Reference
from memstore.validation import SOURCES

from .fusion import cosine_similarities, mmr, mmr_by_similarity
from .views import view_bonus, wanted_views

if TYPE_CHECKING:
    from memstore.library import Library

    from .query import ShotQuery


class ReferenceCache:
    """Registered references of a library's entities (without images), and the images of recently
    chosen references, so that a retrieve reads nothing from the store once warm.

    A small library (at most ``preload_entities`` entities) is read whole, in one read, on first
    use; a larger one entity by entity as they are chosen, keeping the last ``size``. An entry is
    valid while its entity is unchanged: the library bumps an entity's ``updated`` whenever its
    registered references change, in this process or another (the retriever's entity snapshot
    follows the entities table's version), and a changed entity is read again on its own. Images
    are kept by reference id (a reference's image bytes never change), up to ``image_bytes``."""

    def __init__(
        self, library: Library, size: int = 4096, *, preload_entities: int = 2048, image_bytes: int = 64 << 20
    ):
        self.library = library
        self.size = max(int(size), int(preload_entities))
        self.preload_entities = int(preload_entities)
        self.image_bytes = int(image_bytes)
        self._entries: OrderedDict[str, tuple[object, list[Reference]]] = OrderedDict()
        self._images: OrderedDict[str, bytes | None] = OrderedDict()  # None: the row has no image
        self._image_total = 0
        self._stacks: OrderedDict[tuple[str, tuple[int, ...]], tuple[tuple[Reference, ...], np.ndarray, np.ndarray]]
        self._stacks = OrderedDict()
        self._preloaded = False
        self._watch = library.store.watch("references")
        self._columns: tuple[int, list[str]] | None = None  # (references-table version, vector columns)
        self.reads = 0  # store reads of references (tests and benchmarks read it)
        self._lock = threading.RLock()  # one retriever may serve several threads (the HTTP server)

    def vector_columns(self) -> list[str]:
        """The store's vector columns, read again only when the references table moved on."""
        version = self._watch.version()
        if self._columns is None or self._columns[0] != version:
            self._columns = (version, list(self.library.store.vector_columns()))
        return self._columns[1]

    def preload(self, everyone: Mapping[str, Entity]) -> None:
        """Read every registered reference of the library at once when it is small enough (first use only)."""
        with self._lock:
            self._preload(everyone)

    def _preload(self, everyone: Mapping[str, Entity]) -> None:
        if self._preloaded or not everyone or len(everyone) > self.preload_entities:
            return
        self._preloaded = True
        self.reads += 1
        refs = self.library.references(source="registered", with_vectors=True)
        read = _by_entity(refs)
        for eid, entity in everyone.items():
            self._entries[eid] = (entity.updated, read.get(eid, []))
        # their images too when even uncompressed they would fit the image budget (one more read)
        if refs and sum(3 * max(r.width, 1) * max(r.height, 1) for r in refs) <= self.image_bytes:
            self.reads += 1
            for rid, data in self.library.images([r.id for r in refs]).items():
                self._keep_image(rid, data)

    def registered(self, entities: Sequence[Entity]) -> dict[str, list[Reference]]:
        with self._lock:
            return self._registered(entities)

    def _registered(self, entities: Sequence[Entity]) -> dict[str, list[Reference]]:
        out: dict[str, list[Reference]] = {}
        missing = []
        for entity in entities:
            entry = self._entries.get(entity.id)
            if entry is not None and entry[0] == entity.updated:
                self._entries.move_to_end(entity.id)
                out[entity.id] = entry[1]
            else:
                missing.append(entity)
        if missing:
            self.reads += 1
            read = _by_entity(
                self.library.references(entity_ids=[e.id for e in missing], source="registered", with_vectors=True)
            )
            for entity in missing:
                out[entity.id] = read.get(entity.id, [])
                self._entries[entity.id] = (entity.updated, out[entity.id])
                self._entries.move_to_end(entity.id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return out

    def stacked(self, refs: Sequence[Reference], column: str) -> tuple[np.ndarray, np.ndarray]:
        """``np.stack`` of these references' vectors in ``column`` and their pairwise cosines
        (:func:`~retrieval.fusion.cosine_similarities`), kept per (column, the very
        Reference objects): a recurring entity's matrix is not built again every shot, and a
        reference read again (a changed entity) is a new object, so a new key. The entry holds the
        objects, so their ``id`` cannot be taken by others while it lives."""
        key = (column, tuple(id(r) for r in refs))
        with self._lock:
            found = self._stacks.get(key)
            if found is not None:
                self._stacks.move_to_end(key)
                return found[1], found[2]
        matrix = np.stack([r.vectors[column] for r in refs])
        similarity = cosine_similarities(matrix)
        with self._lock:
            self._stacks[key] = (tuple(refs), matrix, similarity)
            while len(self._stacks) > self.size:
                self._stacks.popitem(last=False)
        return matrix, similarity

    def images(self, ref_ids: Sequence[str]) -> dict[str, bytes | None]:
        """Image bytes of these references: kept ones from memory, the others in one read."""
        with self._lock:
            return self._held_images(ref_ids)

    def _held_images(self, ref_ids: Sequence[str]) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        todo = []
        for rid in ref_ids:
            if rid in self._images:
                self._images.move_to_end(rid)
                out[rid] = self._images[rid]
            else:
                todo.append(rid)
        if todo:
            self.reads += 1
            read = self.library.images(todo)
            for rid in todo:
                if rid in read:  # a reference gone since is not remembered as imageless
                    self._keep_image(rid, read[rid])
            out.update(read)
        return out

    def _keep_image(self, rid: str, data: bytes | None) -> None:
        size = len(data) if data is not None else 0
        if size > self.image_bytes or rid in self._images:
            return
        self._images[rid] = data
        self._image_total += size
        while self._image_total > self.image_bytes or len(self._images) > 16 * self.size:
            _, old = self._images.popitem(last=False)
            self._image_total -= len(old) if old is not None else 0


def choose_references(
    library: Library,
    entities: Sequence[Entity],
    query: ShotQuery,
    *,
    prompt_vector: np.ndarray | None = None,
    dense_column: str | None = None,
    cache: ReferenceCache | None = None,
    keyframes: Sequence[Reference] | None = None,
) -> dict[str, list[Reference]]:
    """``query.references_per_entity`` references per entity id, images included. ``dense_column``
    (the text embedder's) ranks references by cosine to ``prompt_vector`` and spreads them by MMR;
    without it the library's first vector column spreads them.

    Harvested keyframes are offered to queries of their own story only (another story's frames,
    or an animatic's placeholders, are no blueprint), and never from this shot or later ones.
    ``keyframes``: the story's keyframes when the caller holds them (a story session does), so the
    store is not read for them every shot."""
    n = query.references_per_entity
    if not entities or n <= 0:
        return {}
    by_entity = _candidates(library, entities, query, cache, keyframes)
    mmr_col = dense_column or _first_vector_column(library, cache)
    sources = [s for s in query.sources if s in SOURCES]
    views = wanted_views(query.prompt, query.first_frame_prompt, query.view)
    eras = dict(query.eras)
    chosen: dict[str, list[Reference]] = {}
    for entity in entities:
        refs = [r for r in by_entity.get(entity.id, []) if r.source in sources]
        refs = [r for r in refs if not from_the_future(r, query)]
        want = eras.get(entity.name) or eras.get(entity.id) or query.era
        if want is not None:
            in_era = [r for r in refs if r.era == want]
            refs = in_era or [r for r in refs if r.era == "default"] or refs
        if not refs:
            continue
        spread = None
        if mmr_col is not None and len(refs) > 1 and all(mmr_col in r.vectors for r in refs):
            spread = _spread(refs, mmr_col, cache)
        if spread is not None and prompt_vector is not None and dense_column == mmr_col:
            # the dense cosines of all references in one product (of the matrix MMR needs anyway)
            rel = [_relevance(r, sources, want, None, None) + view_bonus(r.view, views) for r in refs]
            rel = (np.asarray(rel) + spread[0] @ prompt_vector).tolist()
        else:
            rel = [_relevance(r, sources, want, prompt_vector, dense_column) + view_bonus(r.view, views) for r in refs]
        if spread is None:
            chosen[entity.id] = [refs[i] for i in mmr(rel, None, n)]
        else:
            chosen[entity.id] = [refs[i] for i in mmr_by_similarity(rel, spread[1], n)]
    return _with_images(library, chosen, cache)


def _spread(refs: Sequence[Reference], column: str, cache: ReferenceCache | None) -> tuple[np.ndarray, np.ndarray]:
    """The references' vectors of one column as a matrix and their pairwise cosines (what MMR
    spreads them by), kept by the cache for the next shot."""
    if cache is None:
        matrix = np.stack([r.vectors[column] for r in refs])
        return matrix, cosine_similarities(matrix)
    return cache.stacked(refs, column)


def _first_vector_column(library: Library, cache: ReferenceCache | None) -> str | None:
    columns = cache.vector_columns() if cache is not None else list(library.store.vector_columns())
    return columns[0] if columns else None


def _candidates(
    library: Library,
    entities: Sequence[Entity],
    query: ShotQuery,
    cache: ReferenceCache | None,
    keyframes: Sequence[Reference] | None,
) -> dict[str, list[Reference]]:
    ids = [e.id for e in entities]
    if cache is not None:
        out = {eid: list(refs) for eid, refs in cache.registered(entities).items()}
    else:
        out = _by_entity(library.references(entity_ids=ids, source="registered", with_vectors=True))
    if "harvested" in query.sources and query.story_id is not None:
        if keyframes is None:
            keyframes = library.references(entity_ids=ids, source="harvested", story=query.story_id, with_vectors=True)
        wanted = set(ids)
        for ref in keyframes:
            if ref.entity_id in wanted and ref.story == query.story_id:
                out.setdefault(ref.entity_id, []).append(ref)
    return out


def _by_entity(refs: Sequence[Reference]) -> dict[str, list[Reference]]:
    out: dict[str, list[Reference]] = {}
    for ref in refs:
        out.setdefault(ref.entity_id, []).append(ref)
    return out


def _relevance(
    ref: Reference,
    sources: list[str],
    era: str | None,
    prompt_vector: np.ndarray | None,
    dense_column: str | None,
) -> float:
    value = 0.5 if ref.quality is None else float(ref.quality)
    value += 0.5 * (len(sources) - sources.index(ref.source)) / len(sources)  # preferred source first
    if era is not None and ref.era == era:
        value += 0.5
    if prompt_vector is not None and dense_column in ref.vectors:
        value += float(ref.vectors[dense_column] @ prompt_vector)
    return value


def _with_images(
    library: Library, chosen: dict[str, list[Reference]], cache: ReferenceCache | None
) -> dict[str, list[Reference]]:
    ids = [r.id for refs in chosen.values() for r in refs if r.image is None]  # harvested ones may carry theirs
    if not ids:
        return chosen
    images = cache.images(ids) if cache is not None else library.images(ids)
    return {
        eid: [r if r.image is not None else r.model_copy(update={"image": images.get(r.id)}) for r in refs]
        for eid, refs in chosen.items()
    }


def from_the_future(ref: Reference, query: ShotQuery) -> bool:
    """A keyframe harvested from this story's shot ``shot_index`` or later: using it would make a
    shot depend on its own output (and a rerun differ from the first run)."""
    return (
        ref.source == "harvested"
        and query.story_id is not None
        and query.shot_index is not None
        and ref.story == query.story_id
        and ref.shot is not None
        and ref.shot >= query.shot_index
    )
