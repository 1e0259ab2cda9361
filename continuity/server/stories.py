"""Story sessions kept by the server: one :class:`~continuity.session.StorySession` per (library,
story), the shots planned but not yet committed, and the folder each story's files go to.

A pipeline on another machine plans a shot over HTTP, renders it, and commits its frames. Between
the two the server holds the plan (keyed by library, story and shot index) so that the commit is
stored exactly as planned: the same retrieval, memory and input hash. Both caches are bounded: a
client can name any number of stories. A session dropped from the cache, or lost with a restart,
is reopened from the store's shot log (the session resumes by itself); a plan dropped is planned
again (a commit without one is a 409 that says so).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from memstore.errors import ContinuityError
from memstore.library import Library
from memstore.store import Store
from memstore.validation import clean_text

from ..session import SessionConfig, ShotPlan, StorySession

K = TypeVar("K")
V = TypeVar("V")
MAX_CACHED_SESSIONS = 64
MAX_PENDING_PLANS = 64  # a plan holds its memory keyframes' images: a few MB at most each
OUTPUTS_FOLDER = "_outputs"
_SAFE_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class StoryConflictError(ContinuityError):
    """A commit the story is not ready for: no pending plan for that shot, or the story moved on
    since it was planned (HTTP 409)."""


class LRU(Generic[K, V]):
    """At most ``size`` items, least recently used dropped first. Callers hold their own lock."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: K, item: V) -> V:
        self._items[key] = item
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return item

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)

    def drop(self, keep: Callable[[K], bool]) -> int:
        """Remove every item whose key ``keep`` refuses; returns how many went."""
        gone = [k for k in self._items if not keep(k)]
        for k in gone:
            del self._items[k]
        return len(gone)


def default_outputs_dir(store: Store) -> Path:
    """Beside the tables for a local store (``<store>/_outputs``); in the user's cache otherwise
    (an object store is no folder to write MP4s into)."""
    uri = str(store.uri)
    if "://" not in uri or uri.startswith("file://"):
        return Path(uri.removeprefix("file://")) / OUTPUTS_FOLDER
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "continuity" / "outputs" / digest


def story_folder(story_id: str) -> str:
    """A folder name for a story id: the id itself when it is a plain name, else a slug of it with
    a hash (ids are free text: ``..``, ``/`` or spaces must never reach a path)."""
    if _SAFE_FOLDER.match(story_id) and story_id not in (".", ".."):
        return story_id
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", story_id).strip("-")[:40] or "story"
    return f"{slug}-{hashlib.sha256(story_id.encode('utf-8')).hexdigest()[:12]}"


def clean_story_id(story: str) -> str:
    return clean_text(story, "story id")


@dataclass
class StoryHandle:
    """One open story: its session and the lock that serializes its plans, commits and resets."""

    session: StorySession
    lock: threading.Lock = field(default_factory=threading.Lock)


class StorySessions:
    """The server's open stories and pending plans (see the module docstring)."""

    def __init__(self, outputs_dir: Path, config: SessionConfig | None = None):
        self.outputs_dir = outputs_dir
        self.config = config or SessionConfig(generator="external")
        self._lock = threading.Lock()
        self._sessions: LRU[tuple[str, str], StoryHandle] = LRU(MAX_CACHED_SESSIONS)
        self._plans: LRU[tuple[str, str, int], ShotPlan] = LRU(MAX_PENDING_PLANS)

    def out_dir(self, library: str, story_id: str) -> Path:
        return self.outputs_dir / library / story_folder(story_id)

    def open(self, library: Library, story_id: str, retriever: object = None) -> StoryHandle:
        """The story's session: cached, or reopened from the shot log. A library object rebuilt
        since (its configuration changed) gets a new session over it."""
        key = (library.name, story_id)
        with self._lock:
            handle = self._sessions.get(key)
            if handle is not None and handle.session.library is library:
                return handle
        session = StorySession(
            library, story_id, self.config, retriever=retriever, out_dir=self.out_dir(library.name, story_id)
        )
        with self._lock:
            current = self._sessions.get(key)  # another request may have opened it meanwhile
            if current is not None and current.session.library is library:
                return current
            return self._sessions.put(key, StoryHandle(session))

    def keep_plan(self, plan: ShotPlan, library: str, story_id: str) -> None:
        with self._lock:
            self._plans.put((library, story_id, plan.index), plan)

    def pending_plan(self, library: str, story_id: str, index: int) -> ShotPlan:
        with self._lock:
            plan = self._plans.get((library, story_id, index))
        if plan is None:
            raise StoryConflictError(
                f"shot {index} of story {story_id!r} has no pending plan (never planned, already committed,"
                f" or dropped); POST /libraries/{library}/stories/{story_id}/plan first"
            )
        return plan

    def forget_plans(self, library: str, story_id: str, from_index: int = 0) -> int:
        """Drop the story's pending plans from ``from_index`` on (a commit or reset made them stale)."""
        with self._lock:
            return self._plans.drop(lambda k: not (k[0] == library and k[1] == story_id and k[2] >= from_index))
