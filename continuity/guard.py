"""The continuity guard: score a generated shot against what it was asked to show.

Each character is checked by face identity against its registered references (the best match
among the faces found, each face used for one character only); a character without a face
reference (an animal, a robot, a costume) and every location and prop by image similarity to its
references, with a semantic image embedder such as CLIP only: a colour histogram cannot judge a
shot (continuity.thresholds has the numbers), so without one those entities are "unchecked". The number of faces on
screen is compared with the number of characters asked for (OCCM, as ViStoryBench defines it).
The story loop acts on the verdict (:mod:`continuity.attempts`, :mod:`continuity.runner`):
retry with another seed and a stronger conditioning scale, keep the best attempt, and never let a
failed shot's keyframes into episodic memory.

Thresholds are per embedder (:mod:`continuity.thresholds` says why each is what it is).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from memstore.embedders import Embedder
from memstore.errors import ContinuityError, InvalidInputError
from memstore.library import Library
from memstore.schema import Entity
from retrieval.query import Hit, RetrievalResult

from .keyframes import detect_faces, face_embedder, image_embedder
from .metrics import occm
from .thresholds import SEMANTIC_IMAGE_EMBEDDERS, face_threshold, image_threshold

GuardPolicy = Literal["off", "warn", "retry", "strict"]
POLICIES: tuple[str, ...] = ("off", "warn", "retry", "strict")
Outcome = Literal["pass", "fail", "no_face", "unchecked"]


class GuardError(ContinuityError):
    """A shot failed the continuity guard under the ``strict`` policy."""


@dataclass(frozen=True)
class GuardConfig:
    """How shots are checked. ``thresholds`` overrides per entity name or id (for the story);
    an entity's own ``attributes["guard_threshold"]`` overrides the embedder default."""

    policy: GuardPolicy = "retry"
    max_attempts: int = 3
    thresholds: Mapping[str, float] = field(default_factory=dict)
    frames: int = 3  # frames sampled per shot (first, middle, last)
    scale_step: float = 0.15  # how much a retry raises a failing entity's conditioning scale
    min_occm: float | None = None  # fail a shot whose character count matches worse than this

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise InvalidInputError(f"guard policy {self.policy!r} is unknown; expected one of {', '.join(POLICIES)}")
        if not 1 <= int(self.max_attempts) <= 20:
            raise InvalidInputError(f"max_attempts must be 1 to 20, got {self.max_attempts!r}")

    @property
    def acts(self) -> bool:
        return self.policy != "off"


def default_policy(library: Library) -> GuardPolicy:
    """``retry`` when a face or CLIP embedder can check shots, ``warn`` otherwise."""
    types = {e.type_name for e in library.embedders}
    return "retry" if types & {"dlib", "insightface", "open-clip"} else "warn"


@dataclass(frozen=True)
class EntityCheck:
    entity_id: str
    name: str
    kind: str
    method: Literal["face", "image", "none"]
    score: float | None
    threshold: float | None
    outcome: Outcome

    @property
    def margin(self) -> float:
        """How far above (or below) the threshold; unchecked counts as neutral."""
        if self.score is None or self.threshold is None:
            return 0.0 if self.outcome == "unchecked" else -1.0
        return self.score - self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "name": self.name,
            "kind": self.kind,
            "method": self.method,
            "score": None if self.score is None else round(self.score, 4),
            "threshold": self.threshold,
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class GuardVerdict:
    checks: tuple[EntityCheck, ...]
    faces: int | None  # most faces seen in one sampled frame (None without a face embedder)
    expected: int  # characters the shot asked for
    occm: float | None
    passed: bool

    def failing(self) -> list[EntityCheck]:
        return [c for c in self.checks if c.outcome in ("fail", "no_face")]

    @property
    def rejected_ids(self) -> set[str]:
        return {c.entity_id for c in self.failing()}

    @property
    def margin(self) -> float:
        """The worst entity's margin: how the attempts of a shot are ranked."""
        return min((c.margin for c in self.checks), default=0.0)

    def explain(self) -> str:
        worst = self.failing()
        if not worst:
            return "all checks passed"
        return "; ".join(
            f"{c.name} ({c.kind}) {c.outcome}: {c.method} score "
            f"{'none' if c.score is None else f'{c.score:.3f}'} under threshold {c.threshold}"
            for c in worst
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [c.to_json() for c in self.checks],
            "faces": self.faces,
            "expected_characters": self.expected,
            "occm": None if self.occm is None else round(self.occm, 2),
        }


