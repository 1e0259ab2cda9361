"""Which references of the chosen entities to condition on: era, source order, quality, relevance
to the prompt, and MMR diversity; then the images of the chosen references only (one read)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from memstore.schema import Entity, Reference
from memstore.validation import SOURCES

from .fusion import mmr

if TYPE_CHECKING:
    from memstore.library import Library

    from .query import ShotQuery


def choose_references(
    library: Library,
    entities: Sequence[Entity],
    query: ShotQuery,
    *,
    prompt_vector: np.ndarray | None = None,
    dense_column: str | None = None,
) -> dict[str, list[Reference]]:
    """``query.references_per_entity`` references per entity id, images included. ``dense_column``
    (the text embedder's) ranks references by cosine to ``prompt_vector`` and spreads them by MMR;
    without it the library's first vector column spreads them."""
    n = query.references_per_entity
    if not entities or n <= 0:
        return {}
    by_entity: dict[str, list[Reference]] = {}
    for ref in library.references(entity_ids=[e.id for e in entities], with_vectors=True):
        by_entity.setdefault(ref.entity_id, []).append(ref)
    vector_cols = list(library.store.vector_columns())
    mmr_col = dense_column or (vector_cols[0] if vector_cols else None)
    sources = [s for s in query.sources if s in SOURCES]
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
        rel = [_relevance(r, sources, want, prompt_vector, dense_column) for r in refs]
        vecs = None
        if mmr_col is not None and all(mmr_col in r.vectors for r in refs):
            vecs = np.stack([r.vectors[mmr_col] for r in refs])
        chosen[entity.id] = [refs[i] for i in mmr(rel, vecs, n)]
    return _with_images(library, chosen)


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


def _with_images(library: Library, chosen: dict[str, list[Reference]]) -> dict[str, list[Reference]]:
    ids = [r.id for refs in chosen.values() for r in refs]
    if not ids:
        return chosen
    images = library.images(ids)
    return {eid: [r.model_copy(update={"image": images.get(r.id)}) for r in refs] for eid, refs in chosen.items()}


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
