"""Export one library to a single archive file and import it into another store.

The archive is a zip holding ``manifest.json`` and three Arrow IPC files (entities, references
with image bytes and vectors, cached tokens). Ids, image bytes, vectors and metadata survive the
round trip unchanged. Nothing of any other library is read into it.

An archive is input like any other: members are streamed to disk under size and ratio limits
(never read whole into memory), and every row is checked as registration would check it before
anything is written (:mod:`memstore.archive_rows`); a refused archive leaves the store as it was.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import ArchiveError, ContinuityError, DiskFullError, first_line, store_error_of
from .validation import clean_library, sql_in, sql_str

ARCHIVE_FORMAT = "continuity-library"
ARCHIVE_VERSION = 1
TABLES = ("entities", "references", "tokens")
#: the most one member may inflate to (declared or actual), and the manifest's own limit
MAX_MEMBER_BYTES = int(os.environ.get("CONTINUITY_MAX_ARCHIVE_MEMBER_BYTES", 8 * 1024**3))
MAX_MANIFEST_BYTES = 16 * 1024**2
#: inflated:compressed bytes beyond which a member is a zip bomb (exports are stored, ratio 1)
MAX_RATIO = 200
RATIO_FLOOR = 1024**2  # members smaller than this may compress as well as they like
MAX_MEMBERS = 64
CHUNK = 1024**2


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


# --- export ------------------------------------------------------------------------------------
def is_archive(path: str | os.PathLike) -> bool:
    """True when ``path`` is a file this module wrote (a zip whose manifest names our format)."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("manifest.json")
            if info.file_size > MAX_MANIFEST_BYTES:
                return False
            return json.loads(zf.read(info)).get("format") == ARCHIVE_FORMAT
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, AttributeError):
        return False


def _check_target(target: Path, force: bool) -> None:
    if target.is_dir():
        raise ArchiveError(f"{target} is a folder; give an archive file path such as {target / 'library.continuity'}")
    if target.exists() and not force and not is_archive(target):
        raise ArchiveError(
            f"{target} exists and is not a continuity archive; choose another path or pass --force to overwrite it"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create the folder {target.parent} for {target}: {first_line(exc)}") from None


def export_library(
    library: Any, path: str | os.PathLike, progress: Callable[[int], None] | None = None, *, force: bool = False
) -> dict[str, int]:
    """Write ``library`` to ``path`` atomically; returns the row counts written. An existing
    file is replaced only when it is an earlier archive, or with ``force``."""
    from .schema import clamp_times

    store = library.store
    target = Path(path)
    _check_target(target, force)
    where = f"library = {sql_str(library.name)}"
    # times clamped: a row an older version let out of range must not poison the importing store
    tables = {name: clamp_times(store.table(name).to_lance().to_table(filter=where)) for name in TABLES}
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
    try:
        _write_zip(target, manifest, tables, progress)
    except OSError as exc:
        typed = store_error_of(exc, str(target))
        raise typed or ArchiveError(f"cannot write {target}: {first_line(exc)}") from None
    return manifest["counts"]


def _write_zip(
    target: Path, manifest: dict[str, Any], tables: dict[str, pa.Table], progress: Callable[[int], None] | None
) -> None:
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


# --- reading, under limits ---------------------------------------------------------------------
def _check_declared(path: Path, info: zipfile.ZipInfo, limit: int) -> None:
    """Refuse a member by its header alone: too big, or compressed beyond any real data's ratio."""
    if info.file_size > limit:
        raise ArchiveError(
            f"{path}: member {info.filename} inflates to {info.file_size} bytes, over the limit of {limit}"
        )
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ArchiveError(
            f"{path}: member {info.filename} inflates {info.file_size // max(info.compress_size, 1)}:1,"
            f" over {MAX_RATIO}:1; a zip bomb, not an export"
        )


def _stream_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, sink: Any, limit: int) -> None:
    """Copy one member to ``sink`` in chunks, counting what it really inflates to: a header that
    lies about the sizes is caught after at most one chunk beyond the limit."""
    _check_declared(path, info, limit)
    written = 0
    with zf.open(info) as member:
        while chunk := member.read(CHUNK):
            written += len(chunk)
            ratio_hit = written > RATIO_FLOOR and written > MAX_RATIO * max(info.compress_size, 1)
            if written > limit or ratio_hit:
                raise ArchiveError(
                    f"{path}: member {info.filename} inflates past {written} bytes from {info.compress_size};"
                    " over the size or ratio limit"
                )
            sink.write(chunk)


def _read_table(path: Path, zf: zipfile.ZipFile, name: str, folder: Path) -> pa.Table:
    """One Arrow member, extracted to ``folder`` and memory-mapped (its bytes stay on disk)."""
    out = folder / f"{name}.arrow"
    with open(out, "wb") as sink:
        _stream_member(path, zf, zf.getinfo(f"{name}.arrow"), sink, MAX_MEMBER_BYTES)
    table = pa.ipc.open_file(pa.memory_map(str(out))).read_all()
    table.validate(full=True)  # offsets and lengths inside their buffers, before any row is read
    out.unlink()  # the mapping keeps the data readable; nothing is left behind
    return table


