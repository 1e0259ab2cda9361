"""A library's entities as the retriever sees them: held in memory per entities-table version,
looked up by name, and filtered by a query's kinds, tags and consent."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from memstore.schema import Entity
from memstore.validation import name_key

from .mentions import NameMatcher

if TYPE_CHECKING:
    from memstore.library import Library

    from .query import ShotQuery


class Snapshot(NamedTuple):
    version: int
    by_id: dict[str, Entity]
    matcher: NameMatcher


class EntityCatalog:
    """A library's entities and name matcher, rebuilt only when the entities table changes."""

    def __init__(self, library: Library):
        self.library = library
        self.watch = library.store.watch("entities")
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def get(self) -> Snapshot:
        version = self.watch.version()
        with self._lock:
            if self._snapshot is None or self._snapshot.version != version:
                entities = self.library.list()
                self._snapshot = Snapshot(version, {e.id: e for e in entities}, NameMatcher(entities))
            return self._snapshot


def find_entity(name: str, by_id: Mapping[str, Entity]) -> Entity | None:
    """The entity with this id, else this name, else this alias (case-insensitive), or None."""
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


def allowed_ids(query: ShotQuery, by_id: Mapping[str, Entity]) -> tuple[frozenset[str], list[str]]:
    """Ids that pass the query's kinds, tags and consent filters, and a note naming those refused
    for consent or rights (a silent drop would look like a retrieval miss)."""
    out = set()
    refused = []
    for eid, entity in by_id.items():
        if query.kinds is not None and entity.kind not in query.kinds:
            continue
        if query.tags and not set(query.tags) <= set(entity.tags):
            continue
        if query.require_consent and not _consented(entity):
            refused.append(entity.name)
            continue
        out.add(eid)
    notes = []
    if refused:
        notes.append(f"left out for consent or rights (require_consent): {', '.join(sorted(refused))}")
    return frozenset(out), notes


def _consented(entity: Entity) -> bool:
    return entity.rights.consent is True and entity.rights.problem() is None
