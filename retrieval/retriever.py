"""The retriever: a shot prompt (and its story context) -> the entities the shot needs, with reasons,
and for each the reference images to condition on.

Per query: names/aliases (an in-memory matcher built per entities-table version), the story
context, BM25 over the entities table (LanceDB full-text), and, with a text-capable embedder,
CLIP text->image over the FAISS hot index (entities mapped through its in-memory sidecar) and
text->text over cached entity text vectors. Signals are fused (see :mod:`retrieval.fusion`), cut
to per-kind budgets, and only then are the chosen entities' reference rows read from Lance, and
the images of only the chosen references.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from memstore.errors import InvalidInputError
from memstore.index import VersionWatch
from memstore.schema import REFERENCE_META_COLUMNS, Entity, Reference
from memstore.validation import KINDS, SOURCES, sql_in, sql_str

from .context import StoryContext
from .dense import DenseHit, EntityTextVectors, embed_prompt, search_images, text_capable
from .fusion import (
    CLIP_IMAGE_RANGE,
    CLIP_TEXT_RANGE,
    DEFAULT_BUDGETS,
    DEFAULT_MIN_SCORE,
    WEIGHTS,
    Evidence,
    apply_budgets,
    bm25_evidence,
    cosine_evidence,
    mmr,
)
from .lexical import LexicalSearcher
from .mentions import NameMatcher
from .query import Hit, RetrievalResult, ShotQuery

MAX_PROMPT_CHARS = 20_000


class _EntityCache:
    """A library's entities and name matcher, rebuilt only when the entities table changes."""

    def __init__(self, library: Any):
        self.library = library
        self.watch = VersionWatch(library.store, "entities")
        self.version: int | None = None
        self.by_id: dict[str, Entity] = {}
        self.matcher = NameMatcher(())
        self._lock = threading.Lock()

    def get(self) -> tuple[int, dict[str, Entity], NameMatcher]:
        version = self.watch.version()
        with self._lock:
            if version != self.version:
                entities = self.library.list()
                self.by_id = {e.id: e for e in entities}
                self.matcher = NameMatcher(entities)
                self.version = version
            return self.version, self.by_id, self.matcher


