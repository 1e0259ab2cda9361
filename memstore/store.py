"""The store: one LanceDB database (a folder or any LanceDB URI) holding every library.

It owns the connection, the tables, the write lock and the per-library configuration (which
embedders index a library, which FAISS factory its index uses). Libraries are views on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from . import remote
from .commits import LEASE_SCHEMA, LEASE_TABLE, WriteLease, commits_are_atomic, seed_lease
from .errors import (
    EmbedderMismatchError,
    InvalidInputError,
    NotAStoreError,
    StoreError,
    UnsafeCommitsError,
    UnsafeCommitsWarning,
    first_line,
    store_error_of,
)
from .journal import JOURNAL_FILE, ShotJournal
from .schema import CONFIG_SCHEMA, ENTITY_SCHEMA, SHOT_SCHEMA, TOKEN_SCHEMA, reference_schema, vector_field
from .upgrade import FORMAT_VERSION, upgrade
from .validation import clean_index_factory, clean_library, sql_int_in, sql_str

T = TypeVar("T")
DEFAULT_DB = "./continuity-db"
# Old versions are pruned every VERSION_PRUNE_EVERY commits of a table, keeping the newest
# VERSIONS_KEPT and any younger than VERSION_GRACE (see Store._prune_versions).
VERSION_PRUNE_EVERY = 256
VERSIONS_KEPT = 64
VERSION_GRACE = timedelta(seconds=30)
# columns each table is looked up by, indexed once the table holds LOOKUP_INDEX_ROWS rows
LOOKUP_INDEXES = {"references": ("entity_id", "id"), "tokens": ("reference_id",)}
LOOKUP_INDEX_ROWS = 20_000
TABLES = ("config", "entities", "references", "tokens")
# Lance logs a warning for every table it creates; it is noise for a user.
os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("RUST_LOG", "error")


def _storage_options(uri: str) -> dict[str, str]:
    """Object-store options (endpoint, region, credentials, timeouts) of a URI; none for a folder.
    See :mod:`memstore.remote` for where they come from."""
    return {} if _is_local(uri) else remote.storage_options(uri)


def _is_transport_error(text: str) -> bool:
    """An object-store request that failed (not a commit conflict): Lance's client already retried it."""
    return any(s in text for s in ("retryerror", "error sending request", "status: 40", "status: 50"))


def _only_store_files(path: Path) -> bool:
    """True when a folder holds nothing but what an interrupted ``init`` leaves: the write lock
    and table folders of ours. Anything else means it is someone else's folder."""
    ours = {".write.lock", "_faiss", JOURNAL_FILE, *(f"{t}.lance" for t in (*TABLES, "shots"))}
    return all(p.name in ours for p in path.iterdir())


#: object-store endpoints this process has seen commit atomically: conditional PUT is a property of
#: the server, so the race of commits_are_atomic runs once per endpoint, not once per store
_ATOMIC_ENDPOINTS: set[str] = set()

#: bounds of the FAISS knobs a library config may set (config["index_params"])
INDEX_PARAM_RANGE = (1, 4096)


def checked_library_config(config: object) -> dict[str, Any]:
    """A library config whose index factory is from the allowed set and whose index params are
    known knobs in range; raise InvalidInputError otherwise. Embedders are checked by whoever
    builds them (:func:`memstore.embedders.get_embedder`)."""
    from .index import DEFAULT_PARAMS

    if not isinstance(config, dict):
        raise InvalidInputError(f"a library config is a mapping, got {type(config).__name__}")
    if not isinstance(config.get("embedders", []), list):
        raise InvalidInputError("a library config's embedders must be a list")
    clean_index_factory(config.get("index_factory", "auto"))
    params = config.get("index_params") or {}
    if not isinstance(params, dict):
        raise InvalidInputError(f"index_params must be a mapping, got {type(params).__name__}")
    low, high = INDEX_PARAM_RANGE
    for name, value in params.items():
        if name not in DEFAULT_PARAMS:
            raise InvalidInputError(f"index param {str(name)[:40]!r} is unknown; known: {sorted(DEFAULT_PARAMS)}")
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidInputError(f"index param {name} must be an integer from {low} to {high}, got {value!r}")
    return config


