"""ConsentLog: the ``consent_events`` table, an append-only record of consent given and withdrawn.

An entity's ``rights.consent`` says what holds now; the log says who recorded it, when, and on
what evidence (the sha256 of a signed release, an email, a form). Events are never updated or
deleted: a withdrawal is a new event. Recording an event also sets the entity's consent, in the same
write-lock section, so a revocation blocks new generation at once (the story loop refuses an entity
whose consent is False) and is never without its evidence.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import InvalidInputError
from .rows import NOT_NULL, model_fields
from .schema import Entity, Id, new_id, now
from .validation import clean_text, sql_str

if TYPE_CHECKING:
    from .library import Library

__all__ = ["CONSENT_EVENT_SCHEMA", "ConsentEvent", "ConsentLog"]

MAX_BY_CHARS = 200


class ConsentEvent(BaseModel):
    """One recorded grant or withdrawal of consent for an entity."""

    model_config = ConfigDict(extra="forbid")
    id: Id = Field(default_factory=new_id)
    library: Id
    entity_id: Id
    entity_name: Annotated[str, NOT_NULL]  # as it was named then (names change; ids do not)
    granted: Annotated[bool, NOT_NULL]
    by: Annotated[str, NOT_NULL]  # who recorded it (the person, their agent, the studio's rights desk)
    at: datetime = Field(default_factory=now)
    document_sha256: str | None = None  # the evidence: sha256 of the signed release or withdrawal

    @field_validator("by")
    @classmethod
    def _by(cls, value: str) -> str:
        value = clean_text(value, "consent recorded by")
        if not value.strip() or len(value) > MAX_BY_CHARS:
            raise ValueError(f"'by' names who recorded the consent, 1 to {MAX_BY_CHARS} characters")
        return value

    @field_validator("document_sha256")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("document_sha256 is 64 hex digits (the sha256 of the document)")
        return value

    def to_json(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "at": self.at.isoformat()}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ConsentEvent:
        return cls.model_validate(row)


CONSENT_EVENT_SCHEMA = pa.schema(model_fields(ConsentEvent))


class ConsentLog:
    """The consent events of one library."""

    def __init__(self, library: Library):
        self.library = library
        self.store = library.store

    def record(self, entity: str | Entity, granted: bool, by: str, document_sha256: str | None = None) -> ConsentEvent:
        """Append a grant (``granted=True``) or withdrawal and set the entity's consent to match."""
        if not isinstance(granted, bool):
            raise InvalidInputError(f"granted must be True or False, got {granted!r}")
        with self.store.write_lock():
            current = self.library.get(entity.id if isinstance(entity, Entity) else entity)
            try:
                event = ConsentEvent(
                    library=self.library.name,
                    entity_id=current.id,
                    entity_name=current.name,
                    granted=granted,
                    by=by,
                    document_sha256=document_sha256,
                )
            except ValueError as exc:  # pydantic's ValidationError: one line, what to fix
                first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc)}
                raise InvalidInputError(f"bad consent event for {current.name!r}: {first.get('msg')}") from None
            # the rights first: a withdrawal must block generation even if the log append then fails
            self.library.update(current, rights={**current.rights.model_dump(), "consent": granted})
            self.store.retry(lambda: self.store.consent_events.add([event.model_dump()]))
        return event

    def events(self, entity: str | Entity | None = None) -> builtins.list[ConsentEvent]:
        """The library's events (of one entity when given), oldest first."""
        clauses = [f"library = {sql_str(self.library.name)}"]
        if entity is not None:
            entity_id = entity.id if isinstance(entity, Entity) else self.library.get(entity).id
            clauses.append(f"entity_id = {sql_str(entity_id)}")
        rows = self.store.consent_events.search().where(" AND ".join(clauses)).limit(None).to_list()
        return sorted((ConsentEvent.from_row(r) for r in rows), key=lambda e: (e.at, e.id))
