"""Records of the store. Each pydantic model is the validator and the result type of its table;
the Arrow schema beside it is the table's layout on disk.

Why not ``LanceModel``: vector columns are added per configured embedder at run time (one column
per embedder), so the references table's schema is built from the fixed fields below plus a field
per embedder, each carrying that embedder's name, spec and dimension in its field metadata.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .rows import NOT_NULL, TS, Col, model_fields
from .validation import (
    MAX_FILE_NAME,
    MAX_TIME,
    MIN_TIME,
    Kind,
    Source,
    View,
    clean_description,
    clean_era,
    clean_name,
    clean_tags,
    clean_text,
    clean_time,
)

Id = Annotated[str, NOT_NULL]
Int32 = Annotated[int, Col(type=pa.int32())]
Float32 = Annotated[float, Col(type=pa.float32())]


def _checked_time(value: datetime | None, info: ValidationInfo) -> datetime | None:
    what = "rights expiry" if info.field_name == "expires" else f"{info.field_name} time"
    return clean_time(value, what)


#: every time a user can give: converted to UTC and kept inside [MIN_TIME, MAX_TIME]
Time = Annotated[datetime, AfterValidator(_checked_time)]


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
    # flattened into the entities table under these column names
    owner: Annotated[str | None, Col(name="rights_owner")] = None
    license: Annotated[str | None, Col(name="rights_license")] = None
    consent: bool | None = None  # None: not recorded
    expires: Annotated[datetime | None, Col(name="rights_expires"), AfterValidator(_checked_time)] = None

    @field_validator("owner", "license")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
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
    id: Id = Field(default_factory=new_id)
    library: Id = "default"
    kind: Annotated[Kind, NOT_NULL]
    name: Annotated[str, NOT_NULL]
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    rights: Rights = Field(default_factory=Rights)
    created: Time = Field(default_factory=now)
    updated: Time = Field(default_factory=now)

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

    def to_json(self, references: list[Reference] | None = None) -> dict[str, Any]:
        """The one JSON shape of an entity (CLI, HTTP API, provenance), optionally with its references."""
        data = self.model_dump(mode="json")
        if references is not None:
            data["references"] = [r.to_json() for r in references]
        return data

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
    def from_row(cls, row: dict[str, Any]) -> Entity:
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
    id: Id = Field(default_factory=new_id)
    entity_id: Id
    library: Id = "default"
    kind: Annotated[Kind, NOT_NULL]
    era: Id = "default"
    source: Annotated[Source, NOT_NULL] = "registered"
    image: bytes | None = Field(default=None, repr=False)
    image_format: str = "png"
    width: Int32
    height: Int32
    sha256: str
    story: str | None = None
    shot: Int32 | None = None
    frame: Int32 | None = None
    face_box: Annotated[list[float] | None, Col(type=pa.list_(pa.float32()))] = None  # x0, y0, x1, y1 in pixels
    quality: Float32 | None = None
    created: Time = Field(default_factory=now)
    # store format 2: the file name it was registered from, and the view it shows (validation.VIEWS)
    original_name: str | None = Field(default=None, max_length=MAX_FILE_NAME)
    view: View | None = None
    vectors: dict[str, np.ndarray] = Field(default_factory=dict, repr=False)  # one column per embedder

    _era = field_validator("era")(lambda cls, v: clean_era(v))

    @property
    def key(self) -> int:
        return faiss_key(self.id)

    def to_json(self) -> dict[str, Any]:
        """The one JSON shape of a reference: its metadata and the names of its vector columns
        (never the image bytes or the vectors themselves)."""
        return {
            "id": self.id,
            "entity_id": self.entity_id,
            "library": self.library,
            "kind": self.kind,
            "era": self.era,
            "source": self.source,
            "format": self.image_format,
            "width": self.width,
            "height": self.height,
            "sha256": self.sha256,
            "face_box": self.face_box,
            "quality": self.quality,
            "story": self.story,
            "shot": self.shot,
            "frame": self.frame,
            "view": self.view,
            "original_name": self.original_name,
            "vectors": sorted(self.vectors),
        }

    def pil(self):
        from .images import decode

        if self.image is None:
            raise ValueError("reference was read without its image; ask with with_images=True")
        return decode(self.image)

    def to_row(self) -> dict[str, Any]:
        """The references row: every field but the vectors, the FAISS key, and one entry per
        vector (None where an embedder gave none, so that every row of a batch has the same columns)."""
        row: dict[str, Any] = {name: getattr(self, name) for name in _REFERENCE_FIELDS}
        row["key"] = self.key
        for column, vec in self.vectors.items():
            row[column] = None if vec is None else np.asarray(vec, dtype=np.float32)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any], vector_columns: list[str]) -> Reference:
        """``row[c]``: a list or an array (:func:`reference_rows` gives arrays), or None."""
        values = {name: row.get(name) for name in _REFERENCE_FIELDS}
        if values["face_box"] is not None:
            values["face_box"] = list(values["face_box"])
        values["created"] = _utc(values["created"])
        vectors = {c: np.asarray(row[c], dtype=np.float32) for c in vector_columns if row.get(c) is not None}
        return cls.model_construct(**values, vectors=vectors)


_REFERENCE_FIELDS = tuple(name for name in Reference.model_fields if name != "vectors")


def _key(name: str) -> str:
    from .validation import name_key

    return name_key(name)


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


_MIN_US = int(MIN_TIME.timestamp() * 1_000_000)
_MAX_US = int(MAX_TIME.timestamp() * 1_000_000)


def out_of_range_times(table: pa.Table) -> dict[str, int]:
    """Per timestamp column, how many values lie outside [MIN_TIME, MAX_TIME] (rows an older
    version wrote; Python cannot even hold some of them)."""
    import pyarrow.compute as pc

    counts = {}
    for field in table.schema:
        if pa.types.is_timestamp(field.type):
            micros = table.column(field.name).cast(TS).cast(pa.int64())
            bad = pc.sum(pc.or_(pc.less(micros, _MIN_US), pc.greater(micros, _MAX_US))).as_py() or 0
            if bad:
                counts[field.name] = int(bad)
    return counts


def clamp_times(table: pa.Table) -> pa.Table:
    """The table with every timestamp clamped into [MIN_TIME, MAX_TIME], so that converting it to
    Python never overflows: a poisoned row still reads (and can be removed or repaired)."""
    import pyarrow.compute as pc

    bad = out_of_range_times(table)
    for i, field in enumerate(table.schema):
        if field.name in bad:  # untouched otherwise: the common case costs one comparison
            micros = table.column(i).cast(TS).cast(pa.int64())
            low = pc.max_element_wise(micros, _MIN_US, skip_nulls=False)
            clamped = pc.min_element_wise(low, _MAX_US, skip_nulls=False)
            table = table.set_column(i, field, clamped.cast(TS).cast(field.type))
    return table


def readable_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows of an Arrow table as dicts, times clamped (see :func:`clamp_times`)."""
    return clamp_times(table).to_pylist()


