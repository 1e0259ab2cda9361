"""Story context as a signal: who a continuation shot carries over, whom a pronoun or a definite
description ("the old man") points to (the resolution itself is :meth:`StoryContext.resolve`)."""

from __future__ import annotations

from collections.abc import Iterator

from ..fusion import WEIGHTS
from .base import SignalInput, Term


class StoryContextSignal:
    """Terms "carried" and "pronoun" from the query's :class:`StoryContext`; nothing without one.
    An explicit cast overrides inference about who is on screen, an explicit location where."""

    weights = {"carried": WEIGHTS["carried"], "pronoun": WEIGHTS["pronoun"]}

    def terms(self, given: SignalInput) -> Iterator[Term]:
        if given.context is None:
            return
        query = given.query
        characters = {i: e for i, e in given.entities.items() if e.kind == "character" and i in given.allowed}
        mentioned = [m.entity_id for m in given.mentions]
        for r in given.context.resolve(query.prompt, characters, cut=query.cut, mentioned=mentioned):
            entity = given.entities.get(r.entity_id)
            if entity is None or r.entity_id not in given.allowed:
                continue
            if entity.kind == "character" and query.cast is not None:
                continue
            if entity.kind == "location" and query.location:
                continue
            yield Term(r.entity_id, r.signal, r.evidence, r.reason)
