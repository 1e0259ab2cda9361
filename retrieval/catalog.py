"""A library's entities as the retriever sees them: held in memory per entities-table version,
looked up by name, and filtered by a query's kinds, tags and consent."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from memstore.schema import Entity
from memstore.validation import name_key

from .mentions import NameMatcher

if TYPE_CHECKING:
    from memstore.library import Library

    from .query import ShotQuery


class Snapshot:
    """One entities-table version: the entities by id, the name matcher, ids by kind, and the
    filter results of queries without a consent check (those depend on the clock: rights expire)."""

    def __init__(self, version: int, by_id: dict[str, Entity], matcher: NameMatcher):
        self.version = version
        self.by_id = by_id
        self.matcher = matcher
        self.everyone = frozenset(by_id)
        kinds: dict[str, list[str]] = {}
        for eid, entity in by_id.items():
            kinds.setdefault(entity.kind, []).append(eid)
        self.by_kind: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in kinds.items()}
        self.names = NameIndex(by_id)
        self._allowed: dict[tuple[object, ...], frozenset[str]] = {}

    def allowed(self, query: ShotQuery) -> tuple[frozenset[str], list[str]]:
        """:func:`allowed_ids` of the query, kept per (kinds, tags) for queries without consent."""
        if query.require_consent:
            return allowed_ids(query, self.by_id)
        if query.kinds is None and not query.tags:
            return self.everyone, []
        key = (tuple(query.kinds) if query.kinds is not None else None, tuple(query.tags))
        found = self._allowed.get(key)
        if found is None:
            found = allowed_ids(query, self.by_id)[0]
            if len(self._allowed) < 64:
                self._allowed[key] = found
        return found, []


#: entities above which a new table version reads only the entities whose ``updated`` moved on (and
#: the new ones) instead of listing them all: at 50k entities one change cost the next retrieve ~3 s
INCREMENTAL_ABOVE = 2048


class EntityCatalog:
    """A library's entities and name matcher, rebuilt only when the entities table changes; a large
    library's entities are read again only where they changed."""

    def __init__(self, library: Library):
        self.library = library
        self.watch = library.store.watch("entities")
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self.reads = 0  # entities read from the store (tests read it)

    def get(self) -> Snapshot:
        version = self.watch.version()
        with self._lock:
            if self._snapshot is None or self._snapshot.version != version:
                entities = self._entities(self._snapshot)
                self._snapshot = Snapshot(version, {e.id: e for e in entities}, NameMatcher(entities))
            return self._snapshot

    def _entities(self, held: Snapshot | None) -> list[Entity]:
        """The library's entities, in :meth:`Library.list`'s order: all read, or for a large library
        only those whose ``updated`` differs from the held one (every write of an entity moves it on)."""
        if held is None or len(held.by_id) <= INCREMENTAL_ABOVE:
            entities = self.library.list()
            self.reads += len(entities)
            return entities
        stamps = self.library.entity_stamps()
        changed = {eid for eid, at in stamps.items() if eid not in held.by_id or held.by_id[eid].updated != at}
        fresh = self.library.entities_by_id(changed) if changed else {}
        self.reads += len(fresh)
        # unchanged ids are held; a changed one gone before its row was read is gone: left out
        kept = [fresh[eid] if eid in fresh else held.by_id[eid] for eid in stamps if eid in fresh or eid not in changed]
        return sorted(kept, key=lambda e: (e.kind, e.name.casefold()))


class NameIndex:
    """:func:`find_entity` by dictionary lookups: each name and alias key -> its first entity."""

    def __init__(self, by_id: Mapping[str, Entity]):
        self.by_id = by_id
        self.names: dict[str, Entity] = {}
        self.aliases: dict[str, Entity] = {}
        for entity in by_id.values():
            self.names.setdefault(name_key(entity.name), entity)
            for alias in entity.aliases:
                self.aliases.setdefault(name_key(alias), entity)

    def find(self, name: str) -> Entity | None:
        if name in self.by_id:
            return self.by_id[name]
        key = name_key(name)
        return self.names.get(key) or self.aliases.get(key)


def find_entity(name: str, by_id: Mapping[str, Entity], names: NameIndex | None = None) -> Entity | None:
    """The entity with this id, else this name, else this alias (case-insensitive), or None.
    ``names``: the same lookup prepared for ``by_id`` (the catalog's snapshot holds one)."""
    if names is not None:
        return names.find(name)
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
