"""The rows of an archive, checked against a target store as registration would check them.

Entities are rebuilt through the :class:`Entity` model (names, kinds, aliases, tags, rights and
times validated; derived columns such as ``name_key`` recomputed, never trusted); references and
tokens are checked column by column without converting image bytes or vectors to Python. Nothing
here writes: :func:`plan_import` returns what :func:`memstore.archive.import_library` writes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from .errors import ArchiveError, ContinuityError, DuplicateEntityError, EmbedderMismatchError
from .schema import REFERENCE_BASE_FIELDS, Entity, Reference, Rights, faiss_key, out_of_range_times, vector_field
from .validation import clean_id, clean_text, name_key, sql_in, sql_int_in, sql_str

_BASE_REFERENCE_COLUMNS = {f.name for f in REFERENCE_BASE_FIELDS}
_MAX_VECTOR_DIM = 65_536
_MAX_TOKEN_DIMS = 8
CHUNK = 500


@dataclass
class ImportPlan:
    """Checked rows in the store's layouts, and the schema and config changes they need."""

    entities: pa.Table
    references: pa.Table
    tokens: pa.Table
    new_columns: list[pa.Field] = field(default_factory=list)
    dropped_columns: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None


class _Rows:
    """Raises ArchiveError naming the archive, the table and the row."""

    def __init__(self, path: Path, table: str):
        self.path = path
        self.table = table

    def fail(self, row: int | None, message: str) -> ArchiveError:
        where = f"{self.table} row {row}" if row is not None else self.table
        return ArchiveError(f"{self.path}: {where}: {message}; the archive was not imported")


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        return f"{loc}: {str(err['msg']).removeprefix('Value error, ')}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _times_in_range(rows: _Rows, table: pa.Table) -> None:
    bad = out_of_range_times(table)
    if bad:
        column = next(iter(bad))
        raise rows.fail(None, f"{bad[column]} value(s) of {column} are outside the years 1900-9000 (UTC)")