class ContinuityGuard:
    """Scores shots of one library with its configured embedders."""

    def __init__(self, library: Library, config: GuardConfig | None = None):
        self.library = library
        self.config = config or GuardConfig()
        self.face: Embedder | None = face_embedder(library)
        self.image: Embedder | None = image_embedder(library)
        self._registered: dict[str, dict[str, list[np.ndarray]]] = {}

    def check(self, frames: np.ndarray, result: RetrievalResult) -> GuardVerdict:
        """The verdict on a shot's frames (T x H x W x 3 uint8) for what ``result`` asked."""
        sampled = _sample(np.asarray(frames), self.config.frames)
        faces = [detect_faces(self.face, f) for f in sampled] if self.face is not None else None
        face_vectors = [[np.asarray(e.vector) for e in found if e.vector is not None] for found in faces or []]
        frame_vectors = self._frame_vectors(sampled)
        checks = self._face_checks(result.hits, face_vectors) + [
            self._image_check(hit, frame_vectors) for hit in result.hits if not self._by_face(hit.entity)
        ]
        expected = sum(1 for h in result.hits if h.entity.kind == "character")
        most = max((sum(1 for e in found if e.face_box is not None) for found in faces), default=0) if faces else None
        count = occm(most, expected) if most is not None and expected else None
        passed = not any(c.outcome in ("fail", "no_face") for c in checks) and (
            self.config.min_occm is None or count is None or count >= self.config.min_occm
        )
        order = {h.entity.id: i for i, h in enumerate(result.hits)}
        checks.sort(key=lambda c: order.get(c.entity_id, 0))
        return GuardVerdict(tuple(checks), most, expected, count, passed)

    # --- faces ----------------------------------------------------------------------------------
    def _by_face(self, entity: Entity) -> bool:
        return self.face is not None and entity.kind == "character" and bool(self._vectors(entity, "face"))

    def _face_checks(self, hits: Sequence[Hit], faces: list[list[np.ndarray]]) -> list[EntityCheck]:
        """Per character, its best face score over the sampled frames; within a frame each face is
        given to one character only, best pairs first (a face cannot prove two characters)."""
        people = [h.entity for h in hits if self._by_face(h.entity)]
        best: dict[str, float] = {}
        for frame in faces:
            for eid, score in self._assign(people, frame).items():
                best[eid] = max(score, best.get(eid, -1.0))
        out = []
        for entity in people:
            threshold = self._threshold(entity, "face")
            score = best.get(entity.id)
            outcome: Outcome = "no_face" if score is None else ("pass" if score >= threshold else "fail")
            out.append(EntityCheck(entity.id, entity.name, entity.kind, "face", score, threshold, outcome))
        return out

    def _assign(self, people: Sequence[Entity], faces: list[np.ndarray]) -> dict[str, float]:
        pairs = sorted(
            (
                (max(float(np.dot(f, r)) for r in self._vectors(e, "face")), e.id, i)
                for e in people
                for i, f in enumerate(faces)
            ),
            reverse=True,
        )
        taken: dict[str, float] = {}
        used: set[int] = set()
        for score, eid, face in pairs:
            if eid not in taken and face not in used:
                taken[eid] = score
                used.add(face)
        return taken

    # --- images ---------------------------------------------------------------------------------
    def _frame_vectors(self, frames: list[np.ndarray]) -> np.ndarray | None:
        if self.image is None or not frames:
            return None
        from PIL import Image

        return np.asarray(self.image.embed_images([Image.fromarray(f) for f in frames]), dtype=np.float32)

    def _image_check(self, hit: Hit, frames: np.ndarray | None) -> EntityCheck:
        entity = hit.entity
        refs = self._vectors(entity, "image")
        semantic = self.image is not None and self.image.type_name in SEMANTIC_IMAGE_EMBEDDERS
        if frames is None or not refs or not semantic:
            return EntityCheck(entity.id, entity.name, entity.kind, "none", None, None, "unchecked")
        threshold = self._threshold(entity, "image")
        score = float(max(np.nanmax(frames @ r) for r in refs))
        outcome: Outcome = "pass" if score >= threshold else "fail"
        return EntityCheck(entity.id, entity.name, entity.kind, "image", score, threshold, outcome)

    # --- references and thresholds --------------------------------------------------------------
    def _vectors(self, entity: Entity, modality: str) -> list[np.ndarray]:
        """The entity's registered (never harvested) reference vectors of one modality, read once."""
        if entity.id not in self._registered:
            refs = self.library.references(entity, source="registered")
            found: dict[str, list[np.ndarray]] = {"face": [], "image": []}
            for ref in refs:
                if self.face is not None and self.face.column_name in ref.vectors:
                    found["face"].append(ref.vectors[self.face.column_name])
                if self.image is not None and self.image.column_name in ref.vectors:
                    found["image"].append(ref.vectors[self.image.column_name])
            self._registered[entity.id] = found
        return self._registered[entity.id][modality]

    def _threshold(self, entity: Entity, modality: str) -> float:
        for key in (entity.name, entity.id):
            if key in self.config.thresholds:
                return float(self.config.thresholds[key])
        own = entity.attributes.get("guard_threshold")
        if isinstance(own, (int, float)) and not isinstance(own, bool):
            return float(own)
        if modality == "face":
            assert self.face is not None
            return face_threshold(self.face)
        assert self.image is not None
        return image_threshold(self.image)


def _sample(frames: np.ndarray, count: int) -> list[np.ndarray]:
    """First, middle and last (or ``count`` evenly spaced) frames."""
    if frames.ndim != 4 or len(frames) == 0:
        raise InvalidInputError(f"frames must be T x H x W x 3, got shape {tuple(frames.shape)}")
    picks = sorted({int(round(i)) for i in np.linspace(0, len(frames) - 1, max(1, min(count, len(frames))))})
    return [np.ascontiguousarray(frames[i]) for i in picks]