def default_db() -> str:
    return os.environ.get("CONTINUITY_DB") or DEFAULT_DB


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _local_path(uri: str) -> Path:
    return Path(uri[len("file://") :] if uri.startswith("file://") else uri)


class VersionWatch:
    """The Lance version of a table, read cheaply.

    A held table handle answers ``version`` in ~0.2 ms (it lists the manifests). For a local
    table, the ``_versions`` folder's mtime changes with every commit; when it is unchanged and
    older than ``SAFE_S`` (so that a commit in the same coarse clock tick cannot hide behind it),
    the version cannot have changed and the stat (~2 us) suffices."""

    SAFE_S = 0.05

    def __init__(self, store: Store, name: str):
        self.store = store
        self.name = name
        self._table: Any = None
        self._folder: Path | None = None
        if store._local:
            self._folder = _local_path(store.uri) / f"{name}.lance" / "_versions"
        self._seen: tuple[int, int] | None = None  # (mtime_ns, version)

    def version(self) -> int:
        mtime = None
        if self._folder is not None:
            try:
                mtime = self._folder.stat().st_mtime_ns
            except OSError:
                mtime = None
            if (
                mtime is not None
                and self._seen is not None
                and self._seen[0] == mtime
                and time.time_ns() - mtime > self.SAFE_S * 1e9
            ):
                return self._seen[1]
        if self._table is None:
            self._table = self.store.table(self.name)
        try:
            version = int(self._table.version)
        except Exception:  # noqa: BLE001 - lance raises several types here; the table was dropped and made again: open it anew
            self._table = self.store.table(self.name)
            version = int(self._table.version)
        if mtime is not None:
            self._seen = (mtime, version)
        return version


class ReferenceColumn:
    """One library's vector column of the references table, as a :class:`memstore.index.RowSource`:
    the only place the FAISS index's rows are read (and their SQL written)."""

    FETCH_CHUNK = 2_000

    def __init__(self, store: Store, library: str, column: str):
        self.store = store
        self.library = library
        self.column = column
        meta = store.vector_columns()[column]
        self.dim = int(meta["dim"])
        self.spec = meta["spec"]
        self._watch = VersionWatch(store, "references")

    def version(self) -> int:
        return self._watch.version()

    def _where(self) -> str:
        return f"library = {sql_str(self.library)} AND {self.column} IS NOT NULL"

    def key_table(self) -> pa.Table:
        return self.store.references.to_lance().to_table(columns=["key", "kind"], filter=self._where())

    def row_keys(self) -> np.ndarray:
        lance = self.store.references.to_lance()
        keys = lance.to_table(columns=["key"], filter=f"library = {sql_str(self.library)}").column("key")
        return keys.to_numpy().astype(np.int64)

    def vector_table(self, keys: np.ndarray | None) -> pa.Table:
        lance = self.store.references.to_lance()
        columns = ["key", "kind", "entity_id", self.column]
        if keys is None:
            return lance.to_table(columns=columns, filter=self._where())
        parts = [
            lance.to_table(
                columns=columns, filter=f"{self._where()} AND {sql_int_in('key', keys[i : i + self.FETCH_CHUNK])}"
            )
            for i in range(0, len(keys), self.FETCH_CHUNK)
        ]
        return pa.concat_tables(parts) if parts else lance.to_table(columns=columns, filter="false")


