"""Resuming a finished story without planning it again.

A shot's input hash covers what retrieval and memory chose, so checking it means planning the
shot (retrieval, memory) again: about 50 ms a shot, ten minutes for a 10,000-shot rerun. But while
every earlier shot is resumed, a shot's plan is a function of its script entry, the run's
configuration, the library's blueprints and the earlier shots, all of which a *plan key* chains
without retrieving anything. A shot whose recorded plan key matches, and whose files are its own,
is resumed from its shot record; from the first shot that does not match, every later shot is
planned in full (its inputs may have changed with what that shot makes).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from memstore.library import Library
from memstore.schema import Entity, ShotRecord
from retrieval.query import Hit, RetrievalResult, ShotQuery

from .session import SessionConfig
from .story import Scene, Shot


def library_fingerprint(library: Library, config: SessionConfig) -> str:
    """Everything of the library a plan depends on: each entity and when it (or its registered
    references) last changed, the library's embedders and index, and the run's configuration."""
    from . import __version__

    entities = sorted((e.id, e.updated.isoformat()) for e in library.list())
    payload = {
        "entities": entities,
        "library": library.config,
        "config": {k: v for k, v in asdict(config).items() if k not in ("write_back", "face_match_threshold")},
        "continuity": __version__,  # another version may retrieve otherwise
    }
    return _digest(payload)


class FastResume:
    """The plan-key chain of one run, and the shot records it resumes from."""

    def __init__(self, library: Library, story_id: str, config: SessionConfig):
        self.fingerprint = library_fingerprint(library, config)
        self.records = {r.shot_index: r for r in library.shots.records(story_id)}
        self.entities: dict[str, Entity] = {e.id: e for e in library.list()}
        self.key = ""
        self.open = True  # still on a prefix of resumed shots

    def next_key(self, index: int, scene: Scene, shot: Shot, location: str | None) -> str:
        self.key = _digest(
            {
                "previous": self.key,
                "fingerprint": self.fingerprint,
                "index": index,
                "scene": scene.index,
                "location": location,
                "shot": shot.model_dump(mode="json"),
            }
        )
        return self.key

    def record_for(self, index: int, key: str, video: Path, provenance: Path) -> ShotRecord | None:
        """The shot's record when the shot can be resumed without planning it, else None (and
        every later shot is then planned in full)."""
        record = self.records.get(index) if self.open else None
        manifest = _manifest(record) if record is not None else {}
        if record is None or manifest.get("plan_key") != key or not _files_are_its(record, manifest, video, provenance):
            self.open = False
            return None
        return record

    def result_of(self, record: ShotRecord, cut: bool) -> RetrievalResult:
        """What the shot retrieved, from its record (for the story context, the report and metrics)."""
        hits = tuple(
            Hit(entity=self.entities[eid], score=1.0, reasons=("resumed from the shot log",))
            for eid in record.retrieved
            if eid in self.entities
        )
        query = ShotQuery(record.prompt or "-", story_id=record.story_id, shot_index=record.shot_index, cut=cut)
        return RetrievalResult(query=query, hits=hits)


def _files_are_its(record: ShotRecord, manifest: dict[str, Any], video: Path, provenance: Path) -> bool:
    """The MP4 and provenance in the folder are this record's (a folder can be shared by stories)."""
    try:
        on_disk = json.loads(provenance.read_text(encoding="utf-8"))
        size = video.stat().st_size
    except (OSError, ValueError):
        return False
    outputs = [o for o in on_disk.get("outputs", []) if o.get("kind") == "video"]
    return (
        on_disk.get("input_hash") == record.input_hash
        and on_disk.get("story_id") == record.story_id
        and bool(outputs)
        and outputs[0].get("bytes") == size
    )


def _manifest(record: ShotRecord) -> dict[str, Any]:
    try:
        data = json.loads(record.provenance or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
