"""The per-app state (one store, cached Library and Retriever objects) and the ``Depends``
providers through which the routes reach it."""

from __future__ import annotations

import json
import threading
from typing import Annotated

from fastapi import Depends, Request

from memstore.errors import NotFoundError
from memstore.library import Library
from memstore.store import Store
from memstore.validation import clean_library
from retrieval import Retriever

from .limits import BodyLimit

_CacheKey = tuple[str, str]  # (library name, its configuration as canonical JSON)


class AppState:
    """One store and the objects built over it, cached by library configuration: building an
    embedder can load a model, so it must not happen per request."""

    def __init__(self, store: Store, limit: BodyLimit):
        self.store = store
        self.limit = limit
        self._lock = threading.Lock()
        self._libraries: dict[_CacheKey, Library] = {}
        self._retrievers: dict[_CacheKey, tuple[Retriever, threading.Lock]] = {}

    def _key(self, name: str) -> _CacheKey:
        name = clean_library(name)
        return name, json.dumps(self.store.library_config(name), sort_keys=True, default=str)

    def library(self, name: str) -> Library:
        key = self._key(name)
        with self._lock:
            lib = self._libraries.get(key)
            if lib is None:
                # a config change makes a new key; drop the stale object of that library
                self._libraries = {k: v for k, v in self._libraries.items() if k[0] != key[0]}
                lib = self._libraries[key] = Library(self.store, key[0])
            return lib

    def require_existing(self, library: Library) -> Library:
        """The library, or NotFoundError when it has no entities and no configuration."""
        if library.count()["entities"] == 0 and self.store.get_config(f"library:{library.name}") is None:
            raise NotFoundError(f"library {library.name!r} does not exist; see GET /libraries")
        return library

    def retriever(self, library: Library) -> tuple[Retriever, threading.Lock]:
        """The library's retriever and the lock that serializes its queries."""
        key = self._key(library.name)
        with self._lock:
            item = self._retrievers.get(key)
            if item is None:
                self._retrievers = {k: v for k, v in self._retrievers.items() if k[0] != key[0]}
                item = self._retrievers[key] = (Retriever(library), threading.Lock())
            return item


# --- Depends providers ----------------------------------------------------------------------------
def get_state(request: Request) -> AppState:
    return request.app.state.continuity


StateDep = Annotated[AppState, Depends(get_state)]


def get_library(lib: str, state: StateDep) -> Library:
    """The library named by the route's ``{lib}`` (InvalidNameError for a bad name)."""
    return state.library(lib)


LibraryDep = Annotated[Library, Depends(get_library)]


def get_existing_library(library: LibraryDep, state: StateDep) -> Library:
    return state.require_existing(library)


ExistingLibraryDep = Annotated[Library, Depends(get_existing_library)]


def get_upload_limit(state: StateDep) -> int:
    """The per-image byte limit of this app."""
    return state.limit.per_upload


UploadLimitDep = Annotated[int, Depends(get_upload_limit)]
