"""Every use of an entity: the shots that retrieved it, their output files and watermark ids, and
the entity's consent history (what a rights desk needs when a person withdraws consent)."""

from __future__ import annotations

from typing import Any

from memstore.consent_log import ConsentLog
from memstore.library import Library
from memstore.schema import Entity

from .verify import shot_summary

__all__ = ["audit_entity"]


def audit_entity(library: Library, entity: str | Entity) -> dict[str, Any]:
    """The entity, its consent now and its consent events, and every finished shot of any story of
    the library that used it, with the shot's output files and watermark id."""
    current = library.get(entity.id if isinstance(entity, Entity) else entity)
    uses = [shot_summary(library.store, record) for record in library.shots.using(current.id)]
    return {
        "entity": {"id": current.id, "name": current.name, "kind": current.kind, "library": library.name},
        "consent": current.rights.consent,
        "consent_events": [e.to_json() for e in ConsentLog(library).events(current)],
        "shots": uses,
        "files": sorted({f for use in uses for f in use["outputs"]}),
        "watermarks": sorted({use["watermark"] for use in uses if use["watermark"]}),
    }