def _read_manifest(path: Path, zf: zipfile.ZipFile) -> dict[str, Any]:
    sink = io.BytesIO()
    _stream_member(path, zf, zf.getinfo("manifest.json"), sink, MAX_MANIFEST_BYTES)
    manifest = json.loads(sink.getvalue())
    if not isinstance(manifest, dict):
        raise ArchiveError(f"{path}: manifest.json is not a JSON object; not a continuity export")
    if manifest.get("format") != ARCHIVE_FORMAT or manifest.get("version") != ARCHIVE_VERSION:
        raise ArchiveError(
            f"{path}: format {str(manifest.get('format'))[:40]!r} v{str(manifest.get('version'))[:10]},"
            f" expected {ARCHIVE_FORMAT!r} v{ARCHIVE_VERSION}"
        )
    for key, kind in (("counts", dict), ("vector_columns", dict), ("config", (dict, type(None)))):
        if not isinstance(manifest.get(key), kind):
            raise ArchiveError(f"{path}: manifest field {key!r} is missing or of the wrong type")
    return manifest


def read_archive(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, pa.Table]]:
    """Open an archive and check its layout; raises :class:`ArchiveError` on anything unexpected.
    Rows are checked against a store by :func:`import_library`."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such archive file")
    folder = Path(tempfile.mkdtemp(prefix="continuity-import-"))
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            expected = {"manifest.json", *(f"{n}.arrow" for n in TABLES)}
            if not expected <= names:
                raise ArchiveError(f"{path}: missing members {sorted(expected - names)}; not a continuity export")
            if len(zf.infolist()) > MAX_MEMBERS:
                raise ArchiveError(f"{path}: {len(zf.infolist())} members, an export has {len(expected)}")
            for info in zf.infolist():  # every header first: a bomb is refused before anything inflates
                limit = MAX_MANIFEST_BYTES if info.filename == "manifest.json" else MAX_MEMBER_BYTES
                _check_declared(path, info, limit)
            manifest = _read_manifest(path, zf)
            tables = {n: _read_table(path, zf, n, folder) for n in TABLES}
    except ContinuityError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, pa.ArrowException, EOFError, KeyError) as exc:
        raise ArchiveError(f"{path}: corrupt or not a continuity export ({first_line(exc, 200)})") from None
    except OSError as exc:  # a full temporary folder is the one cause that is not the archive's
        typed = store_error_of(exc, f"the temporary folder {folder}")
        if isinstance(typed, DiskFullError):
            raise typed from None
        raise ArchiveError(f"{path}: cannot be read ({first_line(exc, 200)})") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _check_layout(path, manifest, tables)
    return manifest, tables


def _check_layout(path: Path, manifest: dict[str, Any], tables: dict[str, pa.Table]) -> None:
    source = manifest.get("library")
    for name, table in tables.items():
        if "library" not in table.schema.names:
            raise ArchiveError(f"{path}: {name} has no library column; not a continuity export")
        libs = set(table.column("library").unique().to_pylist()) if table.num_rows else set()
        if libs - {source}:
            raise ArchiveError(
                f"{path}: {name} holds rows of libraries {sorted(map(str, libs - {source}))[:5]}, expected only"
                f" {str(source)[:64]!r}"
            )
        if table.num_rows != manifest["counts"].get(name):
            raise ArchiveError(
                f"{path}: {name} has {table.num_rows} rows, manifest says {str(manifest['counts'].get(name))[:20]}"
            )


# --- import --------------------------------------------------------------------------------------
def import_library(store: Any, path: str | os.PathLike, library: str | None = None) -> dict[str, Any]:
    """Import an archive into ``store`` (under its own library name, or ``library``).

    Every row is checked as registration would check it; refused whole, with the store
    unchanged, when anything is wrong or an id or a name already exists there. The result says
    which vector columns were dropped (``dropped_columns``: no configured embedder writes them)."""
    from .archive_rows import plan_import

    manifest, tables = read_archive(path)
    raw_library = library or manifest.get("library")
    try:
        target = clean_library(raw_library)
    except ContinuityError as exc:
        raise ArchiveError(f"{path}: {exc}") from None
    with store.write_lock():
        plan = plan_import(store, Path(path), manifest, tables, target)
        for field in plan.new_columns:
            store.references.add_columns(field)
        ids = plan.entities.column("id").to_pylist()
        try:
            _write(store, plan, ids)
        except OSError as exc:
            typed = store_error_of(exc, f"the store at {store.uri}")
            if typed is None:
                raise
            raise typed from None
        if plan.config is not None:
            store._set_config(f"library:{target}", plan.config)
    return {"library": target, **manifest["counts"], "dropped_columns": plan.dropped_columns}


def _write(store: Any, plan: Any, ids: list[str]) -> None:
    """References and tokens first, entity rows last (the commit marker): a failure in between
    leaves only orphans, removed here or, after a crash, by :meth:`Store.repair`."""
    # None of these entities exists here, so rows pointing at them are orphans of an import
    # that a crash interrupted: drop them, or importing again would duplicate them.
    for start in range(0, len(ids), 500):
        chunk = sql_in("entity_id", ids[start : start + 500])
        store.retry(lambda c=chunk: store.references.delete(c))
        store.retry(lambda c=chunk: store.tokens.delete(c))
    try:
        if plan.references.num_rows:
            store.retry(lambda: store.references.add(plan.references))
        if plan.tokens.num_rows:
            store.retry(lambda: store.tokens.add(plan.tokens))
        if plan.entities.num_rows:
            store.retry(lambda: store.entities.add(plan.entities))
    except BaseException:
        for start in range(0, len(ids), 500):
            chunk = sql_in("entity_id", ids[start : start + 500])
            store.references.delete(chunk)
            store.tokens.delete(chunk)
        raise
