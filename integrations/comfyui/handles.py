"""The LIBRARY handle that travels along the graph's wires, and the per-process cache behind it.

A ComfyUI server runs for days and executes the same graph many times; opening a LanceDB store
(connections, FAISS indexes, the retriever's entity cache) on every node call would cost seconds.
Opened libraries are kept here per (store URI, library name), for the life of the process.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the project loads when a node runs, not when ComfyUI imports the pack
    from memstore.library import Library
    from memstore.store import VersionWatch
    from retrieval import Retriever

LIBRARY = "CONTINUITY_LIBRARY"  # the custom ComfyUI type of the handle
WATCHED_TABLES = ("entities", "references", "shots")


@dataclass(eq=False)
class LibraryHandle:
    """An opened library of a store, with cheap table versions and one shared retriever."""

    uri: str
    library: Library
    _watches: dict[str, VersionWatch] = field(default_factory=dict, repr=False)
    _retriever: Retriever | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.library.name

    def __str__(self) -> str:  # what ComfyUI prints for an input value in its error details
        return f"continuity library {self.name!r} at {self.uri}"

    @property
    def retriever(self) -> Retriever:
        """One retriever per handle: its entity cache follows the store's versions by itself."""
        if self._retriever is None:
            from retrieval import Retriever

            self._retriever = Retriever(self.library)
        return self._retriever

    def versions(self) -> tuple[int, ...]:
        """The Lance versions of the tables the nodes read (-1 for a table not made yet: the shot
        log is created on the first story write)."""
        return tuple(self._version(name) for name in WATCHED_TABLES)

    def fingerprint(self) -> str:
        """What IS_CHANGED returns: changes whenever any watched table moved on."""
        return f"{self.uri}#{self.name}@" + ".".join(str(v) for v in self.versions())

    def _version(self, table: str) -> int:
        watch = self._watches.get(table)
        if watch is None:
            watch = self._watches[table] = self.library.store.watch(table)
        try:
            return watch.version()
        except ValueError:  # lance: "Table 'shots' was not found" until the first shot is written
            return -1


_OPEN: dict[tuple[str, str], LibraryHandle] = {}
_LOCK = threading.Lock()


def store_uri(db: str) -> str:
    """The cache key of a store: an object-store URI as given, a local path made absolute (the
    same folder named two ways is one store)."""
    from memstore.store import default_db

    uri = (db or "").strip() or default_db()
    if "://" in uri and not uri.startswith("file://"):
        return uri
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return os.path.abspath(os.path.expanduser(path))


def open_handle(db: str, library: str, *, create: bool = True) -> LibraryHandle:
    """The cached handle of ``library`` in the store ``db`` (opened, or created, on first use)."""
    from memstore.validation import clean_library

    key = (store_uri(db), clean_library(library))
    with _LOCK:
        handle = _OPEN.get(key)
        if handle is None:
            from memstore import open_library

            handle = _OPEN[key] = LibraryHandle(key[0], open_library(key[0], key[1], create=create))
        return handle


def fingerprint_of(handle: object) -> str:
    """IS_CHANGED of a node that reads a library. ComfyUI evaluates IS_CHANGED with constants only
    (a wired input such as the LIBRARY arrives as None), so without a handle every library this
    process opened is fingerprinted: a write to any of them re-runs the reading nodes."""
    if isinstance(handle, LibraryHandle):
        return handle.fingerprint()
    with _LOCK:
        handles = list(_OPEN.values())
    return "|".join(sorted(h.fingerprint() for h in handles))


def forget_handles() -> None:
    """Drop every cached handle (tests; a store deleted on disk while ComfyUI runs)."""
    with _LOCK:
        _OPEN.clear()