class Store:
    """A continuity store. Open with :meth:`open` (existing) or :meth:`init` (create if missing)."""

    def __init__(self, uri: str, connection: Any):
        self.uri = uri
        self.db = connection
        self._local = _is_local(uri)
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        self._lock_file: Any | None = None
        self._tables: dict[str, Any] = {}
        self._indexes: dict[tuple[str, str], Any] = {}
        self._text_index: Any = None
        self._writes: dict[str, int] = {}
        self._pruned_at: dict[str, int] = {}
        self._lookup_indexed: set[str] = set()
        self._shot_journal: ShotJournal | None = None
        # secrets stay in this dict (memory only): every error text passes remote.redact
        self._options = _storage_options(uri)
        self._lease = None if self._local else WriteLease(self._lease_table, self.retry, uri)

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def init(cls, uri: str | os.PathLike | None = None) -> Store:
        """Create a store at ``uri`` (or open it when it already is one)."""
        uri = str(uri or default_db())
        if _is_local(uri):
            path = _local_path(uri)
            if path.exists() and not path.is_dir():
                raise NotAStoreError(f"{uri} is a file, not a store folder; choose another --db path")
            if path.is_dir() and not (path / "config.lance").exists() and not _only_store_files(path):
                raise NotAStoreError(
                    f"{uri} is a non-empty folder that is not a continuity store; choose an empty or new --db path"
                )
            path.mkdir(parents=True, exist_ok=True)
        store = cls(uri, cls._connect(uri))
        names = store._reach(store._table_names)
        commits = store._check_commits(names)
        with store.write_lock():
            store._ensure_table("config", CONFIG_SCHEMA)
            if store.get_config("format") is None:  # also when a crash came between these two steps
                store._set_config("format", {"version": FORMAT_VERSION})
            if commits is not None:
                store._set_config("commits", commits)
            store._ensure_table("entities", ENTITY_SCHEMA)
            store._ensure_table("references", reference_schema([]))
            store._ensure_table("tokens", TOKEN_SCHEMA)
        return store

    def _check_commits(self, names: list[str]) -> dict[str, str] | None:
        """For a remote store not yet checked: prove that its object store makes concurrent commits
        atomic (before anything of the store is written), and return what to record in its config."""
        if self._local:
            return None
        if "config" in names and (self.get_config("commits") or {}).get("checked") == "atomic":
            return None
        if remote.scheme_of(self.uri) not in remote.ATOMIC_COMMIT_SCHEMES:
            return {"checked": "no", "why": f"Lance has no atomic commit on {remote.scheme_of(self.uri)}://"}
        endpoint = remote.endpoint_of(self._options) or remote.scheme_of(self.uri)
        if endpoint not in _ATOMIC_ENDPOINTS and not self._reach(lambda: commits_are_atomic(self.db, self._options)):
            raise UnsafeCommitsError(
                f"the object store behind {self.uri} overwrote a concurrent commit: it ignores conditional PUT"
                " (If-None-Match), so writers on several machines would lose data; use a store that supports it,"
                " or s3+ddb://bucket/prefix?ddbTableName=TABLE for a DynamoDB commit lock"
            )
        _ATOMIC_ENDPOINTS.add(endpoint)
        return {"checked": "atomic", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def _warn_unless_atomic(self) -> None:
        """Say at open time when concurrent writers are not known to be safe on this store."""
        if self._local:
            return
        commits = self.get_config("commits") or {}
        if commits.get("checked") != "atomic":
            why = commits.get("why") or "its object store was never checked for atomic commits"
            warnings.warn(
                f"{self.uri}: concurrent writers are not guaranteed safe ({why}); run one writer at a time,"
                f" or run continuity init --db {self.uri} to check the object store",
                UnsafeCommitsWarning,
                stacklevel=3,
            )

    def _lease_table(self) -> Any:
        """The one-row table that holds a remote store's write lease (made on first use)."""
        try:
            return self.table(LEASE_TABLE)
        except Exception:  # noqa: BLE001 - missing: a store made before leases, or a fresh one
            if LEASE_TABLE not in self._table_names():
                self.db.create_table(LEASE_TABLE, schema=LEASE_SCHEMA, exist_ok=True)
            table = self.table(LEASE_TABLE)
            seed_lease(table)
            return table

    def _ensure_table(self, name: str, schema: pa.Schema) -> None:
        """Create a table, or re-create one that a crash left half-made: its folder exists (so it
        is listed) but it never committed a version, so it cannot be opened and holds nothing."""
        if name in self._table_names():
            try:
                self.db.open_table(name)
                return
            except Exception:
                folder = _local_path(self.uri) / f"{name}.lance" if self._local else None
                committed = folder is None or any((folder / "_versions").glob("*.manifest"))
                if committed or folder is None:
                    raise  # a real table that fails to open: never delete data
                shutil.rmtree(folder)
        self.db.create_table(name, schema=schema)
        self._tables.pop(name, None)  # a handle of the half-made table it replaces is stale

    @classmethod
    def open(cls, uri: str | os.PathLike | None = None, *, create: bool = False) -> Store:
        """Open an existing store; with ``create`` make it when missing."""
        uri = str(uri or default_db())
        if _is_local(uri):
            path = _local_path(uri)
            if not path.exists():
                if create:
                    return cls.init(uri)
                raise StoreError(f"no store at {uri}; create one with: continuity init --db {uri}")
            if path.is_dir() and not (path / "config.lance").exists() and create and _only_store_files(path):
                return cls.init(uri)  # an init that was interrupted before its config table
            if not path.is_dir() or not (path / "config.lance").exists():
                raise NotAStoreError(
                    f"{uri} is not a continuity store (no config table); point --db at a store or run continuity init"
                )
        store = cls(uri, cls._connect(uri))
        names = set(store._reach(store._table_names))
        if "config" not in names:
            if create:
                return cls.init(uri)
            raise NotAStoreError(f"{uri} is not a continuity store (no config table)")
        missing = [t for t in TABLES if t not in names]
        if missing and create:
            return cls.init(uri)  # finish an interrupted init
        if missing:
            raise NotAStoreError(f"{uri} lacks tables {missing}; it is damaged or not a continuity store")
        for name in TABLES:
            try:
                store.table(name)
            except Exception as exc:  # a table a crash left half-made holds nothing: init re-creates it
                try:
                    return cls.init(uri)
                except Exception:
                    raise StoreError(
                        f"{uri}: table {name!r} cannot be opened ({exc}); restore it from a backup or an export"
                    ) from None
        fmt = store.get_config("format", {}).get("version")
        upgrade(store, fmt)  # format 1 stores gain format 2's columns
        store._warn_unless_atomic()
        return store

    @staticmethod
    def _connect(uri: str) -> Any:

        import lancedb

        # Strong consistency: other processes' commits are seen at the next read.
        options = _storage_options(uri)
        try:
            return lancedb.connect(uri, read_consistency_interval=timedelta(0), storage_options=options or None)
        except (OSError, ValueError, RuntimeError) as exc:
            raise remote.remote_error(exc, uri, options) from None

    def _reach(self, fn: Callable[[], T]) -> T:
        """Run the first request to the store: an object store that cannot be reached (wrong
        endpoint, no credentials, no network) is one line, not a traceback."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - lance and object_store raise ValueError, OSError, RuntimeError
            if self._local or isinstance(exc, StoreError):
                raise
            raise remote.remote_error(exc, self.uri, self._options) from None

    def _table_names(self) -> list[str]:
        result = self.db.list_tables()
        names = getattr(result, "tables", result)
        return list(names)

    def table(self, name: str) -> Any:
        """A held handle of one table: opening costs ~1.5 ms (a manifest read) and the story loop asks
        thousands of times; with strong read consistency a held handle still sees every commit."""
        handle = self._tables.get(name)
        if handle is None:
            handle = self._tables[name] = self.db.open_table(name)
        return handle

    @property
    def entities(self) -> Any:
        return self.table("entities")

    @property
    def references(self) -> Any:
        return self.table("references")

    @property
    def tokens(self) -> Any:
        return self.table("tokens")

    @property
    def shots(self) -> Any:
        """Finished shots of story runs (created on first use: stores made before it lack it)."""
        try:
            return self.table("shots")
        except Exception:
            with self.write_lock():
                self._ensure_table("shots", SHOT_SCHEMA)  # missing, or half-made by a crash
        return self.table("shots")

    @property
    def shot_journal(self) -> ShotJournal | None:
        """Shot records not yet folded into ``shots`` (local stores only; see memstore.journal)."""
        if not self._local:
            return None
        if self._shot_journal is None:
            self._shot_journal = ShotJournal(_local_path(self.uri) / JOURNAL_FILE)
        return self._shot_journal

    @property
    def keys(self) -> Any:
        """Per-library API keys by hash (created on first use: stores made before it lack it)."""
        from .keys import KEY_SCHEMA  # keys.py builds on schema.py; imported here to keep store.py's imports lean

        try:
            return self.table("keys")
        except Exception:
            with self.write_lock():
                self._ensure_table("keys", KEY_SCHEMA)  # missing, or half-made by a crash
        return self.table("keys")

    @property
    def consent_events(self) -> Any:
        """The append-only consent log (created on first use: stores made before it lack it)."""
        from .consent_log import CONSENT_EVENT_SCHEMA  # consent_log.py builds on schema.py, like keys.py

        try:
            return self.table("consent_events")
        except Exception:
            with self.write_lock():
                self._ensure_table("consent_events", CONSENT_EVENT_SCHEMA)  # missing, or half-made by a crash
        return self.table("consent_events")

    # --- the write lock -----------------------------------------------------------------------
    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """Serialise writers, so that checks (a name is free) and writes (the entity row) happen as
        one step across processes. Local stores take an exclusive ``flock`` on ``<db>/.write.lock``;
        remote stores, written from many machines that share no file, take the store's write lease
        (:class:`memstore.commits.WriteLease`)."""
        with self._thread_lock:
            if self._lock_depth == 0:
                self._take_write_lock()
            self._lock_depth += 1
            try:
                yield
            finally:
                if self._lock_depth == 1 and self._lease is not None:
                    self._tidy_lease()
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    self._drop_write_lock()

    def _take_write_lock(self) -> None:
        if self._lease is not None:
            self._reach(self._lease.acquire)
            return
        path = _local_path(self.uri) / ".write.lock"
        try:
            handle = open(path, "a+")
        except OSError as exc:
            raise store_error_of(exc, f"the store at {self.uri}") or StoreError(
                f"cannot take the write lock {path}: {first_line(exc)}"
            ) from None
        fcntl.flock(handle, fcntl.LOCK_EX)
        self._lock_file = handle

    def _drop_write_lock(self) -> None:
        if self._lease is not None:
            self._reach(self._lease.release)
        elif self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _tidy_lease(self) -> None:
        """Every lease is two commits of its table: compact and prune it like any table (while held)."""
        try:
            self.maybe_compact(LEASE_TABLE, max_fragments=8)
        except Exception:  # noqa: BLE001 - a failed tidy leaves extra versions, never a wrong lease
            return

    # --- configuration ------------------------------------------------------------------------
    def get_config(self, key: str, default: Any = None) -> Any:
        rows = self.table("config").search().where(f"key = {sql_str(key)}").limit(1).to_list()
        return json.loads(rows[0]["value"]) if rows else default

    def _set_config(self, key: str, value: Any) -> None:
        table = self.table("config")
        row = [{"key": key, "value": json.dumps(value, sort_keys=True, default=str)}]
        table.merge_insert("key").when_matched_update_all().when_not_matched_insert_all().execute(row)

    def set_config(self, key: str, value: Any) -> None:
        with self.write_lock():
            self._set_config(key, value)

    def library_config(self, library: str) -> dict[str, Any]:
        clean_library(library)
        return self.get_config(f"library:{library}", None) or self.default_library_config()

    def default_library_config(self) -> dict[str, Any]:
        return self.get_config("defaults", None) or {
            "embedders": [{"type": "color-histogram"}],
            "index_factory": "auto",
        }

    def set_library_config(self, library: str, config: dict[str, Any]) -> None:
        clean_library(library)
        config = checked_library_config(config)
        with self.write_lock():
            for emb in config.get("embedders", []):
                from .embedders import get_embedder

                self.ensure_vector_column(get_embedder(emb))
            self._set_config(f"library:{library}", config)

    def libraries(self) -> list[str]:
        table = self.entities
        names = table.to_lance().to_table(columns=["library"]).column("library").unique().to_pylist()
        configured = [
            r["key"].split(":", 1)[1]
            for r in self.table("config").search().select(["key"]).limit(None).to_list()
            if r["key"].startswith("library:")
        ]
        return sorted(set(names) | set(configured))

    # --- vector columns -----------------------------------------------------------------------
    def vector_columns(self, schema: pa.Schema | None = None) -> dict[str, dict[str, str]]:
        """Column name -> its embedder metadata (embedder, spec, dim)."""
        out = {}
        for f in schema if schema is not None else self.references.schema:
            if f.metadata and b"embedder" in f.metadata:
                out[f.name] = {k.decode(): v.decode() for k, v in f.metadata.items()}
        return out

    def ensure_vector_column(self, embedder: Any, *, create: bool = True) -> str:
        """Add the embedder's column if missing (unless ``create`` is False: then only check);
        refuse when it exists for another embedder."""
        column = embedder.column_name
        # One read of the schema for both checks: another process may add the column in between.
        schema = self.references.schema
        existing = self.vector_columns(schema).get(column)
        if existing is not None:
            if existing["spec"] != embedder.spec or int(existing["dim"]) != embedder.ndims:
                raise EmbedderMismatchError(
                    f"column {column!r} was made by {existing['spec']} ({existing['dim']}-d), but the configured"
                    f" embedder is {embedder.spec} ({embedder.ndims}-d); configure another column name or reindex"
                )
            return column
        if column in schema.names:
            raise EmbedderMismatchError(f"column {column!r} exists and is not a vector column; choose another name")
        if not create:
            return column
        with self.write_lock():
            if column in self.references.schema.names:  # added by another writer since the check
                return self.ensure_vector_column(embedder, create=False)
            field = vector_field(column, embedder.ndims, embedder.type_name, embedder.spec)
            self.references.add_columns(field)
        return column

    # --- FAISS indexes ------------------------------------------------------------------------
    def index_dir(self) -> Path:
        """Where FAISS indexes live: beside the tables for a local store, in a cache otherwise."""
        if self._local:
            return _local_path(self.uri) / "_faiss"
        digest = remote.cache_key(self.uri, self._options)
        return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "continuity" / "faiss" / digest

    def index(self, library: str, column: str) -> Any:
        """The FAISS index of one library's vector column, brought in step with the table."""
        from .index import VectorIndex

        if column not in self.vector_columns():
            raise InvalidInputError(
                f"no vector column {column!r} in this store; known columns: {sorted(self.vector_columns())}"
            )
        key = (library, column)
        if key not in self._indexes:
            try:  # a config an older version let in must not reach FAISS (it can crash in C++)
                config = checked_library_config(self.library_config(library))
            except InvalidInputError as exc:
                raise InvalidInputError(f"library {library!r}: {exc}; fix it with continuity configure") from None
            self._indexes[key] = VectorIndex(
                ReferenceColumn(self, library, column),
                self.index_dir() / library,
                factory=config.get("index_factory", "auto"),
                params=config.get("index_params") or {},
                versioned=not self._local,
            )
        index = self._indexes[key]
        index.sync()
        return index

    def watch(self, name: str) -> VersionWatch:
        """A cheap reader of one table's version (to rebuild caches only when the table moved on)."""
        return VersionWatch(self, name)

    def forget_indexes(self) -> None:
        self._indexes.clear()

    def text_index(self) -> Any:
        """The full-text (BM25) index over entities, shared by every library of this store."""
        if self._text_index is None:
            from .fts import TextIndex

            self._text_index = TextIndex(self)
        return self._text_index

    # --- maintenance --------------------------------------------------------------------------
    def repair(self) -> dict[str, int]:
        """Remove rows a crash left behind: references and tokens whose entity does not exist;
        and clamp times an older version let outside [MIN_TIME, MAX_TIME] (``times``: how many).

        Writes go references-first, entity-last (the entity row is the commit marker), so a
        crash can only leave orphans, never an entity missing its references."""
        with self.write_lock():
            times = sum(self._clamp_times(name) for name in ("entities", "references", "tokens"))
            ids = set(self.entities.to_lance().to_table(columns=["id"]).column("id").to_pylist())
            removed = {}
            for name in ("references", "tokens"):
                table = self.table(name)
                col = "entity_id"
                present = set(table.to_lance().to_table(columns=[col]).column(col).to_pylist())
                orphans = sorted(present - ids)
                for start in range(0, len(orphans), 500):
                    chunk = orphans[start : start + 500]
                    table.delete(" OR ".join(f"{col} = {sql_str(o)}" for o in chunk))
                removed[name] = len(orphans)
            return {**removed, "times": times}

    def _clamp_times(self, name: str) -> int:
        """Rewrite out-of-range timestamps of one table to the nearest bound; returns the count."""
        from .schema import out_of_range_times
        from .validation import MAX_TIME, MIN_TIME

        table = self.table(name)
        columns = [f.name for f in table.schema if pa.types.is_timestamp(f.type)]
        if not columns:
            return 0
        bad = out_of_range_times(table.to_lance().to_table(columns=columns))
        low, high = (f"timestamp '{t.strftime('%Y-%m-%d %H:%M:%S')}'" for t in (MIN_TIME, MAX_TIME))
        for column in bad:
            for where, bound in ((f"{column} < {low}", MIN_TIME), (f"{column} > {high}", MAX_TIME)):
                table.update(where=where, values={column: bound})
        return sum(bad.values())

    def retry(self, fn: Callable[[], T], attempts: int = 8) -> T:
        """Run a write, retrying on Lance commit conflicts from other processes."""
        delay = 0.02
        for attempt in range(attempts):
            try:
                return fn()
            except Exception as exc:  # lance raises OSError/RuntimeError subclasses on conflicts
                typed = store_error_of(exc, f"the store at {self.uri}")
                if typed is not None:  # a full disk or a read-only store: retrying cannot help
                    raise typed from None
                text = str(exc).lower()
                if not self._local and "conflict" not in text and _is_transport_error(text):
                    raise remote.remote_error(exc, self.uri, self._options) from None  # the client retried already
                if attempt + 1 < attempts and ("conflict" in text or "retry" in text or "commit" in text):
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def maybe_compact(self, name: str, max_fragments: int = 64) -> bool:
        """Compact a table once appends have split it into many small fragments, and prune its
        old versions once many commits have piled up.

        Every write appends a fragment and a version. Scans open each fragment, and every commit
        lists the versions folder, so a store written one shot at a time slows down linearly
        (measured: an append costs 6 ms at 200 versions, 45 ms at 3,800) until both are trimmed.
        Called by writers under the write lock."""
        self._writes[name] = self._writes.get(name, 0) + 1
        if self._writes[name] % 16:  # counting fragments costs a manifest read: look now and then
            return False
        table = self.table(name)
        try:
            dataset = table.to_lance()
            fragments = len(dataset.get_fragments())
        except Exception:  # remote tables may not expose fragments; they compact server-side
            return False
        compacted = fragments > max_fragments
        if compacted:
            with self.write_lock():
                self.retry(lambda: table.optimize())  # also brings scalar indexes over new fragments
        self._prune_versions(name, dataset.version)
        self._ensure_lookup_indexes(name, dataset)
        return compacted

    def _ensure_lookup_indexes(self, name: str, dataset: Any) -> None:
        """Scalar (B-tree) indexes on the columns a table is looked up by, once it is big enough
        for a scan to hurt: at 1M references, reading one entity's references or a shot's images
        scanned every row (~600 ms and ~265 ms a query); with the indexes a cold retrieve took
        165 ms (benchmarks/results/retrieval_scale.json). Rows appended later are read unindexed
        until a compaction folds them in: correct either way, only slower."""
        columns = LOOKUP_INDEXES.get(name)
        if not columns or name in self._lookup_indexed or dataset.count_rows() < LOOKUP_INDEX_ROWS:
            return
        table = self.table(name)
        have = {c for index in table.list_indices() for c in index.columns}
        with self.write_lock():
            for column in [c for c in columns if c not in have]:
                self.retry(functools.partial(table.create_scalar_index, column))
        self._lookup_indexed.add(name)

    def _prune_versions(self, name: str, version: int) -> None:
        """Drop versions beyond the newest ``VERSIONS_KEPT`` that are older than ``VERSION_GRACE``:
        the grace keeps every version a reader may still be scanning (reads re-open the latest
        version, and no read here lasts that long); this store never checks out old versions."""
        if version - self._pruned_at.get(name, 0) < VERSION_PRUNE_EVERY:
            return
        with self.write_lock():
            try:
                self.table(name).to_lance().cleanup_old_versions(
                    older_than=VERSION_GRACE, retain_versions=VERSIONS_KEPT, error_if_tagged_old_versions=False
                )
            except OSError:  # a prune that fails leaves extra versions, never less data: retry later
                return
        self._pruned_at[name] = version

    def library(self, name: str = "default") -> Any:
        from .library import Library

        return Library(self, name)
