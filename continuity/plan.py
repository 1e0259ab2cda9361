"""The whole story planned before anything renders: what ``continuity story plan`` (and ``story run
--dry-run``) prints.

Each shot is planned by a :class:`~continuity.session.StorySession` exactly as a run would plan it
(retrieval with reasons, memory, input hash; the session advances between shots so the story
context carries), but nothing is committed: no keyframe, MP4 or shot record is written, so a dry
run's memory sees only keyframes already in the store. Refused consent or expired rights do not
stop the plan: every refused use is collected (shot and entity) for the pre-flight to report all
at once, where a run would stop at the first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from memstore.errors import ConsentError
from memstore.library import Library

from .consent import check_rights, rights_problem
from .session import SessionConfig, ShotPlan, StorySession
from .story import StoryScript


@dataclass(frozen=True)
class RefusedUse:
    """An entity a shot would retrieve whose consent or rights refuse it (and no override names it)."""

    index: int  # global, 0-based
    scene: int
    shot: int  # within its scene, 1-based
    entity_id: str
    name: str
    reason: str

    def problem(self) -> str:
        return (
            f"shot {self.index} (scene {self.scene}, shot {self.shot}): {self.name!r} (id {self.entity_id}) is"
            f" refused: {self.reason}; fix its rights (continuity consent ...) or pass --override-consent"
            f" {self.name!r}"
        )


@dataclass
class StoryPlan:
    """Every shot's plan in story order, the refused uses, and which shots a run would resume."""

    story: StoryScript
    shots: list[ShotPlan]
    refused: list[RefusedUse] = field(default_factory=list)
    recorded: dict[int, str] = field(default_factory=dict)  # shot index -> input hash of its record

    def would_resume(self, plan: ShotPlan) -> bool:
        """A run would find this shot made with the same inputs (if its files are still in --out)."""
        return self.recorded.get(plan.index) == plan.input_hash

    def to_json(self) -> dict[str, Any]:
        return {
            "story": self.story.id,
            "title": self.story.title,
            "shots": [shot_json(p, resume=self.would_resume(p)) for p in self.shots],
            "refused": [dataclasses.asdict(r) for r in self.refused],
        }


def shot_json(plan: ShotPlan, *, resume: bool = False) -> dict[str, Any]:
    """One shot's plan as JSON: the retrieval (hits with reasons and references), its memory, hash."""
    return {
        "index": plan.index,
        "scene": plan.scene_index,
        "shot": plan.shot.index,
        "prompt": plan.shot.prompt,
        "cut": plan.shot.cut,
        "location": plan.location,
        "seed": plan.seed,
        "input_hash": plan.input_hash,
        "would_resume": resume,
        "hits": [h.to_json() for h in plan.result.hits],
        "memory": [
            {"reference": f.reference.id, "story": f.story, "shot": f.shot, "frame": f.frame, "reason": why}
            for f, why in plan.memory
        ],
        "consent_overrides": [o.to_json() for o in plan.overrides],
        "notes": list(plan.result.notes),
    }


def _refused_ids(library: Library, config: SessionConfig) -> set[str]:
    """Entities the session's consent gate would refuse (checked per shot later, against its hits)."""
    return {e.id for e in library.list() if rights_problem(e, require_consent=config.require_consent) is not None}


def plan_story(
    story: StoryScript,
    library: Library,
    config: SessionConfig | None = None,
    *,
    retriever: Any = None,
    stop_after: int | None = None,
) -> StoryPlan:
    """Plan every shot (the first ``stop_after`` with a limit) without committing anything."""
    config = config or SessionConfig()
    refused_ids = _refused_ids(library, config)
    # Let the gate pass every refused entity so that the plan goes on and each refused use is listed;
    # they are told apart from the user's own overrides below and reported as problems.
    permissive = dataclasses.replace(config, consent_overrides=(*config.consent_overrides, *sorted(refused_ids)))
    session = StorySession(library, story.id, permissive, retriever=retriever, resume=False)
    plans: list[ShotPlan] = []
    refused: list[RefusedUse] = []
    for index, scene, shot in story.iter_shots():
        if stop_after is not None and index >= stop_after:
            break
        plan = session.plan_shot(
            shot, index=index, scene_index=scene.index, location=shot.location or scene.location, check_names=False
        )
        uses = _refused_uses(plan, config, refused_ids)
        if uses:  # reported as problems, not as overrides the user chose
            blocked = {u.entity_id for u in uses}
            plan.overrides = [o for o in plan.overrides if o.entity_id not in blocked]
            refused += uses
        plans.append(plan)
        session.advance(plan)  # context and hash chain carry to the next shot, as in a run
    return StoryPlan(story, plans, refused, dict(library.shots.hashes(story.id)))


def _refused_uses(plan: ShotPlan, config: SessionConfig, refused_ids: set[str]) -> list[RefusedUse]:
    """The overrides the permissive gate used for this shot, minus those the user gave."""
    ours = [o for o in plan.overrides if o.entity_id in refused_ids]
    if not ours:
        return []
    granted = _user_granted(plan, config)
    return [
        RefusedUse(plan.index, plan.scene_index, plan.shot.index, o.entity_id, o.name, o.reason)
        for o in ours
        if o.entity_id not in granted
    ]


def _user_granted(plan: ShotPlan, config: SessionConfig) -> set[str]:
    """Ids of this shot's entities that the user's own overrides let through (by id, name or alias)."""
    hits = [h.entity for h in plan.result.hits]
    try:
        used = check_rights(hits, overrides=config.consent_overrides, require_consent=config.require_consent)
    except ConsentError as err:
        refused = {eid for eid, _, _ in getattr(err, "refused", [])}
        return {h.id for h in hits} - refused
    return {o.entity_id for o in used}


__all__ = ["RefusedUse", "StoryPlan", "plan_story", "shot_json"]
