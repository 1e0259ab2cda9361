"""BM25 over an entity's name, aliases and description, through :meth:`Library.text_search`
(the store keeps the full-text index; here only its scores are turned into evidence)."""

from __future__ import annotations

from collections.abc import Iterator

from ..fusion import WEIGHTS, bm25_evidence
from .base import SignalInput, Term

#: below this evidence a BM25 term is noise (a stop-word-like overlap), not worth a reason
MIN_EVIDENCE = 0.05


class Bm25:
    """Entities whose text matches the prompt's words, scored relative to the best hit of their
    own kind: a location competes with locations only."""

    weights = {"bm25": WEIGHTS["bm25"]}

    def __init__(self, k: int = 20):
        self.k = k

    def terms(self, given: SignalInput) -> Iterator[Term]:
        if not given.entities:
            return
        found = given.library.text_search(given.query.prompt, k=self.k)
        hits = [(eid, score) for eid, score in found if eid in given.allowed]
        top: dict[str, float] = {}
        for eid, score in hits:
            kind = given.entities[eid].kind
            top[kind] = max(top.get(kind, 0.0), score)
        for eid, score in hits:
            evidence = bm25_evidence(score, top[given.entities[eid].kind])
            if evidence > MIN_EVIDENCE:
                yield Term(eid, "bm25", evidence, f"BM25 on description {score:.2f}", score)
