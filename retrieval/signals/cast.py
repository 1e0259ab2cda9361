"""The explicit cast and location of a shot: the user said so, so these terms are pinned."""

from __future__ import annotations

from collections.abc import Iterator

from ..catalog import find_entity
from ..fusion import WEIGHTS
from .base import SignalInput, Term


class ExplicitCast:
    """``ShotQuery.cast`` and ``ShotQuery.location``, found by id, name or alias; a name the library
    does not know becomes a note rather than an error (a script may name someone not registered yet)."""

    weights = {"cast": WEIGHTS["cast"]}

    def terms(self, given: SignalInput) -> Iterator[Term]:
        query = given.query
        for name in tuple(query.cast or ()) + ((query.location,) if query.location else ()):
            entity = find_entity(name, given.entities, given.names)
            if entity is None:
                library = given.library.name
                given.notes.append(f"'{name}' is not in library {library!r}; register it or fix the script")
                continue
            if entity.id in given.allowed:
                reason = "the shot's location" if entity.kind == "location" else "in the shot's cast"
                yield Term(entity.id, "cast", 1.0, reason, pinned=True)
