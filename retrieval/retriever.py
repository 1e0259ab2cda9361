"""The retriever: a shot prompt (and its story context) -> the entities the shot needs, with reasons,
and for each the reference images to condition on.

Per query, each signal of the retriever's list (:mod:`retrieval.signals`) yields scored terms:
the explicit cast, names/aliases (an in-memory matcher built per entities-table version), the
story context, BM25 (the store's in-memory full-text index, :mod:`memstore.fts`) and, with a
text-capable embedder, CLIP text->image over the FAISS hot index and text->text over cached entity
text vectors. The terms are fused (:mod:`retrieval.fusion`), cut to per-kind budgets, and only then
are the chosen entities' references taken, with the images of only the chosen references.

Once warm a retrieve reads no table: the entity catalog, the BM25 postings and the registered
references of a small library (images included, within a byte budget) are held per version, and
each is checked by a stat of the table's version folder (:class:`memstore.store.VersionWatch`).
A large library's references are read per chosen entity and kept (:class:`ReferenceCache`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from memstore.errors import InvalidInputError
from memstore.schema import Entity, Reference
from memstore.validation import KINDS, MAX_PROMPT_CHARS, SOURCES, clean_view

from .catalog import EntityCatalog
from .context import StoryContext
from .fusion import DEFAULT_BUDGETS, DEFAULT_MIN_SCORE, WEIGHTS, Evidence, apply_budgets, fuse, rank
from .query import Hit, RetrievalResult, ShotQuery
from .references import ReferenceCache, choose_references
from .signals import (
    Bm25,
    ClipDense,
    DenseHit,
    DenseIndex,
    ExplicitCast,
    NameMentions,
    PlaceReading,
    Signal,
    SignalInput,
    StoryContextSignal,
    Term,
    TextEmbedder,
    text_capable,
)
from .views import wanted_views

if TYPE_CHECKING:
    from memstore.index import VectorIndex
    from memstore.library import Library

Chosen = list[tuple[str, str, float]]  # (entity_id, kind, score), best first


def default_signals(
    *,
    dense: DenseIndex | None = None,
    lexical: bool = True,
    dense_k: int = 64,
    dense_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> list[Signal]:
    """The built-in signals, in the order their reasons are printed. A new signal is a module under
    ``retrieval/signals/`` and one entry here (or, for one retriever, appended to its ``signals``)."""
    signals: list[Signal] = [ExplicitCast(), NameMentions(), StoryContextSignal()]
    if lexical:
        signals.append(Bm25())
    if dense is not None:
        signals.append(ClipDense(dense, k=dense_k, ranges=dense_ranges))
    return signals


class Reader(Protocol):
    """A reading of the shot that runs after the signals and may speak about what they found (a
    prop only a description word matched; a place the prompt only looks at): its terms, damping
    ones included, are fused with theirs."""

    @property
    def weights(self) -> Mapping[str, float]: ...

    def terms(self, given: SignalInput, found: Sequence[Term]) -> Iterable[Term]: ...


def default_readers() -> list[Reader]:
    """The built-in readers: where the shot is set and what is on screen (:mod:`retrieval.signals.place`)."""
    return [PlaceReading()]


class Retriever:
    """Retrieve blueprints for shots of one library.

    ``text_embedder``: an embedder with a text tower (``has_text`` and ``embed_texts``), e.g. the
    open_clip one; when None, the library's first configured text-capable embedder is used, if any.
    ``lexical=False`` turns BM25 off (the store's in-memory BM25 over entity text, built per entities version).
    ``signals`` replaces the built-in list (:func:`default_signals`); ``readers`` the readings that
    run after them (:func:`default_readers`; ``reading=False`` for none); ``weights`` overrides the
    weight of any term name, a custom signal's included."""

    def __init__(
        self,
        library: Library,
        *,
        text_embedder: TextEmbedder | None = None,
        budgets: Mapping[str, int] | None = None,
        min_score: float = DEFAULT_MIN_SCORE,
        weights: Mapping[str, float] | None = None,
        lexical: bool = True,
        dense_k: int = 64,
        dense_ranges: Mapping[str, tuple[float, float]] | None = None,
        signals: Sequence[Signal] | None = None,
        readers: Sequence[Reader] | None = None,
        reading: bool = True,
    ):
        self.library = library
        self.budgets = {**DEFAULT_BUDGETS, **(budgets or {})}
        self.min_score = float(min_score)
        self.weight_overrides = dict(weights or {})
        self.text_embedder = _text_embedder(library, text_embedder)
        self.dense = DenseIndex(library, self.text_embedder) if self.text_embedder is not None else None
        if signals is None:
            signals = default_signals(dense=self.dense, lexical=lexical, dense_k=dense_k, dense_ranges=dense_ranges)
        self.signals: list[Signal] = list(signals)
        self.readers: list[Reader] = list(default_readers() if readers is None else readers) if reading else []
        self._catalog = EntityCatalog(library)
        self._reference_cache = ReferenceCache(library)

    @property
    def weights(self) -> dict[str, float]:
        """Each term name's fusion weight: the defaults, then each signal's, then the overrides."""
        merged = dict(WEIGHTS)
        for signal in self.signals:
            merged.update(signal.weights)
        for reader in self.readers:
            merged.update(reader.weights)
        return {**merged, **self.weight_overrides}

    # --- the dense index, for callers that search by vector ---------------------------------------
    @property
    def dense_column(self) -> str | None:
        """The text embedder's column, once it exists in the store."""
        return self.dense.column if self.dense is not None else None

    def dense_index(self) -> VectorIndex | None:
        """The dense column's FAISS index, in step with the table (a cheap version check per call)."""
        return self.dense.index() if self.dense is not None else None

    def search_dense(self, vector: np.ndarray, *, k: int = 10, kind: str | None = None) -> list[DenseHit]:
        """Entities nearest a query vector in the dense column's hot index: best reference per
        entity, best first."""
        return self.dense.search(vector, k=k, kind=kind) if self.dense is not None else []

    # --- the main entry -----------------------------------------------------------------------
    def retrieve(
        self,
        query: ShotQuery,
        context: StoryContext | None = None,
        *,
        keyframes: Sequence[Reference] | None = None,
    ) -> RetrievalResult:
        """The entities a shot needs, with reasons, and the references to condition on.
        ``keyframes``: the story's harvested keyframes when the caller holds them (a story session
        does), so they are not read from the store for every shot."""
        _check_query(query)
        snapshot = self._catalog.get()
        allowed, notes = snapshot.allowed(query)
        given = SignalInput(
            query=query,
            context=context,
            library=self.library,
            entities=snapshot.by_id,
            allowed=allowed,
            matcher=snapshot.matcher,
            version=snapshot.version,
            text_embedder=self.text_embedder,
            notes=notes,
            by_kind=snapshot.by_kind,
            names=snapshot.names,
        )
        terms = self._terms(given)
        evidence = fuse(terms)
        chosen = self._within_budgets(evidence, terms, given)
        refs = self._references(chosen, given, keyframes)
        hits = [_hit(snapshot.by_id[eid], s, evidence[eid], refs.get(eid, ())) for eid, _, s in chosen]
        hits = _with_view_reasons(hits, wanted_views(query.prompt, query.first_frame_prompt, query.view))
        return RetrievalResult(query=query, hits=tuple(hits), notes=tuple(notes))

    def _terms(self, given: SignalInput) -> list[Term]:
        # one signal after another: the faiss-cpu wheel's binding keeps the GIL during a search, so a
        # dense search started on a worker thread did not overlap the other signals (at 1M references
        # retrieve went 8.3-9.0 -> 9.4-9.6 ms p50 when tried, measured in one process, interleaved)
        # the filter again here: a signal of someone else's cannot surface an entity the query refused
        found = [t for signal in self.signals for t in signal.terms(given) if t.entity_id in given.allowed]
        for reader in self.readers:
            found += [t for t in reader.terms(given, tuple(found)) if t.entity_id in given.allowed]
        return found

    def _within_budgets(self, evidence: dict[str, Evidence], terms: Sequence[Term], given: SignalInput) -> Chosen:
        by_id = given.entities
        weights = self.weights  # merged once per shot: the signal lists may change between shots
        ranked = rank(evidence, lambda eid: by_id[eid].kind, weights)
        pinned = frozenset(t.entity_id for t in terms if t.pinned)
        chosen = apply_budgets(ranked, k=given.query.k, budgets=self.budgets, min_score=self.min_score, always=pinned)
        kept = {eid for eid, _, _ in chosen}
        dropped = [by_id[eid].name for eid, _, s in ranked if s >= self.min_score and eid not in kept]
        if dropped:
            given.notes.append(f"over the per-kind budget or k: {', '.join(sorted(dropped))}")
        given.notes.extend(_damped_notes(evidence, by_id, weights, self.min_score, kept))
        return chosen

    def _references(
        self, chosen: Chosen, given: SignalInput, keyframes: Sequence[Reference] | None
    ) -> dict[str, list[Reference]]:
        if not chosen or given.query.references_per_entity <= 0:
            return {}
        entities = [given.entities[eid] for eid, _, _ in chosen]
        self._reference_cache.preload(given.entities)
        return choose_references(
            self.library,
            entities,
            given.query,
            prompt_vector=given.prompt_vector,
            dense_column=self.dense_column,
            cache=self._reference_cache,
            keyframes=keyframes,
        )


def _damped_notes(
    evidence: Mapping[str, Evidence],
    by_id: Mapping[str, Entity],
    weights: Mapping[str, float],
    min_score: float,
    kept: set[str],
) -> list[str]:
    """Why an entity that its other terms would have kept was left out: its damping terms' reasons."""
    notes = []
    negative = {s for s, w in weights.items() if w < 0}
    for eid, e in evidence.items():
        if eid in kept or negative.isdisjoint(e.terms):
            continue
        damping = [s for s in e.terms if s in negative]
        undamped = Evidence(eid, {s: v for s, v in e.terms.items() if s not in damping})
        if undamped.score(weights) >= min_score:
            notes.append(f"left out {by_id[eid].name}: " + "; ".join(e.reason_of[s] for s in damping))
    return notes


def _hit(entity: Entity, score: float, evidence: Evidence, references: Sequence[Reference]) -> Hit:
    return Hit(
        entity=entity,
        score=float(score),
        reasons=tuple(evidence.reasons),
        references=tuple(references),
        signals=tuple(sorted(evidence.raw.items())),
    )


def _text_embedder(library: Library, given: TextEmbedder | None) -> TextEmbedder | None:
    if given is None:
        return next((e for e in library.embedders if text_capable(e)), None)
    if not text_capable(given):
        raise InvalidInputError(
            f"text_embedder {type(given).__name__} has no text tower; give a CLIP-like embedder or None"
        )
    return given


def _with_view_reasons(hits: list[Hit], wanted: Sequence[tuple[str, str]]) -> list[Hit]:
    """Say which wanted view a hit's first reference of that view answers ("view 'back' for
    'from behind'"); a hit without such a reference keeps its best one, silently."""
    if not wanted:
        return hits
    out = []
    for hit in hits:
        shown = {r.view for r in hit.references}
        match = next(((view, why) for view, why in wanted if view in shown), None)
        if match is not None:
            hit = dataclasses.replace(hit, reasons=(*hit.reasons, f"view {match[0]!r} for {match[1]!r}"))
        out.append(hit)
    return out


def _check_query(query: object) -> None:
    if not isinstance(query, ShotQuery):
        raise InvalidInputError(f"retrieve expects a ShotQuery, got {type(query).__name__}")
    if not isinstance(query.prompt, str) or not query.prompt.strip():
        raise InvalidInputError("the shot prompt is empty; give the text of the shot")
    if len(query.prompt) > MAX_PROMPT_CHARS:
        raise InvalidInputError(
            f"the shot prompt has {len(query.prompt)} characters, at most {MAX_PROMPT_CHARS} are allowed"
        )
    if not isinstance(query.k, int) or query.k <= 0:
        raise InvalidInputError(f"k must be a positive integer, got {query.k!r}")
    if not isinstance(query.references_per_entity, int) or query.references_per_entity < 0:
        raise InvalidInputError(f"references_per_entity must be >= 0, got {query.references_per_entity!r}")
    if query.kinds is not None:
        bad = [k for k in query.kinds if k not in KINDS]
        if bad:
            raise InvalidInputError(f"kinds {bad} are unknown; expected some of {KINDS}")
    clean_view(query.view)  # an unknown view is named with the views allowed
    bad_sources = [s for s in query.sources if s not in SOURCES]
    if bad_sources or not query.sources:
        raise InvalidInputError(f"sources {list(query.sources)} must be a non-empty order of {SOURCES}")