class Retriever:
    """Retrieve blueprints for shots of one library.

    ``text_embedder``: an embedder with a text tower (``has_text`` and ``embed_texts``), e.g. the
    open_clip one; when None, the library's first configured text-capable embedder is used, if any.
    ``lexical=False`` turns BM25 off (it reads Lance per query; the other signals do not)."""

    def __init__(
        self,
        library: Any,
        *,
        text_embedder: Any = None,
        budgets: dict[str, int] | None = None,
        min_score: float = DEFAULT_MIN_SCORE,
        weights: dict[str, float] | None = None,
        lexical: bool = True,
        dense_k: int = 64,
        dense_ranges: dict[str, tuple[float, float]] | None = None,
    ):
        self.library = library
        self.store = library.store
        self.budgets = {**DEFAULT_BUDGETS, **(budgets or {})}
        self.min_score = float(min_score)
        self.weights = {**WEIGHTS, **(weights or {})}
        self.lexical = LexicalSearcher(self.store) if lexical else None
        self.dense_k = dense_k
        # cosine -> evidence calibration per dense signal; another embedder than CLIP ViT-B needs its own
        self.dense_ranges = {"clip_image": CLIP_IMAGE_RANGE, "clip_text": CLIP_TEXT_RANGE, **(dense_ranges or {})}
        if text_embedder is None:
            text_embedder = next((e for e in library.embedders if text_capable(e)), None)
        elif not text_capable(text_embedder):
            raise InvalidInputError(
                f"text_embedder {type(text_embedder).__name__} has no text tower; give a CLIP-like embedder or None"
            )
        self.text_embedder = text_embedder
        self.text_vectors = EntityTextVectors(text_embedder) if text_embedder is not None else None
        self._entities = _EntityCache(library)
        self._index: Any = None  # the dense column's VectorIndex, held: Store.index() reads the schema
        self._dense_column: str | None = None

    # --- the dense path -----------------------------------------------------------------------
    @property
    def dense_column(self) -> str | None:
        """The text embedder's column, once it exists in the store (checked until it does)."""
        if self.text_embedder is None:
            return None
        if self._dense_column is None:
            column = self.text_embedder.column_name
            if column in self.store.vector_columns():
                self._dense_column = column
        return self._dense_column

    def dense_index(self) -> Any:
        """The dense column's FAISS index, in step with the table (a cheap version check per call)."""
        column = self.dense_column
        if column is None:
            return None
        if self._index is None:
            self._index = self.store.index(self.library.name, column)
        else:
            self._index.sync()
        return self._index

    def search_dense(self, vector: Any, *, k: int = 10, kind: str | None = None) -> list[DenseHit]:
        """Entities nearest a query vector in the dense column's hot index (no Lance read beyond
        the version check): best reference per entity, best first."""
        index = self.dense_index()
        if index is None:
            return []
        return search_images(index, np.asarray(vector, dtype=np.float32), k=k, kind=kind)

    # --- the main entry -----------------------------------------------------------------------
    def retrieve(self, query: ShotQuery, context: StoryContext | None = None) -> RetrievalResult:
        _check_query(query)
        version, by_id, matcher = self._entities.get()
        notes: list[str] = []
        allowed = self._allowed(query, by_id, notes)
        evidence: dict[str, Evidence] = {}

        def ev(eid: str) -> Evidence:
            return evidence.setdefault(eid, Evidence(eid))

        # explicit cast and location: the user said so
        explicit: set[str] = set()
        for name in tuple(query.cast or ()) + ((query.location,) if query.location else ()):
            entity = self._find(name, by_id)
            if entity is None:
                notes.append(f"'{name}' is not in library {self.library.name!r}; register it or fix the script")
                continue
            if entity.id not in allowed:
                continue
            explicit.add(entity.id)
            ev(entity.id).add("cast", 1.0, "in the shot's cast" if entity.kind != "location" else "the shot's location")

        on_screen = list(context.on_screen) if context else []
        mentions = matcher.find(query.prompt, on_screen=on_screen)
        for m in mentions:
            if m.entity_id in allowed:
                ev(m.entity_id).add("alias" if m.is_alias else "name", 1.0, m.reason())

        if context is not None:
            cast_given = query.cast is not None
            characters = {i: e for i, e in by_id.items() if e.kind == "character" and i in allowed}
            for r in context.resolve(query.prompt, characters, cut=query.cut, mentioned=[m.entity_id for m in mentions]):
                entity = by_id.get(r.entity_id)
                if entity is None or r.entity_id not in allowed:
                    continue
                if entity.kind == "character" and cast_given:
                    continue  # an explicit cast overrides inference about who is on screen
                if entity.kind == "location" and query.location:
                    continue
                ev(r.entity_id).add(r.signal, r.evidence, r.reason)

        if self.lexical is not None and by_id:
            hits = [h for h in self.lexical.search(self.library.name, query.prompt, k=20) if h.entity_id in allowed]
            top: dict[str, float] = {}  # per kind: a location competes with locations only
            for h in hits:
                kind = by_id[h.entity_id].kind
                top[kind] = max(top.get(kind, 0.0), h.score)
            for h in hits:
                e = bm25_evidence(h.score, top[by_id[h.entity_id].kind])
                if e > 0.05:
                    ev(h.entity_id).add("bm25", e, f"BM25 on description {h.score:.2f}", h.score)

        qvec = None
        if self.text_embedder is not None and by_id:
            qvec = embed_prompt(self.text_embedder, query.prompt)
            for h in self.search_dense(qvec, k=self.dense_k):
                if h.entity_id in allowed:
                    ev(h.entity_id).add("clip_image", cosine_evidence(h.score, self.dense_ranges["clip_image"]),
                                        f"CLIP text->image {h.score:.2f}", h.score)
            entities = list(by_id.values())
            for h in self.text_vectors.search(self.library.name, version, entities, qvec, k=20):
                if h.entity_id in allowed:
                    ev(h.entity_id).add("clip_text", cosine_evidence(h.score, self.dense_ranges["clip_text"]),
                                        f"CLIP text->text {h.score:.2f}", h.score)

        ranked = [(eid, by_id[eid].kind, e.score(self.weights)) for eid, e in evidence.items() if e.terms]
        budgets = dict(self.budgets)
        chosen = apply_budgets(ranked, k=query.k, budgets=budgets, min_score=self.min_score, always=frozenset(explicit))
        dropped = [by_id[eid].name for eid, _, s in ranked if s >= self.min_score and eid not in {c[0] for c in chosen}]
        if dropped:
            notes.append(f"over the per-kind budget or k: {', '.join(sorted(dropped))}")
        refs = self._references([by_id[eid] for eid, _, _ in chosen], query, qvec)
        hits = tuple(
            Hit(
                entity=by_id[eid],
                score=float(score),
                reasons=tuple(evidence[eid].reasons),
                references=tuple(refs.get(eid, ())),
                signals=tuple(sorted(evidence[eid].raw.items())),
            )
            for eid, _, score in chosen
        )
        return RetrievalResult(query=query, hits=hits, notes=tuple(notes))

    # --- filters ------------------------------------------------------------------------------
    @staticmethod
    def _find(name: str, by_id: dict[str, Entity]) -> Entity | None:
        from memstore.validation import name_key

        if name in by_id:
            return by_id[name]
        key = name_key(name)
        for entity in by_id.values():
            if name_key(entity.name) == key:
                return entity
        for entity in by_id.values():
            if key in {name_key(a) for a in entity.aliases}:
                return entity
        return None

    def _allowed(self, query: ShotQuery, by_id: dict[str, Entity], notes: list[str]) -> set[str]:
        out = set()
        refused = []
        for eid, entity in by_id.items():
            if query.kinds is not None and entity.kind not in query.kinds:
                continue
            if query.tags and not set(query.tags) <= set(entity.tags):
                continue
            if query.require_consent and (entity.rights.consent is not True or entity.rights.problem() is not None):
                refused.append(entity.name)
                continue
            out.add(eid)
        if refused:
            notes.append(f"left out for consent or rights (require_consent): {', '.join(sorted(refused))}")
        return out

    # --- references ---------------------------------------------------------------------------
    def _references(self, entities: Sequence[Entity], query: ShotQuery, qvec: np.ndarray | None) -> dict[str, list[Reference]]:
        """Choose ``references_per_entity`` references per entity (era, source, quality, MMR),
        then read the images of those only."""
        n = query.references_per_entity
        if not entities or n <= 0:
            return {}
        vector_cols = list(self.store.vector_columns())
        ids = [e.id for e in entities]
        where = f"library = {sql_str(self.library.name)} AND {sql_in('entity_id', ids)}"
        rows = self.store.references.search().where(where).select(REFERENCE_META_COLUMNS + vector_cols).limit(None).to_list()
        by_entity: dict[str, list[Reference]] = {}
        for row in rows:
            by_entity.setdefault(row["entity_id"], []).append(Reference.from_row(row, vector_cols))
        eras = dict(query.eras)
        sources = [s for s in query.sources if s in SOURCES]
        mmr_col = self.dense_column or (vector_cols[0] if vector_cols else None)
        chosen: dict[str, list[Reference]] = {}
        for entity in entities:
            refs = [r for r in by_entity.get(entity.id, []) if r.source in sources and not _from_the_future(r, query)]
            want = eras.get(entity.name) or eras.get(entity.id) or query.era
            if want is not None:
                in_era = [r for r in refs if r.era == want]
                refs = in_era or [r for r in refs if r.era == "default"] or refs
            if not refs:
                continue
            rel = []
            for r in refs:
                value = 0.5 if r.quality is None else float(r.quality)
                value += 0.5 * (len(sources) - sources.index(r.source)) / len(sources)  # preferred source first
                if want is not None and r.era == want:
                    value += 0.5
                if qvec is not None and self.dense_column in r.vectors:
                    value += float(r.vectors[self.dense_column] @ qvec)
                rel.append(value)
            vecs = None
            if mmr_col is not None and all(mmr_col in r.vectors for r in refs):
                vecs = np.stack([r.vectors[mmr_col] for r in refs])
            chosen[entity.id] = [refs[i] for i in mmr(rel, vecs, n)]
        return self._with_images(chosen)

    def _with_images(self, chosen: dict[str, list[Reference]]) -> dict[str, list[Reference]]:
        ids = [r.id for refs in chosen.values() for r in refs]
        if not ids:
            return chosen
        where = f"library = {sql_str(self.library.name)} AND {sql_in('id', ids)}"
        rows = self.store.references.search().where(where).select(["id", "image"]).limit(None).to_list()
        images = {r["id"]: r["image"] for r in rows}
        return {
            eid: [r.model_copy(update={"image": images.get(r.id)}) for r in refs] for eid, refs in chosen.items()
        }


