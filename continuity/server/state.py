"""The per-app state (one store, its key ring, cached Library and Retriever objects) and the
``Depends`` providers through which the routes reach it."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Request

from memstore.errors import NotFoundError
from memstore.keys import KeyRing
from memstore.library import Library
from memstore.store import Store
from memstore.validation import clean_library
from retrieval import Retriever

from .auth import AccessDep
from .limits import BodyLimit
from .stories import StorySessions, default_outputs_dir

_CacheKey = tuple[str, str]  # (library name, its configuration as canonical JSON)
V = TypeVar("V")
MAX_CACHED_LIBRARIES = 64  # a client can name any number of libraries: the cache must not grow with them


class LibraryCache(Generic[V]):
    """At most ``size`` objects, one per library, least recently used dropped first; a config
    change makes a new key and drops the library's stale object. Callers hold the state's lock."""

    def __init__(self, size: int = MAX_CACHED_LIBRARIES):
        self.size = size
        self._items: OrderedDict[_CacheKey, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: _CacheKey) -> V | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: _CacheKey, item: V) -> V:
        for stale in [k for k in self._items if k[0] == key[0]]:
            del self._items[stale]
        self._items[key] = item
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return item


class AppState:
    """One store and the objects built over it, cached by library configuration: building an
    embedder can load a model, so it must not happen per request."""

    def __init__(self, store: Store, limit: BodyLimit, keyring: KeyRing, outputs_dir: Path | None = None):
        self.store = store
        self.limit = limit
        self.keyring = keyring
        self._lock = threading.Lock()
        self.libraries: LibraryCache[Library] = LibraryCache()
        self.retrievers: LibraryCache[Retriever] = LibraryCache()
        self._query_locks = [threading.Lock() for _ in range(MAX_CACHED_LIBRARIES)]
        # story sessions, their pending plans, and where committed shots' files go
        self.stories = StorySessions(outputs_dir if outputs_dir is not None else default_outputs_dir(store))

    def _key(self, name: str) -> _CacheKey:
        name = clean_library(name)
        return name, json.dumps(self.store.library_config(name), sort_keys=True, default=str)

    def library(self, name: str) -> Library:
        key = self._key(name)
        with self._lock:
            lib = self.libraries.get(key)
            return lib if lib is not None else self.libraries.put(key, Library(self.store, key[0]))

    def require_existing(self, library: Library) -> Library:
        """The library, or NotFoundError when it has no entities and no configuration."""
        if library.count()["entities"] == 0 and self.store.get_config(f"library:{library.name}") is None:
            raise NotFoundError(f"library {library.name!r} does not exist; see GET /libraries")
        return library

    def retriever(self, library: Library) -> tuple[Retriever, threading.Lock]:
        """The library's retriever and the lock that serializes its queries."""
        key = self._key(library.name)
        with self._lock:
            retriever = self.retrievers.get(key)
            if retriever is None:
                retriever = self.retrievers.put(key, Retriever(library))
            # striped by name, not cached with the retriever: an evicted retriever's query still in
            # flight and its successor's then share one lock
            return retriever, self.query_lock(key[0])

    def query_lock(self, name: str) -> threading.Lock:
        """The lock that serializes a library's searches (its hot indexes sync in place)."""
        return self._query_locks[hash(name) % len(self._query_locks)]


# --- Depends providers ----------------------------------------------------------------------------
def get_state(request: Request) -> AppState:
    return request.app.state.continuity


StateDep = Annotated[AppState, Depends(get_state)]


def get_library(lib: str, state: StateDep, access: AccessDep) -> Library:
    """The library named by the route's ``{lib}`` (InvalidNameError for a bad name; ForbiddenError
    when the request's key is for another library: the middleware checked the path, this the name)."""
    library = state.library(lib)
    access.check(library.name, "read", f"library {library.name!r}")
    return library


LibraryDep = Annotated[Library, Depends(get_library)]


def get_existing_library(library: LibraryDep, state: StateDep) -> Library:
    return state.require_existing(library)


ExistingLibraryDep = Annotated[Library, Depends(get_existing_library)]


def get_upload_limit(state: StateDep) -> int:
    """The per-image byte limit of this app."""
    return state.limit.per_upload


UploadLimitDep = Annotated[int, Depends(get_upload_limit)]
