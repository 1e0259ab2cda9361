"""Where a file came from: its content credentials (valid, tampered or none) and its watermark,
resolved to the store's shot records (library, story, shot, entities and their consent).

Exit statuses of ``continuity verify`` (:attr:`Verification.exit_code`): 0 valid credentials,
1 tampered (a manifest whose signature or content hash fails), 2 unknown (no manifest; a watermark
found in the pixels still names the shot it came from).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from memstore.errors import InvalidInputError

from .credentials import SHOT_ASSERTION, CredentialCheck, read_credentials

if TYPE_CHECKING:
    from memstore.schema import ShotRecord
    from memstore.store import Store

Status = Literal["valid", "tampered", "unknown"]
EXIT_CODES: dict[Status, int] = {"valid": 0, "tampered": 1, "unknown": 2}
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv")
MAX_VIDEO_FRAMES = 600  # decoded from the start of a video to look for watermarks (bounded work)

__all__ = ["EXIT_CODES", "Verification", "read_pixels", "shot_summary", "verify_file"]


@dataclass
class Verification:
    path: Path
    credentials: CredentialCheck
    watermarks: dict[str, int] = field(default_factory=dict)  # id -> frames that carry it
    shots: list[dict[str, Any]] = field(default_factory=list)  # the store's records the watermarks name

    @property
    def status(self) -> Status:
        return {"valid": "valid", "tampered": "tampered"}.get(self.credentials.state, "unknown")  # type: ignore[return-value]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "status": self.status,
            "exit_code": self.exit_code,
            "credentials": self.credentials.to_json(),
            "watermarks": self.watermarks,
            "shots": self.shots,
        }


def read_pixels(path: Path) -> np.ndarray:
    """Frames (T x H x W x 3 RGB uint8) of a video, or the one frame of an image."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        from ..video import read_frames

        return read_frames(path, max_frames=MAX_VIDEO_FRAMES)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))[None]
    except (UnidentifiedImageError, OSError):
        raise InvalidInputError(f"{path.name!r} is neither a video nor an image this version reads") from None


def shot_summary(store: Store, record: ShotRecord) -> dict[str, Any]:
    """A shot record as verify and audit show it: where, what, who, and consent then and now."""
    manifest = json.loads(record.provenance or "{}")
    library = store.library(record.library)
    ids = [b["entity_id"] for b in manifest.get("blueprints", [])] or list(record.retrieved)
    now = library.entities_by_id(ids)
    overridden = {o["entity_id"] for o in manifest.get("consent_overrides", [])}
    entities = [
        {
            "entity_id": eid,
            "name": now[eid].name
            if eid in now
            else next((b["name"] for b in manifest.get("blueprints", []) if b["entity_id"] == eid), eid),
            "consent_now": now[eid].rights.consent if eid in now else None,
            "removed": eid not in now,
            "overridden": eid in overridden,
        }
        for eid in ids
    ]
    video = Path(record.output) if record.output else None
    outputs = [
        str((video.parent / o["path"]) if video is not None and not os.path.isabs(o["path"]) else o["path"])
        for o in manifest.get("outputs", [])
    ]
    return {
        "store": store.uri,
        "library": record.library,
        "story_id": record.story_id,
        "shot_index": record.shot_index,
        "prompt": record.prompt,
        "watermark": manifest.get("watermark"),
        "created": record.created.isoformat() if record.created else None,
        "entities": entities,
        "outputs": outputs,
    }


def verify_file(path: str | os.PathLike[str], store: Store | None = None) -> Verification:
    """Check a file's content credentials and read its watermark; with a store, resolve the
    watermark ids (and the credentials' shot) to the store's shot records."""
    from memstore.shots import shots_with_watermark

    from .watermark import decode_frames

    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{str(p)!r} does not exist; give the path of an MP4 or image")
    result = Verification(p, read_credentials(p))
    pixels = read_pixels(p)
    result.watermarks = dict(Counter(decode_frames(pixels)).most_common())
    if store is not None:
        seen: set[tuple[str, str, int]] = set()
        records = [r for wid in result.watermarks for r in shots_with_watermark(store, wid)]
        claimed = result.credentials.assertion(SHOT_ASSERTION)
        if claimed and claimed.get("watermark"):
            records += shots_with_watermark(store, str(claimed["watermark"]))
        for record in records:
            key = (record.library, record.story_id, record.shot_index)
            if key not in seen:
                seen.add(key)
                result.shots.append(shot_summary(store, record))
    return result