def reference_rows(table: pa.Table, vector_columns: Sequence[str]) -> list[dict[str, Any]]:
    """:func:`readable_rows` of a references read, each vector column as one float32 row of an
    (n, dim) array (None where the row has none) instead of a Python list of floats: ``to_pylist``
    made 512 float objects per vector, and that conversion was half the time of a 200-row read
    (measured at 1M references)."""
    columns = [c for c in vector_columns if c in table.column_names]
    rows = readable_rows(table.drop_columns(columns))
    for column in columns:
        matrix, present = vector_matrix(table.column(column))
        for row, vector, ok in zip(rows, matrix, present.tolist(), strict=True):
            row[column] = vector if ok else None
    return rows


def vector_matrix(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A fixed-size-list column as a writable (n, dim) float32 array and its rows' presence."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    dim = array.type.list_size
    start = array.offset * dim  # a sliced array's values start further in
    values = array.values.slice(start, len(array) * dim).to_numpy(zero_copy_only=False)
    matrix = np.array(values, dtype=np.float32).reshape(len(array), dim)  # a copy: Arrow's is read-only
    return matrix, ~np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _entity_schema() -> pa.Schema:
    fields = {f.name: f for f in model_fields(Entity, exclude=("rights",)) + model_fields(Rights)}
    # derived columns, written by Entity.to_row: exact-match keys and the full-text search column
    fields["name_key"] = pa.field("name_key", pa.string(), nullable=False)
    fields["alias_keys"] = pa.field("alias_keys", pa.list_(pa.string()))
    fields["search_text"] = pa.field("search_text", pa.string())
    return pa.schema(list(fields.values()))


ENTITY_SCHEMA = _entity_schema()
# ``key`` is derived from ``id`` (Reference.key); vector columns are appended per embedder
REFERENCE_BASE_FIELDS = [
    *model_fields(Reference, exclude=("vectors",))[:1],
    pa.field("key", pa.int64(), nullable=False),
    *model_fields(Reference, exclude=("vectors",))[1:],
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


class TokenRow(BaseModel):
    """One cached conditioning tensor (or VAE latent): (reference, encoder spec) -> array bytes.
    ``ref_sha256`` is the image it was computed from: a changed image makes the row stale."""

    model_config = ConfigDict(extra="forbid")
    reference_id: Id
    library: Id
    entity_id: Id
    spec: Id
    ref_sha256: Id
    dtype: Id
    shape: list[int]
    data: bytes = Field(repr=False)
    created: Time = Field(default_factory=now)

    def array(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.dtype(self.dtype)).reshape(tuple(self.shape))


class ConfigRow(BaseModel):
    """One configuration value of the store (JSON text under a key)."""

    key: Id
    value: Id


class ShotRecord(BaseModel):
    """A finished shot of a story run: the ``shots`` table's row, written last (the shot's commit
    marker). ``input_hash`` chains everything that determined the shot; ``provenance`` is its manifest."""

    model_config = ConfigDict(extra="forbid")
    story_id: Id
    shot_index: Annotated[int, Col(type=pa.int32(), nullable=False)]
    library: Id
    input_hash: Id
    prompt: str | None = None
    generator: str | None = None
    seed: int | None = None
    retrieved: list[str] = Field(default_factory=list)
    memory: list[str] = Field(default_factory=list)
    output: str | None = None
    provenance: str | None = None
    created: Time = Field(default_factory=now)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ShotRecord:
        """A record from a table row, or from some of its columns (the rest None or empty). Every
        field is given: model_construct's own defaults inspect each factory's signature, 0.7 ms a
        row, which made reading a 10,000-shot story's hashes take 20 s."""
        values: dict[str, Any] = {**dict.fromkeys(cls.model_fields), **row, "created": _utc(row.get("created"))}
        values["retrieved"] = values["retrieved"] or []
        values["memory"] = values["memory"] or []
        return cls.model_construct(**values)


TOKEN_SCHEMA = pa.schema(model_fields(TokenRow))
CONFIG_SCHEMA = pa.schema(model_fields(ConfigRow))
SHOT_SCHEMA = pa.schema(model_fields(ShotRecord))
