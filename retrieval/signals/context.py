"""Story context as a signal: who a continuation shot carries over, whom a pronoun, a description
("the old man") or an introduction ("an astronaut") points to (the resolution itself is
:meth:`StoryContext.resolve`), and the place of the scene's earlier shots (:meth:`StoryContext.scene_place`)."""

from __future__ import annotations

from collections.abc import Iterator

from ..fusion import WEIGHTS
from .base import SignalInput, Term

SCENE_REASON = "the place of this scene's earlier shots (a cut inside a scene is no change of place)"


class StoryContextSignal:
    """Terms "carried", "pronoun", "introduced" and "scene" from the query's :class:`StoryContext`;
    nothing without one. An explicit cast overrides inference about who is on screen, an explicit
    location where."""

    weights = {k: WEIGHTS[k] for k in ("carried", "pronoun", "introduced", "scene")}

    def terms(self, given: SignalInput) -> Iterator[Term]:
        if given.context is None:
            return
        query = given.query
        characters = {i: given.entities[i] for i in given.of_kind("character") if i in given.allowed}
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
        place = given.context.scene_place(query.scene)
        if place is not None and place in given.allowed and not query.location:
            yield Term(place, "scene", 1.0, SCENE_REASON)