def _conform(rows: _Rows, table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table in the store's layout: its columns cast to the store's types, in the store's
    order; columns the store has and the archive lacks become nulls (refused where NOT NULL)."""
    cols = []
    for f in schema:
        if f.name in table.schema.names:
            try:
                cols.append(table.column(f.name).cast(f.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise rows.fail(None, f"column {f.name!r} is not {f.type} ({_reason(exc)})") from None
        elif f.nullable:
            cols.append(pa.nulls(table.num_rows, f.type))
        else:
            raise rows.fail(None, f"required column {f.name!r} is missing")
        if not f.nullable and cols[-1].null_count:
            raise rows.fail(None, f"column {f.name!r} has empty values")
    return pa.Table.from_arrays(cols, schema=schema)


# --- entities ------------------------------------------------------------------------------------
def _entity(row: dict[str, Any], target: str) -> Entity:
    attributes = json.loads(row.get("attributes") or "{}")
    rights = Rights(
        owner=row.get("rights_owner"),
        license=row.get("rights_license"),
        consent=row.get("consent"),
        expires=row.get("rights_expires"),
    )
    times = {k: row[k] for k in ("created", "updated") if row.get(k) is not None}
    return Entity.model_validate(
        {
            "id": clean_id(row.get("id"), "entity id"),
            "library": target,
            "kind": row.get("kind"),
            "name": row.get("name"),
            "aliases": list(row.get("aliases") or []),
            "description": row.get("description") or "",
            "tags": list(row.get("tags") or []),
            "attributes": attributes,
            "rights": rights,
            **times,
        }
    )


def _entities(path: Path, table: pa.Table, target: str) -> list[Entity]:
    """Every entity rebuilt through the model; ids and name keys unique inside the archive."""
    rows = _Rows(path, "entities")
    _times_in_range(rows, table)
    entities: list[Entity] = []
    ids: set[str] = set()
    keys: dict[str, str] = {}
    for i, row in enumerate(table.to_pylist()):
        try:
            entity = _entity(row, target)
        except (ValidationError, ContinuityError, ValueError, TypeError, RecursionError) as exc:
            raise rows.fail(i, _reason(exc)) from None
        if entity.id in ids:
            raise rows.fail(i, f"id {entity.id!r} is used twice")
        ids.add(entity.id)
        for value in {name_key(v): v for v in entity.names}.values():
            holder = keys.get(name_key(value))
            if holder is not None:
                raise rows.fail(i, f"name {value!r} is also used by {holder!r} in the archive (case is ignored)")
            keys[name_key(value)] = entity.name
        entities.append(entity)
    return entities


# --- references ----------------------------------------------------------------------------------
def _reference_meta(rows: _Rows, i: int, row: dict[str, Any], kinds: Mapping[str, str], target: str) -> str:
    """Check one reference's metadata (not its bytes or vectors); returns its id."""
    from .images import MAX_PIXELS

    ref_id = clean_id(row.get("id"), "reference id", hex_only=True)
    entity_id = str(row.get("entity_id"))
    if entity_id not in kinds:
        raise rows.fail(i, f"reference {ref_id} belongs to no entity of the archive")
    fields = {k: row.get(k) for k in Reference.model_fields if k not in ("image", "vectors") and k in row}
    fields = {k: v for k, v in fields.items() if v is not None}
    ref = Reference.model_validate({**fields, "library": target, "vectors": {}})
    if ref.kind != kinds[entity_id]:
        raise rows.fail(i, f"reference kind {ref.kind!r} differs from its entity's {kinds[entity_id]!r}")
    if not (0 < ref.width < 2**31 and 0 < ref.height < 2**31) or ref.width * ref.height > MAX_PIXELS:
        raise rows.fail(i, f"image size {ref.width}x{ref.height} is not allowed (at most {MAX_PIXELS} pixels)")
    if ref.story is not None:
        clean_text(ref.story, "story id")
    for label in ("shot", "frame"):
        value = getattr(ref, label)
        if value is not None and not 0 <= value < 2**31:
            raise rows.fail(i, f"{label} {value} is not from 0 to 2**31-1")
    if ref.face_box is not None and (len(ref.face_box) != 4 or not np.isfinite(ref.face_box).all()):
        raise rows.fail(i, "face_box is not four finite numbers")
    if ref.quality is not None and not np.isfinite(ref.quality):
        raise rows.fail(i, "quality is not a finite number")
    clean_text(ref.image_format, "image format", max_length=16)
    return ref_id


def _check_images(rows: _Rows, table: pa.Table) -> None:
    """Every image present and matching its sha256 (hashed from Arrow's buffers, not copied)."""
    images, shas = table.column("image"), table.column("sha256")
    i = 0
    for chunk_images, chunk_shas in zip(images.chunks, shas.chunks, strict=True):
        for image, sha in zip(chunk_images, chunk_shas, strict=True):
            buffer = image.as_buffer()
            if buffer is None or not buffer.size:
                raise rows.fail(i, "the image bytes are missing")
            if hashlib.sha256(buffer).hexdigest() != sha.as_py():
                raise rows.fail(i, "the image bytes do not match their sha256")
            i += 1


def _references(path: Path, table: pa.Table, entities: list[Entity], target: str) -> list[str]:
    rows = _Rows(path, "references")
    _times_in_range(rows, table)
    for name in ("id", "entity_id", "kind", "image", "sha256", "width", "height"):
        if name not in table.schema.names:
            raise rows.fail(None, f"required column {name!r} is missing")
    kinds = {e.id: e.kind for e in entities}
    meta = table.select([c for c in table.schema.names if c in _BASE_REFERENCE_COLUMNS and c != "image"])
    ids: set[str] = set()
    keys: set[int] = set()
    for i, row in enumerate(meta.to_pylist()):
        try:
            ref_id = _reference_meta(rows, i, row, kinds, target)
        except ArchiveError:
            raise
        except (ValidationError, ContinuityError, ValueError, TypeError) as exc:
            raise rows.fail(i, _reason(exc)) from None
        if ref_id in ids or faiss_key(ref_id) in keys:
            raise rows.fail(i, f"reference id {ref_id} (or its first 16 digits) is used twice")
        ids.add(ref_id)
        keys.add(faiss_key(ref_id))
    _check_images(rows, table)
    return sorted(ids)


# --- vector columns ------------------------------------------------------------------------------
def _target_embedders(store: Any, config: dict[str, Any] | None) -> dict[str, Any]:
    """Column -> embedder the target library will be indexed by (its own config, else the one
    the archive brings, else the store's default)."""
    from .embedders import get_embedder

    out = {}
    for emb_config in (config or store.default_library_config()).get("embedders", []):
        emb = get_embedder(emb_config)
        out[emb.column_name] = emb
    return out


def _vector_columns(
    store: Any, path: Path, manifest: dict[str, Any], table: pa.Table, embedders: dict[str, Any]
) -> tuple[list[pa.Field], list[str]]:
    """Each vector column of the archive checked against its real Arrow field and the store:
    kept when the store has it for the same embedder, added when an embedder of the target
    library writes it, dropped otherwise; refused when it contradicts the store."""
    rows = _Rows(path, "references")
    store_fields = {f.name: f for f in store.references.schema}
    store_vectors = store.vector_columns()
    new_fields, dropped = [], []
    for column in [c for c in table.schema.names if c not in _BASE_REFERENCE_COLUMNS]:
        meta = manifest["vector_columns"].get(column)
        arrow_type = table.schema.field(column).type
        if not isinstance(meta, dict):
            dropped.append(column)  # not a vector column: nothing of the store's layout
            continue
        try:
            dim = int(meta["dim"])
            spec = str(meta["spec"])
        except (KeyError, TypeError, ValueError):
            raise rows.fail(None, f"the manifest's entry for column {column!r} has no dim or spec") from None
        expected = pa.list_(pa.float32(), dim) if 0 < dim <= _MAX_VECTOR_DIM else None
        if expected is None or arrow_type != expected:
            raise rows.fail(None, f"column {column!r} is {arrow_type}, the manifest says {dim}-d float32 vectors")
        values = pc.list_flatten(table.column(column))
        if len(values) and not pc.all(pc.is_finite(values)).as_py():
            raise rows.fail(None, f"column {column!r} holds NaN or inf values")
        if column in store_vectors:
            have = store_vectors[column]
            if have["spec"] != spec or int(have["dim"]) != dim or store_fields[column].type != expected:
                raise EmbedderMismatchError(
                    f"archive column {column!r} was made by {spec} ({dim}-d), the store's by"
                    f" {have['spec']} ({have['dim']}-d); import into another store"
                )
            continue
        if column in store_fields:
            raise rows.fail(None, f"column {column!r} exists in the store and is not a vector column")
        emb = embedders.get(column)
        if emb is None or emb.spec != spec or emb.ndims != dim:
            dropped.append(column)
            continue
        new_fields.append(vector_field(column, dim, emb.type_name, emb.spec))
    return new_fields, dropped


# --- tokens --------------------------------------------------------------------------------------
def _tokens(path: Path, table: pa.Table, references: pa.Table) -> None:
    from .tokens import STORED_DTYPES

    rows = _Rows(path, "tokens")
    _times_in_range(rows, table)
    owner = dict(zip(references.column("id").to_pylist(), references.column("entity_id").to_pylist(), strict=True))
    meta = table.select([c for c in ("reference_id", "entity_id", "spec", "dtype", "shape") if c in table.schema.names])
    if "data" not in table.schema.names or meta.num_columns != 5:
        raise rows.fail(None, "a required column is missing")
    sizes = pc.binary_length(table.column("data")).to_pylist()
    for i, row in enumerate(meta.to_pylist()):
        if owner.get(row["reference_id"]) is None or owner[row["reference_id"]] != row["entity_id"]:
            raise rows.fail(i, "the token's reference is not an archive reference of its entity")
        try:
            clean_text(row["spec"] or "", "encoder spec")
        except ContinuityError as exc:
            raise rows.fail(i, str(exc)) from None
        shape = row["shape"] or []
        if row["dtype"] not in STORED_DTYPES or len(shape) > _MAX_TOKEN_DIMS or any(d is None or d < 0 for d in shape):
            raise rows.fail(i, f"dtype {str(row['dtype'])[:20]!r} or shape {shape[:10]} is not allowed")
        if int(np.prod(shape, dtype=np.float64)) * np.dtype(row["dtype"]).itemsize != sizes[i]:
            raise rows.fail(i, f"{sizes[i]} data bytes do not hold a {row['dtype']} array of shape {shape}")


# --- against the store ---------------------------------------------------------------------------
def _free_in_store(store: Any, path: Path, target: str, entities: list[Entity], ref_ids: list[str]) -> None:
    """No entity id, reference id or FAISS key is taken (ids in any library), nor any name in
    the target library. Reference rows of the archive's own entities are orphans an interrupted
    import left (none of those entities exists here), so they do not count."""
    ids = [e.id for e in entities]
    for start in range(0, len(ids), CHUNK):
        clash = store.entities.count_rows(sql_in("id", ids[start : start + CHUNK]))
        if clash:
            raise ArchiveError(f"{path}: {clash} entity ids already exist in this store; it was imported before")
    own = set(ids)
    keys = [faiss_key(r) for r in ref_ids]
    lance = store.references.to_lance()
    for start in range(0, len(ref_ids), CHUNK):
        same_key = f"{sql_int_in('key', keys[start : start + CHUNK])} AND library = {sql_str(target)}"
        where = f"{sql_in('id', ref_ids[start : start + CHUNK])} OR ({same_key})"
        found = lance.to_table(columns=["id", "entity_id"], filter=where).to_pylist()
        foreign = [r["id"] for r in found if r["entity_id"] not in own]
        if foreign:
            raise ArchiveError(
                f"{path}: reference id {foreign[0]} (or its FAISS key) already exists in this store; the archive"
                " was not imported"
            )
    taken = store.library(target)._taken_keys()
    for entity in entities:
        for value in entity.names:
            holder = taken.get(name_key(value))
            if holder is not None:
                raise DuplicateEntityError(
                    f"{value!r} is already used by {holder!r} in library {target!r}; import into another library"
                    " with --library"
                )


def _config(path: Path, store: Any, manifest: dict[str, Any], target: str) -> dict[str, Any] | None:
    """The archive's library config when the target has none and it is valid; a config with an
    index factory or params outside the allowed set refuses the archive."""
    from .embedders import get_embedder
    from .store import checked_library_config

    config = manifest.get("config")
    if not config or store.get_config(f"library:{target}") is not None:
        return None
    try:
        checked = checked_library_config(config)
    except ContinuityError as exc:
        raise ArchiveError(f"{path}: library config: {exc}; the archive was not imported") from None
    try:
        for emb in checked.get("embedders", []):
            get_embedder(emb)
    except Exception:  # noqa: BLE001 - an embedder this install lacks: keep the target's default
        return None
    return checked


def plan_import(
    store: Any, path: Path, manifest: dict[str, Any], tables: dict[str, pa.Table], target: str
) -> ImportPlan:
    """Check every row of an archive against ``store`` (under its write lock); write nothing."""
    from .store import checked_library_config

    entities = _entities(path, tables["entities"], target)
    ref_ids = _references(path, tables["references"], entities, target)
    _tokens(path, tables["tokens"], tables["references"])
    config = _config(path, store, manifest, target)
    current = store.get_config(f"library:{target}")
    embedders = _target_embedders(store, checked_library_config(current) if current else config)
    new_columns, dropped = _vector_columns(store, path, manifest, tables["references"], embedders)
    _free_in_store(store, path, target, entities, ref_ids)

    references = tables["references"].drop_columns(dropped)
    ref_schema = pa.schema(list(store.references.schema) + new_columns)
    references = references.set_column(
        references.schema.get_field_index("library"), "library", pa.array([target] * references.num_rows, pa.string())
    )
    keys = pa.array([faiss_key(r) for r in references.column("id").to_pylist()], pa.int64())
    if "key" in references.schema.names:
        references = references.set_column(references.schema.get_field_index("key"), "key", keys)
    else:
        references = references.append_column("key", keys)
    tokens = tables["tokens"].set_column(
        tables["tokens"].schema.get_field_index("library"), "library", pa.array([target] * tables["tokens"].num_rows)
    )
    entity_rows = pa.Table.from_pylist([e.to_row() for e in entities], schema=store.entities.schema)
    return ImportPlan(
        entities=entity_rows,
        references=_conform(_Rows(path, "references"), references, ref_schema),
        tokens=_conform(_Rows(path, "tokens"), tokens, store.tokens.schema),
        new_columns=new_columns,
        dropped_columns=dropped,
        config=config,
    )
