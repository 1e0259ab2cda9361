"""Per-library API keys with scopes, stored by hash only.

A key is ``ck_<id>_<secret>``: ``id`` is public (it names the key in ``keys list`` and ``keys
revoke``), ``secret`` is 32 random bytes (URL-safe base64). The ``keys`` table holds the key's
SHA-256, never the key: :meth:`KeyRing.create` returns the plain key once, and :meth:`KeyRing.verify`
finds the row by its id and compares hashes in constant time.

Scopes nest: ``read`` (list, show, fetch images, query) < ``write`` (read + register, add images,
update, remove) < ``admin`` (write + export and import of the whole library).
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from .errors import InvalidInputError, NotFoundError
from .rows import NOT_NULL, model_fields
from .schema import Id, new_id, now
from .validation import clean_library, sql_str

if TYPE_CHECKING:
    from .store import Store, VersionWatch

KeyScope = Literal["read", "write", "admin"]
SCOPES: tuple[KeyScope, ...] = ("read", "write", "admin")
KEY_PREFIX = "ck_"
_KEY_RE = re.compile(r"^ck_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_ID_RE = re.compile(r"^[0-9a-f]{12}$")


class ApiKey(BaseModel):
    """One row of the ``keys`` table: a key's public id, its library and scope, and its hash."""

    model_config = ConfigDict(extra="forbid")
    id: Id
    library: Id
    scope: Annotated[KeyScope, NOT_NULL]
    key_sha256: Id = Field(repr=False)
    created: datetime = Field(default_factory=now)
    revoked: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def to_json(self) -> dict[str, str | None]:
        """What may be shown of a key: never its hash."""
        return {
            "id": self.id,
            "library": self.library,
            "scope": self.scope,
            "created": self.created.isoformat(),
            "revoked": self.revoked.isoformat() if self.revoked else None,
        }


KEY_SCHEMA = pa.schema(model_fields(ApiKey))


@dataclass(frozen=True)
class NewKey:
    """A key just created: its row, and the plain key (shown once, stored nowhere)."""

    record: ApiKey
    key: str


def scope_allows(held: KeyScope, needed: KeyScope) -> bool:
    """True when a key of scope ``held`` may do what ``needed`` names (scopes nest)."""
    return SCOPES.index(held) >= SCOPES.index(needed)


def clean_scope(scope: object) -> KeyScope:
    for known in SCOPES:
        if scope == known:
            return known
    raise InvalidInputError(f"scope {scope!r} is unknown; expected one of {', '.join(SCOPES)}")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """Create, list, revoke and verify the keys of one store. Verification reads the table again
    only when its version moved on, so a key revoked by another process stops working at once."""

    def __init__(self, store: Store):
        self.store = store
        self._watch: VersionWatch | None = None
        self._seen_version = -1
        self._by_id: dict[str, ApiKey] = {}

    def create(self, library: str, scope: str) -> NewKey:
        """A new key for ``library`` with ``scope``; the plain key is returned here and never again."""
        library, scope = clean_library(library), clean_scope(scope)
        key_id = new_id()[:12]
        key = f"{KEY_PREFIX}{key_id}_{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip('=')}"
        record = ApiKey(id=key_id, library=library, scope=scope, key_sha256=_hash(key))
        table = self.store.keys
        with self.store.write_lock():
            self.store.retry(lambda: table.add([record.model_dump()]))
        return NewKey(record, key)

    def list(self, library: str | None = None) -> builtins.list[ApiKey]:
        """Every key (revoked ones too), oldest first; only those of ``library`` when given."""
        rows = self.store.keys.to_lance().to_table().to_pylist()
        keys = [ApiKey.model_validate(row) for row in rows]
        if library is not None:
            keys = [k for k in keys if k.library == clean_library(library)]
        return sorted(keys, key=lambda k: (k.created, k.id))

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by its id; revoking a revoked key changes nothing."""
        if not isinstance(key_id, str) or not _ID_RE.match(key_id):
            raise InvalidInputError(f"key id {key_id!r} is malformed; expected the 12-hex-digit id from 'keys list'")
        table = self.store.keys
        with self.store.write_lock():
            found = next((k for k in self.list() if k.id == key_id), None)
            if found is None:
                raise NotFoundError(f"no key with id {key_id!r}; see 'continuity keys list'")
            if found.active:
                revoked = now()
                self.store.retry(lambda: table.update(where=f"id = {sql_str(key_id)}", values={"revoked": revoked}))
                found = found.model_copy(update={"revoked": revoked})
        return found

    def has_active_keys(self) -> bool:
        self._refresh()
        return any(k.active for k in self._by_id.values())

    def verify(self, key: str) -> tuple[str, KeyScope] | None:
        """``(library, scope)`` of an active key, or None for anything else."""
        match = _KEY_RE.match(key.strip()) if isinstance(key, str) else None
        if match is None:
            return None
        self._refresh()
        record = self._by_id.get(match.group(1))
        # compare every well-formed key's hash, found or not, so the time says nothing about the id
        expected = record.key_sha256 if record is not None else "0" * 64
        if not hmac.compare_digest(_hash(key.strip()), expected) or record is None or not record.active:
            return None
        return record.library, record.scope

    def _refresh(self) -> None:
        if self._watch is None:
            self.store.keys  # noqa: B018 - creates the table on first use
            self._watch = self.store.watch("keys")
        version = self._watch.version()
        if version != self._seen_version:
            self._by_id = {k.id: k for k in self.list()}
            self._seen_version = version
