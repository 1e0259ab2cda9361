"""Records of the store. Each pydantic model is the validator and the result type of its table;
the Arrow schema beside it is the table's layout on disk.

Why not ``LanceModel``: vector columns are added per configured embedder at run time (one column
per embedder), so the references table's schema is built from the fixed fields below plus a field
per embedder, each carrying that embedder's name, spec and dimension in its field metadata.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any, Literal, Optional

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .validation import clean_description, clean_era, clean_name, clean_tags, clean_text

Kind = Literal["character", "location", "prop", "style"]
Source = Literal["registered", "harvested"]


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> datetime:
    return datetime.now(timezone.utc)


def faiss_key(ref_id: str) -> int:
    """Stable 63-bit integer id of a reference for FAISS, derived from its hex id (survives export)."""
    return int(ref_id[:16], 16) & ((1 << 63) - 1)


class Rights(BaseModel):
    """Who owns a blueprint, under which license, and whether the depicted person consented."""

    model_config = ConfigDict(extra="forbid")
    owner: Optional[str] = None
    license: Optional[str] = None
    consent: Optional[bool] = None  # None: not recorded
    expires: Optional[datetime] = None

    @field_validator("owner", "license")
    @classmethod
    def _text(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else clean_text(value, "rights field")

    def problem(self, at: datetime | None = None) -> str | None:
        """Why generation should refuse this entity, or None when it may be used."""
        at = at or now()
        if at.tzinfo is None:  # a naive time is UTC, like the store's timestamps
            at = at.replace(tzinfo=timezone.utc)
        if self.consent is False:
            return "consent is 'no'"
        if self.expires is not None:
            expires = self.expires if self.expires.tzinfo else self.expires.replace(tzinfo=timezone.utc)
            if expires <= at:
                return f"rights expired on {expires.date().isoformat()}"
        return None


class Entity(BaseModel):
    """A character, location, prop or style of a library."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(default_factory=new_id)
    library: str = "default"
    kind: Kind
    name: str
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    rights: Rights = Field(default_factory=Rights)
    created: datetime = Field(default_factory=now)
    updated: datetime = Field(default_factory=now)

    _name = field_validator("name")(lambda cls, v: clean_name(v))
    _desc = field_validator("description", mode="before")(lambda cls, v: clean_description(v))
    _tags = field_validator("tags")(lambda cls, v: clean_tags(v))

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        out: dict[str, None] = {}
        for alias in value:
            out[clean_name(alias, "alias")] = None
        return list(out)

    @property
    def names(self) -> list[str]:
        return [self.name, *self.aliases]

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "library": self.library,
            "kind": self.kind,
            "name": self.name,
            "name_key": _key(self.name),
            "aliases": list(self.aliases),
            "alias_keys": [_key(a) for a in self.aliases],
            "description": self.description,
            "search_text": " ".join([self.name, *self.aliases, self.description]),
            "tags": list(self.tags),
            "attributes": json.dumps(self.attributes, sort_keys=True, default=str),
            "rights_owner": self.rights.owner,
            "rights_license": self.rights.license,
            "consent": self.rights.consent,
            "rights_expires": self.rights.expires,
            "created": self.created,
            "updated": self.updated,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Entity":
        return cls.model_construct(
            id=row["id"],
            library=row["library"],
            kind=row["kind"],
            name=row["name"],
            aliases=list(row["aliases"] or []),
            description=row["description"] or "",
            tags=list(row["tags"] or []),
            attributes=json.loads(row["attributes"] or "{}"),
            rights=Rights(
                owner=row["rights_owner"],
                license=row["rights_license"],
                consent=row["consent"],
                expires=_utc(row["rights_expires"]),
            ),
            created=_utc(row["created"]),
            updated=_utc(row["updated"]),
        )