def _from_the_future(ref: Reference, query: ShotQuery) -> bool:
    """A keyframe harvested from this story's shot ``shot_index`` or later: using it would make a
    shot depend on its own output (and a rerun differ from the first run)."""
    return (
        ref.source == "harvested" and query.story_id is not None and query.shot_index is not None
        and ref.story == query.story_id and ref.shot is not None and ref.shot >= query.shot_index
    )


def _check_query(query: Any) -> None:
    if not isinstance(query, ShotQuery):
        raise InvalidInputError(f"retrieve expects a ShotQuery, got {type(query).__name__}")
    if not isinstance(query.prompt, str) or not query.prompt.strip():
        raise InvalidInputError("the shot prompt is empty; give the text of the shot")
    if len(query.prompt) > MAX_PROMPT_CHARS:
        raise InvalidInputError(f"the shot prompt has {len(query.prompt)} characters, at most {MAX_PROMPT_CHARS} are allowed")
    if not isinstance(query.k, int) or query.k <= 0:
        raise InvalidInputError(f"k must be a positive integer, got {query.k!r}")
    if not isinstance(query.references_per_entity, int) or query.references_per_entity < 0:
        raise InvalidInputError(f"references_per_entity must be >= 0, got {query.references_per_entity!r}")
    if query.kinds is not None:
        bad = [k for k in query.kinds if k not in KINDS]
        if bad:
            raise InvalidInputError(f"kinds {bad} are unknown; expected some of {KINDS}")
    bad_sources = [s for s in query.sources if s not in SOURCES]
    if bad_sources or not query.sources:
        raise InvalidInputError(f"sources {list(query.sources)} must be a non-empty order of {SOURCES}")
