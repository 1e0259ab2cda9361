"""The retrieval contract: what a shot asks for and what it gets back, with reasons.

Frozen dataclasses so results can be cached, compared and logged; ``to_json`` gives the shape the
command line and the HTTP API print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memstore.schema import Entity, Reference


@dataclass(frozen=True)
class ShotQuery:
    """One shot's request for blueprints.

    ``cast`` and ``location`` are explicit entity names (an explicit cast overrides inference);
    ``cut`` False means the shot continues the previous one (same place, same people on screen).
    ``era`` picks the version of every entity ("armored", "season 2"); ``eras`` per entity name.
    ``sources`` orders (and limits) the references offered: registered before harvested keyframes
    unless asked otherwise.
    ``view`` asks for references of that view (front, profile, back...); without it the prompt's
    camera words ("from behind", "close-up") choose, and unlabelled references remain the fallback.
    ``scene`` is the shot's scene number in its script (shots of one scene share a place unless the
    prompt moves; a cut inside a scene is not a change of place); ``first_frame_prompt`` the
    script's description of the shot's first frame, read beside the prompt (ST-Bench has one).
    """

    prompt: str
    story_id: str | None = None
    shot_index: int | None = None
    cut: bool = True
    cast: tuple[str, ...] | None = None
    location: str | None = None
    kinds: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()
    era: str | None = None
    eras: tuple[tuple[str, str], ...] = ()
    k: int = 8
    references_per_entity: int = 2
    require_consent: bool = False
    sources: tuple[str, ...] = ("registered", "harvested")
    scene: int | None = None
    first_frame_prompt: str | None = None
    view: str | None = None  # the view references should show (validation.VIEWS); else from camera words


@dataclass(frozen=True)
class Hit:
    """One retrieved entity: why it was chosen and which of its references to condition on."""

    entity: Entity
    score: float
    reasons: tuple[str, ...]
    references: tuple[Reference, ...] = ()
    signals: tuple[tuple[str, float], ...] = ()

    @property
    def name(self) -> str:
        return self.entity.name

    @property
    def kind(self) -> str:
        return self.entity.kind

    def to_json(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity.id,
            "name": self.entity.name,
            "kind": self.entity.kind,
            "score": round(float(self.score), 6),
            "reasons": list(self.reasons),
            "signals": {k: round(float(v), 6) for k, v in self.signals},
            "references": [r.to_json() for r in self.references],
        }


@dataclass(frozen=True)
class RetrievalResult:
    """Hits ranked best first, plus the episodic memory keyframes chosen for the shot."""

    query: ShotQuery
    hits: tuple[Hit, ...] = ()
    memory: tuple[Reference, ...] = ()
    memory_reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def of_kind(self, kind: str) -> list[Hit]:
        return [h for h in self.hits if h.entity.kind == kind]

    @property
    def characters(self) -> list[Hit]:
        return self.of_kind("character")

    @property
    def location(self) -> Hit | None:
        locations = self.of_kind("location")
        return locations[0] if locations else None

    def names(self) -> list[str]:
        return [h.entity.name for h in self.hits]

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.query.prompt,
            "story_id": self.query.story_id,
            "shot_index": self.query.shot_index,
            "hits": [h.to_json() for h in self.hits],
            "memory": [
                {**r.to_json(), "reason": why}
                # reasons may be missing (or fewer) for memory set by hand: pair what there is
                for r, why in zip(self.memory, self.memory_reasons or ("",) * len(self.memory), strict=False)
            ],
            "notes": list(self.notes),
        }
