"""Episodic memory: which earlier keyframes of a story condition the next shot.

Keyframes are written back to the store as harvested references (story, shot, frame), one row per
entity seen in the frame; here rows of the same frame are grouped back into one memory frame.
Two policies share one budget:

- ``sink_recent``: StoryMem's rule (arXiv 2512.19539, sec. 3): the first keyframes ("sinks",
  3 by default) plus the most recent ones, at most 10 in all. It knows nothing of who is in a shot.
- ``relevant``: first cover every entity the retriever predicts for this shot with its best
  keyframe (frames showing several uncovered entities first), then the shot's location, then
  fill by recency. A character absent for 50 shots still comes back with their last good frame,
  which ``sink_recent`` drops once the window has moved on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memstore.schema import Reference

POLICIES = ("sink_recent", "relevant", "none")


@dataclass(frozen=True)
class MemoryFrame:
    """One keyframe of an earlier shot, with every entity it was attributed to."""

    story: str | None
    shot: int
    frame: int
    references: tuple[Reference, ...]

    @property
    def key(self) -> tuple[int, int]:
        return (self.shot, self.frame)

    @property
    def entity_ids(self) -> frozenset[str]:
        return frozenset(r.entity_id for r in self.references)

    @property
    def quality(self) -> float:
        values = [r.quality for r in self.references if r.quality is not None]
        return max(values) if values else 0.0

    @property
    def reference(self) -> Reference:
        """The row whose image stands for the frame (all rows of a frame share the image)."""
        return self.references[0]


def group_frames(references: Iterable[Reference]) -> list[MemoryFrame]:
    """Group harvested references by (story, shot, frame), in story order."""
    groups: dict[tuple, list[Reference]] = {}
    for ref in references:
        if ref.source != "harvested" or ref.shot is None:
            continue
        groups.setdefault((ref.story, ref.shot, ref.frame or 0), []).append(ref)
    frames = [MemoryFrame(story, shot, frame, tuple(refs)) for (story, shot, frame), refs in groups.items()]
    frames.sort(key=lambda f: f.key)
    return frames


Selection = list[tuple[MemoryFrame, str]]  # (frame, why it was chosen), in story order


def select_sink_recent(frames: Sequence[MemoryFrame], budget: int = 10, sinks: int = 3) -> Selection:
    """StoryMem's window: the first ``sinks`` keyframes plus the most recent, ``budget`` in all."""
    frames = sorted(frames, key=lambda f: f.key)
    if budget <= 0 or not frames:
        return []
    if len(frames) <= budget:
        return [(f, "sink (first keyframes)" if i < sinks else "within budget") for i, f in enumerate(frames)]
    sinks = min(sinks, budget)
    head = frames[:sinks]
    tail = frames[len(frames) - (budget - sinks) :] if budget > sinks else []
    return [(f, "sink (first keyframes)") for f in head] + [(f, "recent") for f in tail]


def select_relevant(
    frames: Sequence[MemoryFrame],
    entity_ids: Sequence[str],
    *,
    location_id: str | None = None,
    names: dict[str, str] | None = None,
    budget: int = 10,
) -> Selection:
    """Cover the predicted entities first, then the location, then recency (see module docstring)."""
    if budget <= 0 or not frames:
        return []
    names = names or {}
    chosen: dict[tuple[int, int], tuple[MemoryFrame, str]] = {}
    uncovered = [e for e in dict.fromkeys(entity_ids) if e != location_id]

    def best_for(entity: str) -> MemoryFrame | None:
        candidates = [f for f in frames if entity in f.entity_ids and f.key not in chosen]
        if not candidates:
            return None
        # most still-uncovered entities in one frame, then quality, then the latest
        return max(candidates, key=lambda f: (len(f.entity_ids & set(uncovered)), round(f.quality, 3), f.key))

    for entity in list(uncovered):
        if len(chosen) >= budget:
            break
        if entity not in uncovered:
            continue
        frame = best_for(entity)
        if frame is None:
            continue
        covered = [e for e in uncovered if e in frame.entity_ids]
        label = ", ".join(names.get(e, e[:8]) for e in covered)
        chosen[frame.key] = (frame, f"covers {label}")
        uncovered = [e for e in uncovered if e not in frame.entity_ids]
    location_shown = any(location_id in f.entity_ids for f, _ in chosen.values())
    if location_id is not None and len(chosen) < budget and not location_shown:
        frame = best_for(location_id)
        if frame is not None:
            chosen[frame.key] = (frame, f"location {names.get(location_id, location_id[:8])}")
    for frame in sorted(frames, key=lambda f: f.key, reverse=True):
        if len(chosen) >= budget:
            break
        if frame.key not in chosen:
            chosen[frame.key] = (frame, "recent")
    return sorted(chosen.values(), key=lambda item: item[0].key)


def select_memory(
    policy: str,
    frames: Sequence[MemoryFrame],
    *,
    entity_ids: Sequence[str] = (),
    location_id: str | None = None,
    names: dict[str, str] | None = None,
    budget: int = 10,
) -> Selection:
    if policy == "sink_recent":
        return select_sink_recent(frames, budget)
    if policy == "relevant":
        return select_relevant(frames, entity_ids, location_id=location_id, names=names, budget=budget)
    if policy == "none":
        return []
    from memstore.errors import InvalidInputError

    raise InvalidInputError(f"memory policy {policy!r} is unknown; expected one of {', '.join(POLICIES)}")