class Reference(BaseModel):
    """One reference image of an entity, with its embeddings. ``image`` is None unless asked for."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    id: str = Field(default_factory=new_id)
    entity_id: str
    library: str = "default"
    kind: Kind
    era: str = "default"
    source: Source = "registered"
    image: Optional[bytes] = Field(default=None, repr=False)
    image_format: str = "png"
    width: int
    height: int
    sha256: str
    story: Optional[str] = None
    shot: Optional[int] = None
    frame: Optional[int] = None
    face_box: Optional[list[float]] = None  # x0, y0, x1, y1 in pixels
    quality: Optional[float] = None
    created: datetime = Field(default_factory=now)
    vectors: dict[str, np.ndarray] = Field(default_factory=dict, repr=False)

    _era = field_validator("era")(lambda cls, v: clean_era(v))

    @property
    def key(self) -> int:
        return faiss_key(self.id)

    def pil(self):
        from .images import decode

        if self.image is None:
            raise ValueError("reference was read without its image; ask with with_images=True")
        return decode(self.image)

    def to_row(self) -> dict[str, Any]:
        row = {
            "id": self.id,
            "key": self.key,
            "entity_id": self.entity_id,
            "library": self.library,
            "kind": self.kind,
            "era": self.era,
            "source": self.source,
            "image": self.image,
            "image_format": self.image_format,
            "width": self.width,
            "height": self.height,
            "sha256": self.sha256,
            "story": self.story,
            "shot": self.shot,
            "frame": self.frame,
            "face_box": self.face_box,
            "quality": self.quality,
            "created": self.created,
        }
        for column, vec in self.vectors.items():
            row[column] = None if vec is None else np.asarray(vec, dtype=np.float32)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any], vector_columns: list[str]) -> "Reference":
        vectors = {
            c: np.asarray(row[c], dtype=np.float32) for c in vector_columns if row.get(c) is not None
        }
        return cls.model_construct(
            id=row["id"],
            entity_id=row["entity_id"],
            library=row["library"],
            kind=row["kind"],
            era=row["era"],
            source=row["source"],
            image=row.get("image"),
            image_format=row["image_format"],
            width=row["width"],
            height=row["height"],
            sha256=row["sha256"],
            story=row["story"],
            shot=row["shot"],
            frame=row["frame"],
            face_box=list(row["face_box"]) if row.get("face_box") is not None else None,
            quality=row["quality"],
            created=_utc(row["created"]),
            vectors=vectors,
        )


def _key(name: str) -> str:
    from .validation import name_key

    return name_key(name)


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


TS = pa.timestamp("us", tz="UTC")

ENTITY_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("library", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("name_key", pa.string(), nullable=False),
        pa.field("aliases", pa.list_(pa.string())),
        pa.field("alias_keys", pa.list_(pa.string())),
        pa.field("description", pa.string()),
        pa.field("search_text", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("attributes", pa.string()),
        pa.field("rights_owner", pa.string()),
        pa.field("rights_license", pa.string()),
        pa.field("consent", pa.bool_()),
        pa.field("rights_expires", TS),
        pa.field("created", TS),
        pa.field("updated", TS),
    ]
)

REFERENCE_BASE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("key", pa.int64(), nullable=False),
    pa.field("entity_id", pa.string(), nullable=False),
    pa.field("library", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("era", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("image", pa.large_binary()),
    pa.field("image_format", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("sha256", pa.string()),
    pa.field("story", pa.string()),
    pa.field("shot", pa.int32()),
    pa.field("frame", pa.int32()),
    pa.field("face_box", pa.list_(pa.float32())),
    pa.field("quality", pa.float32()),
    pa.field("created", TS),
]
REFERENCE_META_COLUMNS = [f.name for f in REFERENCE_BASE_FIELDS if f.name != "image"]


def vector_field(column: str, dim: int, embedder_name: str, spec: str) -> pa.Field:
    """A vector column that says which embedder made it."""
    return pa.field(
        column,
        pa.list_(pa.float32(), dim),
        nullable=True,
        metadata={b"embedder": embedder_name.encode(), b"spec": spec.encode(), b"dim": str(dim).encode()},
    )


def reference_schema(vector_fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(REFERENCE_BASE_FIELDS + list(vector_fields))


TOKEN_SCHEMA = pa.schema(
    [
        pa.field("reference_id", pa.string(), nullable=False),
        pa.field("library", pa.string(), nullable=False),
        pa.field("entity_id", pa.string(), nullable=False),
        pa.field("spec", pa.string(), nullable=False),
        pa.field("ref_sha256", pa.string(), nullable=False),
        pa.field("dtype", pa.string(), nullable=False),
        pa.field("shape", pa.list_(pa.int64())),
        pa.field("data", pa.large_binary()),
        pa.field("created", TS),
    ]
)

CONFIG_SCHEMA = pa.schema(
    [pa.field("key", pa.string(), nullable=False), pa.field("value", pa.string(), nullable=False)]
)

SHOT_SCHEMA = pa.schema(
    [
        pa.field("story_id", pa.string(), nullable=False),
        pa.field("shot_index", pa.int32(), nullable=False),
        pa.field("library", pa.string(), nullable=False),
        pa.field("input_hash", pa.string(), nullable=False),
        pa.field("prompt", pa.string()),
        pa.field("generator", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("retrieved", pa.list_(pa.string())),
        pa.field("memory", pa.list_(pa.string())),
        pa.field("output", pa.string()),
        pa.field("provenance", pa.string()),
        pa.field("created", TS),
    ]
)
