"""What the story loop does to every file it publishes: watermark the frames, sign the files.

:class:`Publisher` holds the run's signing identity (from the environment) and says once per
output folder and process that outputs are unsigned when there is none; the session calls
:meth:`Publisher.sign_shot` for a shot's MP4 and keyframes and the finish calls
:meth:`Publisher.sign_story` for the story MP4.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .credentials import ENV_CERT, ENV_KEY, Ingredient, SigningIdentity, shot_definition, sign_file, story_definition
from .manifest import OutputFile, ShotManifest, output_file

log = logging.getLogger("continuity.provenance")
UNSIGNED = f"outputs are not signed: no signing identity (set {ENV_CERT} and {ENV_KEY} to PEM files to sign them)"
_warned: set[str] = set()
_warned_lock = threading.Lock()

__all__ = ["UNSIGNED", "Publisher", "reference_ingredients", "watermarked", "write_keyframe_images"]


def _warn_once(out_dir: Path) -> bool:
    """Log that outputs are unsigned, once per output folder in this process; True when it did."""
    key = str(out_dir.resolve())
    with _warned_lock:
        if key in _warned:
            return False
        _warned.add(key)
    log.warning("%s; provenance.json is still written beside each shot (%s)", UNSIGNED, out_dir)
    return True


def _mime_of(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def reference_ingredients(hits: Iterable[Any]) -> list[Ingredient]:
    """The registered references of a retrieval's hits, as ingredients (images that conditioned
    the shot); references without loaded bytes are named by their sha256 in the shot assertion only."""
    out = []
    for hit in hits:
        for ref in getattr(hit, "references", ()):
            data = getattr(ref, "image", None)
            if getattr(ref, "source", "registered") != "registered" or not data:
                continue
            out.append(
                Ingredient(
                    title=f"{hit.entity.name} reference {ref.id}",
                    data=bytes(data),
                    mime=_mime_of(bytes(data)),
                    sha256=getattr(ref, "sha256", None),
                )
            )
    return out


class Publisher:
    """Signs the files of one run with the environment's identity (or leaves them unsigned)."""

    def __init__(self, out_dir: str | os.PathLike[str], identity: SigningIdentity | None = None):
        self.out_dir = Path(out_dir)
        self.identity = identity
        if identity is None:
            _warn_once(self.out_dir)

    @classmethod
    def from_env(cls, out_dir: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Publisher:
        return cls(out_dir, SigningIdentity.from_env(env))

    @property
    def signs(self) -> bool:
        return self.identity is not None

    def sign_shot(
        self,
        manifest: ShotManifest,
        files: Sequence[tuple[Path, str]],
        *,
        consent: Mapping[str, bool | None],
        where: Mapping[str, str],
        ingredients: Sequence[Ingredient] = (),
    ) -> list[OutputFile]:
        """Sign each (path, kind) of a shot, then describe it as published (sha256 of the signed file)."""
        outputs = []
        for path, kind in files:
            if self.identity is not None:
                definition = shot_definition(manifest, path.name, consent, where)
                sign_file(path, definition, self.identity, ingredients)
            described = output_file(path, base_dir=path.parent, kind=kind)
            outputs.append(described.model_copy(update={"signed": self.identity is not None}))
        return outputs

    def sign_story(
        self, video: Path, story_id: str, generator: str, shots: Sequence[tuple[Path, ShotManifest]]
    ) -> bool:
        """Sign the story MP4 with each shot's file as a ``componentOf`` ingredient; False when unsigned."""
        if self.identity is None:
            return False
        summary = [
            {
                "shot_index": m.shot_index,
                "watermark": m.watermark,
                "input_hash": m.input_hash,
                "entities": [{"entity_id": b.entity_id, "name": b.name} for b in m.blueprints],
            }
            for _, m in shots
        ]
        ingredients = [
            Ingredient(
                title=path.name,
                data=path.read_bytes(),
                mime="video/mp4",
                sha256=next((o.sha256 for o in m.outputs if o.kind == "video"), None),
                relationship="componentOf",
            )
            for path, m in shots
            if path.is_file()
        ]
        sign_file(video, story_definition(story_id, video.name, summary, generator), self.identity, ingredients)
        return True


def watermarked(frames: Any, library: str, story_id: str, index: int, input_hash: str) -> tuple[str | None, Any]:
    """The shot's watermark id and its frames with the id embedded; (None, frames) when the frames
    are too small to carry it (the manifest then has no watermark)."""
    import numpy as np

    from .watermark import can_watermark, embed_frames, watermark_id

    frames = np.asarray(frames)
    if frames.ndim != 4 or not can_watermark(frames.shape[2], frames.shape[1]):
        return None, frames
    wid = watermark_id(library, story_id, index, input_hash)
    return wid, embed_frames(frames, wid)


def _remove_keyframe_images(video: Path) -> None:
    """Remove a previous render's keyframe JPEGs of this shot. They are numbered from 0 without
    gaps and removed last first (a crash midway leaves them so), so counting stops at the first
    missing one: a glob listed the whole shots folder, which a 10,000-shot story fills with 30,000
    files, for every shot."""
    old = [video.parent / f"{video.stem}.keyframe_{n}.jpg" for n in range(64)]  # a shot has a handful
    count = next((n for n, path in enumerate(old) if not path.exists()), len(old))
    for path in reversed(old[:count]):
        path.unlink(missing_ok=True)


def write_keyframe_images(video: Path, frames: Any, frame_indexes: Iterable[int | None]) -> list[tuple[Path, str]]:
    """The shot's keyframes as JPEGs beside its MP4 (``shot_000.keyframe_0.jpg``, ...), in frame
    order, replacing any a previous render of the shot left; returns (path, "keyframe") pairs."""
    import numpy as np
    from PIL import Image

    from memstore.files import publish

    _remove_keyframe_images(video)
    written = []
    picks = sorted({int(i) for i in frame_indexes if i is not None and 0 <= int(i) < len(frames)})
    for n, frame_index in enumerate(picks):
        path = video.parent / f"{video.stem}.keyframe_{n}.jpg"
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(np.asarray(frames[frame_index])).save(tmp, format="JPEG", quality=92)
        publish(tmp, path)
        written.append((path, "keyframe"))
    return written
