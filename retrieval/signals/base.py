"""The contract between the retriever and its signals.

A signal reads one :class:`SignalInput` (the query, its story context, the library's entities and
which of them the query allows) and yields :class:`Term` s: "this entity, by this signal, with this
much evidence, because ...". The retriever hands every term to :func:`retrieval.fusion.fuse`; a
signal never sees another signal's terms, so adding one is a module and one entry in the
retriever's signal list (:func:`retrieval.retriever.default_signals`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from memstore.library import Library
    from memstore.schema import Entity

    from ..catalog import NameIndex
    from ..context import StoryContext
    from ..mentions import Mention, NameMatcher
    from ..query import ShotQuery


class TextEmbedder(Protocol):
    """What the dense signals need of an embedder: a text tower beside the image one (CLIP)."""

    @property
    def column_name(self) -> str: ...

    @property
    def has_text(self) -> bool: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def text_capable(embedder: object) -> bool:
    """True for an embedder with a usable text tower (``has_text`` and ``embed_texts``)."""
    return bool(getattr(embedder, "has_text", False)) and hasattr(embedder, "embed_texts")


def embed_prompt(embedder: TextEmbedder, prompt: str) -> np.ndarray:
    vec = np.asarray(embedder.embed_texts([prompt]), dtype=np.float32).reshape(-1)
    return vec / max(float(np.linalg.norm(vec)), 1e-12)


@dataclass(frozen=True)
class Term:
    """One piece of evidence that an entity belongs in the shot."""

    entity_id: str
    signal: str  # the term's name, a key of the fusion weights: "name", "bm25", "clip_image", ...
    evidence: float  # in [0, 1], calibrated by the signal
    reason: str  # printable: it becomes one of Hit.reasons
    raw: float | None = None  # the signal's own value (a BM25 score, a cosine) for Hit.signals
    pinned: bool = False  # the user asked for it (explicit cast): bypasses the budgets and the minimum score


@dataclass(frozen=True)
class SignalInput:
    """Everything a signal may read for one query; built once per :meth:`Retriever.retrieve`."""

    query: ShotQuery
    context: StoryContext | None
    library: Library
    entities: Mapping[str, Entity]  # every entity of the library, by id
    allowed: frozenset[str]  # ids the query's filters (kinds, tags, consent) let through
    matcher: NameMatcher
    version: int  # of the entities table: the key of per-version caches
    text_embedder: TextEmbedder | None = None
    notes: list[str] = field(default_factory=list)  # where a signal says what it could not do, for the user
    by_kind: Mapping[str, Sequence[str]] | None = None  # ids of each kind, when the caller holds them
    names: NameIndex | None = None  # name and alias lookup of ``entities``, when the caller holds one

    def of_kind(self, kind: str) -> Sequence[str]:
        """Ids of every entity of this kind (allowed or not), without a scan when ``by_kind`` is given."""
        if self.by_kind is not None:
            return self.by_kind.get(kind, ())
        return [eid for eid, e in self.entities.items() if e.kind == kind]

    @cached_property
    def mentions(self) -> list[Mention]:
        """Names and aliases in the prompt (allowed or not: story context needs to know who is named)."""
        on_screen = list(self.context.on_screen) if self.context else []
        return self.matcher.find(self.query.prompt, on_screen=on_screen)

    @cached_property
    def prompt_vector(self) -> np.ndarray | None:
        """The prompt's unit text vector, embedded once for every dense signal and the reference choice."""
        if self.text_embedder is None:
            return None
        return embed_prompt(self.text_embedder, self.query.prompt)


@runtime_checkable
class Signal(Protocol):
    """One source of evidence. ``weights``: each term name it yields and how far that term alone can be
    trusted (see :mod:`retrieval.fusion`); a retriever's ``weights=`` overrides them."""

    @property
    def weights(self) -> Mapping[str, float]: ...

    def terms(self, given: SignalInput) -> Iterable[Term]: ...
