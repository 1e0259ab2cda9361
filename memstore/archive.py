"""Export one library to a single archive file and import it into another store.

The archive is a zip holding ``manifest.json`` and three Arrow IPC files (entities, references
with image bytes and vectors, cached tokens). Ids, image bytes, vectors and metadata survive the
round trip unchanged. Nothing of any other library is read into it.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import ArchiveError, DuplicateEntityError, EmbedderMismatchError
from .validation import clean_library, name_key, sql_in, sql_str

ARCHIVE_FORMAT = "continuity-library"
ARCHIVE_VERSION = 1
MAX_MEMBER_BYTES = 8 * 1024**3


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _read_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_file(pa.BufferReader(data)).read_all()


def export_library(
    library: Any, path: str | os.PathLike, progress: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Write ``library`` to ``path`` atomically; returns the row counts written."""
    store = library.store
    where = f"library = {sql_str(library.name)}"
    tables = {
        name: store.table(name).to_lance().to_table(filter=where) for name in ("entities", "references", "tokens")
    }
    # Orphans a crash left (references or tokens whose entity row is missing) are not exported.
    import pyarrow.compute as pc

    live = tables["entities"].column("id")
    for name in ("references", "tokens"):
        tables[name] = tables[name].filter(pc.is_in(tables[name].column("entity_id"), value_set=live))
    manifest = {
        "format": ARCHIVE_FORMAT,
        "version": ARCHIVE_VERSION,
        "library": library.name,
        "config": library.config,
        "vector_columns": store.vector_columns(),
        "counts": {name: t.num_rows for name, t in tables.items()},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".partial")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.writestr("manifest.json", json.dumps(manifest, indent=2, default=str))
            for name, table in tables.items():
                zf.writestr(f"{name}.arrow", _ipc_bytes(table))
                if progress:
                    progress(table.num_rows)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return manifest["counts"]


def read_archive(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, pa.Table]]:
    """Open and validate an archive; raises :class:`ArchiveError` on anything unexpected."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such archive file")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            expected = {"manifest.json", "entities.arrow", "references.arrow", "tokens.arrow"}
            if not expected <= names:
                raise ArchiveError(f"{path}: missing members {sorted(expected - names)}; not a continuity export")
            for info in zf.infolist():
                if info.file_size > MAX_MEMBER_BYTES:
                    raise ArchiveError(f"{path}: member {info.filename} is {info.file_size} bytes, over the limit")
            manifest = json.loads(zf.read("manifest.json"))
            tables = {n: _read_ipc(zf.read(f"{n}.arrow")) for n in ("entities", "references", "tokens")}
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, json.JSONDecodeError, pa.ArrowInvalid, OSError, KeyError) as exc:
        raise ArchiveError(f"{path}: corrupt or not a continuity export ({exc})") from None
    if manifest.get("format") != ARCHIVE_FORMAT or manifest.get("version") != ARCHIVE_VERSION:
        raise ArchiveError(
            f"{path}: format {manifest.get('format')!r} v{manifest.get('version')}, expected {ARCHIVE_FORMAT!r} v{ARCHIVE_VERSION}"
        )
    source = manifest.get("library")
    for name, table in tables.items():
        libs = set(table.column("library").to_pylist()) if table.num_rows else set()
        if libs - {source}:
            raise ArchiveError(
                f"{path}: {name} holds rows of libraries {sorted(libs - {source})}, expected only {source!r}"
            )
        if table.num_rows != manifest.get("counts", {}).get(name):
            raise ArchiveError(
                f"{path}: {name} has {table.num_rows} rows, manifest says {manifest.get('counts', {}).get(name)}"
            )
    return manifest, tables


def import_library(store: Any, path: str | os.PathLike, library: str | None = None) -> dict[str, Any]:
    """Import an archive into ``store`` (under its own library name, or ``library``).

    Refused whole, with the store unchanged, when an id or a name already exists there."""
    from .embedders import get_embedder
    from .schema import vector_field

    manifest, tables = read_archive(path)
    target = clean_library(library or manifest["library"])
    with store.write_lock():
        # Vector columns: the target must have each with the same embedder, or get it added.
        existing = store.vector_columns()
        for column, meta in manifest["vector_columns"].items():
            if column not in tables["references"].schema.names:
                continue
            if column in existing:
                if existing[column]["spec"] != meta["spec"] or existing[column]["dim"] != meta["dim"]:
                    raise EmbedderMismatchError(
                        f"archive column {column!r} was made by {meta['spec']} ({meta['dim']}-d), the store's by"
                        f" {existing[column]['spec']} ({existing[column]['dim']}-d); import into another store"
                    )
        ents, refs, toks = tables["entities"], tables["references"], tables["tokens"]
        ids = ents.column("id").to_pylist()
        if ids:
            clash = store.entities.count_rows(sql_in("id", ids[:1000]))
            if clash:
                raise ArchiveError(f"{path}: {clash} entity ids already exist in this store; it was imported before")
        lib = store.library(target)
        taken = lib._taken_keys()
        for row in ents.select(["name", "aliases"]).to_pylist():
            for value in [row["name"], *(row["aliases"] or [])]:
                if name_key(value) in taken:
                    raise DuplicateEntityError(
                        f"{value!r} already exists in library {target!r}; import into another library with --library"
                    )
        for column, meta in manifest["vector_columns"].items():
            if column in refs.schema.names and column not in existing:
                store.references.add_columns(vector_field(column, int(meta["dim"]), meta["embedder"], meta["spec"]))

        def relabel(table: pa.Table) -> pa.Table:
            idx = table.schema.get_field_index("library")
            return table.set_column(idx, table.schema.field(idx), pa.array([target] * table.num_rows, pa.string()))

        def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
            # Columns the store has and the archive lacks become nulls; order follows the store.
            cols = []
            for field in schema:
                if field.name in table.schema.names:
                    cols.append(table.column(field.name).cast(field.type))
                else:
                    cols.append(pa.nulls(table.num_rows, field.type))
            return pa.Table.from_arrays(cols, schema=schema)

        # None of these entities exists here, so rows pointing at them are orphans of an import
        # that a crash interrupted: drop them, or importing again would duplicate them.
        for start in range(0, len(ids), 500):
            chunk = sql_in("entity_id", ids[start : start + 500])
            store.references.delete(chunk)
            store.tokens.delete(chunk)
        if refs.num_rows:
            store.references.add(conform(relabel(refs), store.references.schema))
        if toks.num_rows:
            store.tokens.add(conform(relabel(toks), store.tokens.schema))
        if ents.num_rows:
            store.entities.add(conform(relabel(ents), store.entities.schema))
        if manifest.get("config") and store.get_config(f"library:{target}") is None:
            for emb in manifest["config"].get("embedders", []):
                try:
                    get_embedder(emb)
                except Exception:
                    break
            else:
                store._set_config(f"library:{target}", manifest["config"])
    return {"library": target, **manifest["counts"]}
