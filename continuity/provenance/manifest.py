"""Per-shot provenance: what went into a shot and what came out, as one JSON manifest.

A manifest answers "why does the knight look like this in shot 12": which blueprints were
retrieved and why, which reference images and memory keyframes conditioned the generator (by
sha256, so a later edit of the library is visible), the prompt before and after enrichment,
generator, model and seed, consent overrides, the output files with their hashes, timings and
software versions. The input hash lets a resumed run skip shots whose inputs did not change.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memstore.errors import InvalidInputError
from memstore.files import publish

SCHEMA_VERSION = 1
#: distributions whose versions are recorded (read from metadata: nothing heavy is imported)
TRACKED_PACKAGES = (
    "continuity",
    "numpy",
    "pillow",
    "pydantic",
    "lancedb",
    "faiss-cpu",
    "torch",
    "open-clip-torch",
    "diffusers",
    "transformers",
    "insightface",
    "onnxruntime",
    "dlib-bin",
    "av",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BlueprintUse(_Model):
    entity_id: str
    name: str
    kind: str
    score: float
    reasons: list[str] = Field(default_factory=list)


class ReferenceUse(_Model):
    id: str
    entity_id: str | None = None
    sha256: str | None = None
    era: str | None = None
    source: str | None = None


class MemoryUse(_Model):
    id: str
    entity_id: str | None = None
    sha256: str | None = None
    story: str | None = None
    shot: int | None = None
    frame: int | None = None
    reason: str = ""


class ConsentOverride(_Model):
    entity_id: str
    name: str
    reason: str  # what was overridden (no consent, expired rights) and who allowed it


class OutputFile(_Model):
    path: str  # relative to the manifest's folder where possible
    kind: str = "video"  # video | keyframe | frame | other
    sha256: str  # of the file as published (with its content credentials, where signed)
    bytes: int
    signed: bool = False  # carries C2PA content credentials


class ShotManifest(_Model):
    schema_version: int = SCHEMA_VERSION
    story_id: str
    shot_index: int  # global, 0-based (StoryScript.iter_shots)
    scene_index: int | None = None
    shot_in_scene: int | None = None
    cut: bool | None = None  # a new camera setup (True) or a continuation of the previous shot
    input_hash: str
    prompt: str
    enriched_prompt: str | None = None
    generator: str
    model_id: str | None = None
    seed: int | None = None
    blueprints: list[BlueprintUse] = Field(default_factory=list)
    references: list[ReferenceUse] = Field(default_factory=list)
    memory: list[MemoryUse] = Field(default_factory=list)
    consent_overrides: list[ConsentOverride] = Field(default_factory=list)
    outputs: list[OutputFile] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)  # seconds per stage
    software: dict[str, str] = Field(default_factory=lambda: software_versions())
    notes: list[str] = Field(default_factory=list)
    # the invisible watermark id in the shot's frames (hex): resolves to this shot's record
    watermark: str | None = None
    # the continuity guard's verdict on the kept attempt ({"passed", "checks", ...}), and every attempt
    guard: dict[str, Any] | None = None
    attempts: list[dict[str, Any]] = Field(default_factory=list)
    # the chained key of the shot's plan inputs (continuity.resume): a rerun resumes without replanning
    plan_key: str | None = None
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


def guard_fields(verdict: Any = None, attempts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The continuity guard's verdict and attempts as manifest fields, for the fields this
    manifest version has (``guard``, ``attempts``); nothing when there is no verdict."""
    out: dict[str, Any] = {}
    if verdict is not None and "guard" in ShotManifest.model_fields:
        out["guard"] = verdict.to_json() if hasattr(verdict, "to_json") else verdict
    if attempts and "attempts" in ShotManifest.model_fields:
        out["attempts"] = attempts
    return out


@functools.cache
def _versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: package metadata costs ~27 ms and does not change during a run."""
    out = {"python": sys.version.split()[0], "platform": platform.platform(terse=True)}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return tuple(out.items())


def software_versions() -> dict[str, str]:
    return dict(_versions())


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def output_file(
    path: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None = None, kind: str = "video"
) -> OutputFile:
    """Describe an output file; its path is stored relative to ``base_dir`` when inside it, so a
    run folder can be moved."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"output file {str(p)!r} does not exist")
    shown = str(p)
    if base_dir is not None:
        try:
            shown = p.resolve().relative_to(Path(base_dir).resolve()).as_posix()
        except ValueError:
            pass
    return OutputFile(path=shown, kind=kind, sha256=file_sha256(p), bytes=p.stat().st_size)


def uses_from_retrieval(result: Any) -> dict[str, list[Any]]:
    """``blueprints``, ``references`` and ``memory`` for a manifest, from a
    :class:`retrieval.query.RetrievalResult` (read by attribute, so this module needs no retrieval
    import)."""
    blueprints, references, memory = [], [], []
    for hit in getattr(result, "hits", ()):
        e = hit.entity
        blueprints.append(
            BlueprintUse(entity_id=e.id, name=e.name, kind=e.kind, score=float(hit.score), reasons=list(hit.reasons))
        )
        for r in hit.references:
            references.append(ReferenceUse(id=r.id, entity_id=r.entity_id, sha256=r.sha256, era=r.era, source=r.source))
    mem = list(getattr(result, "memory", ()))
    reasons = list(getattr(result, "memory_reasons", ()) or ())
    for i, r in enumerate(mem):
        memory.append(
            MemoryUse(
                id=r.id,
                entity_id=getattr(r, "entity_id", None),
                sha256=getattr(r, "sha256", None),
                story=getattr(r, "story", None),
                shot=getattr(r, "shot", None),
                frame=getattr(r, "frame", None),
                reason=reasons[i] if i < len(reasons) else "",
            )
        )
    return {"blueprints": blueprints, "references": references, "memory": memory}


def write_provenance(path: str | os.PathLike[str], manifest: ShotManifest) -> Path:
    """Write the manifest as JSON, atomically (temp file in the same folder, then os.replace), so a
    reader never sees half a manifest and a crash never leaves one that claims a finished shot."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = manifest.model_dump_json(indent=2)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def read_provenance(path: str | os.PathLike[str]) -> ShotManifest:
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"provenance file {str(p)!r} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"provenance file {p.name!r} is not valid JSON ({exc.__class__.__name__}); delete it to regenerate the shot"
        ) from None
    if isinstance(data, dict) and data.get("schema_version", SCHEMA_VERSION) > SCHEMA_VERSION:
        raise InvalidInputError(
            f"provenance file {p.name!r} has schema version {data['schema_version']}, "
            f"this version reads up to {SCHEMA_VERSION}; upgrade continuity"
        )
    try:
        return ShotManifest.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        field = ".".join(str(x) for x in e.get("loc", ())) or "value"
        raise InvalidInputError(f"provenance file {p.name!r}: {field!r}: {e.get('msg')}") from None


__all__ = [
    "SCHEMA_VERSION",
    "BlueprintUse",
    "ConsentOverride",
    "MemoryUse",
    "OutputFile",
    "ReferenceUse",
    "ShotManifest",
    "file_sha256",
    "output_file",
    "read_provenance",
    "software_versions",
    "uses_from_retrieval",
    "write_provenance",
]
