"""Rights and consent gate: refuse to generate with an entity whose person said no or whose rights
ran out, unless the user overrode it by name or id, in which case the override is returned so the
story runner can write it into the shot's provenance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from memstore.errors import ConsentError, InvalidInputError
from memstore.schema import Entity, now
from memstore.validation import name_key

__all__ = ["ConsentOverride", "check_rights", "rights_problem"]

NOT_RECORDED = "consent is not recorded"


@dataclass(frozen=True)
class ConsentOverride:
    """A refused entity that the user chose to use anyway: what, why, and when it was overridden."""

    entity_id: str
    name: str
    reason: str
    overridden_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "name": self.name,
            "reason": self.reason,
            "overridden_at": self.overridden_at.isoformat(),
        }


def _utc(at: datetime | None) -> datetime:
    if at is None:
        return now()
    if not isinstance(at, datetime):
        raise InvalidInputError(f"'at' must be a datetime, got {type(at).__name__}")
    # A naive time is read as UTC, like the store's own timestamps.
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _entity_of(item: Any) -> Entity:
    if isinstance(item, Entity):
        return item
    entity = getattr(item, "entity", None)  # a retrieval Hit, or anything that carries one
    if isinstance(entity, Entity):
        return entity
    raise InvalidInputError(f"check_rights takes entities or hits, got {type(item).__name__}")


def rights_problem(entity: Entity, *, require_consent: bool = False, at: datetime | None = None) -> str | None:
    """Why ``entity`` may not be used at ``at`` (None when it may)."""
    problem = entity.rights.problem(_utc(at))
    if problem is None and require_consent and entity.rights.consent is None:
        problem = NOT_RECORDED
    return problem


def _override_keys(overrides: Iterable[str] | str) -> tuple[set[str], set[str]]:
    if isinstance(overrides, str):  # one name given bare: do not iterate its characters
        overrides = [overrides]
    ids, keys = set(), set()
    for value in overrides or ():
        if not isinstance(value, str):
            raise InvalidInputError(f"consent overrides are entity names or ids, got {type(value).__name__}")
        ids.add(value)
        keys.add(name_key(value))
    return ids, keys


def _overridden(entity: Entity, ids: set[str], keys: set[str]) -> bool:
    return entity.id in ids or any(name_key(n) in keys for n in entity.names)


def check_rights(
    hits_or_entities: Iterable[Any],
    *,
    overrides: Iterable[str] | str = (),
    require_consent: bool = False,
    at: datetime | None = None,
) -> list[ConsentOverride]:
    """Check every entity (or hit's entity) once; raise :class:`ConsentError` naming each refused
    entity that was not overridden, else return the overrides that were used, in input order.

    An entity is refused when its consent is False, its rights expired at ``at`` (default: now),
    or, with ``require_consent``, its consent was never recorded. ``overrides`` holds entity ids,
    names or aliases (matched like names: case- and space-insensitive)."""
    when = _utc(at)
    ids, keys = _override_keys(overrides)
    used: list[ConsentOverride] = []
    refused: list[tuple[Entity, str]] = []
    seen: set[str] = set()
    for item in hits_or_entities:
        entity = _entity_of(item)
        if entity.id in seen:
            continue
        seen.add(entity.id)
        problem = rights_problem(entity, require_consent=require_consent, at=when)
        if problem is None:
            continue
        if _overridden(entity, ids, keys):
            used.append(ConsentOverride(entity.id, entity.name, problem, when))
        else:
            refused.append((entity, problem))
    if refused:
        what = "; ".join(f"{e.name!r} (id {e.id}, library {e.library!r}): {why}" for e, why in refused)
        names = ", ".join(repr(e.name) for e, _ in refused)
        error = ConsentError(
            f"cannot generate with {what}; fix the rights in the library, or pass {names} as a consent"
            " override to use it anyway (the override is recorded in the shot's provenance)"
        )
        error.refused = [(e.id, e.name, why) for e, why in refused]  # for callers that report each
        raise error
    return used
