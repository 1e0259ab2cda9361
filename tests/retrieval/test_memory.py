"""Memory policies: StoryMem's sink+recent window and the entity-covering `relevant` policy."""

from __future__ import annotations

import pytest

from memstore.errors import InvalidInputError
from memstore.schema import Reference
from retrieval.memory import group_frames, select_memory, select_relevant, select_sink_recent


def ref(entity: str, shot: int, frame: int = 0, quality: float | None = None, source: str = "harvested") -> Reference:
    return Reference(
        entity_id=entity,
        kind="character",
        source=source,
        width=1,
        height=1,
        sha256=f"{shot}-{frame}",
        story="s",
        shot=shot,
        frame=frame,
        quality=quality,
    )


def frames_for(plan: dict[int, list[str]]):
    return group_frames([ref(e, shot) for shot, ents in plan.items() for e in ents])


def test_group_frames_merges_rows_of_one_frame_and_skips_registered():
    frames = group_frames([ref("a", 1), ref("b", 1), ref("a", 2), ref("a", 0, source="registered")])
    assert [f.key for f in frames] == [(1, 0), (2, 0)]
    assert frames[0].entity_ids == {"a", "b"}


def test_sink_recent_keeps_first_three_and_latest():
    frames = frames_for({i: ["a"] for i in range(20)})
    chosen = [f.shot for f, _ in select_sink_recent(frames, budget=10)]
    assert chosen == [0, 1, 2] + list(range(13, 20))
    assert len(select_sink_recent(frames[:5], budget=10)) == 5
    assert select_sink_recent(frames, budget=0) == []


def test_relevant_brings_back_a_long_absent_character():
    plan = {i: ["a"] for i in range(30)}
    plan[4] = ["b"]  # b seen once, long ago
    frames = frames_for(plan)
    window = {f.shot for f, _ in select_sink_recent(frames, budget=6)}
    assert 4 not in window  # StoryMem's window has lost b
    chosen = select_relevant(frames, ["b", "a"], budget=6, names={"b": "Bram"})
    shots = [f.shot for f, _ in chosen]
    assert 4 in shots and len(shots) == 6 and shots == sorted(shots)
    assert any("Bram" in why for _, why in chosen)


def test_relevant_prefers_frames_covering_several_entities_and_quality():
    frames = group_frames(
        [
            ref("a", 1, quality=0.9),
            ref("b", 2, quality=0.9),
            ref("a", 3, quality=0.2),
            ref("b", 3, quality=0.2),
            ref("c", 4),
        ]
    )
    chosen = select_relevant(frames, ["a", "b"], budget=1)
    assert [f.shot for f, _ in chosen] == [3]


def test_relevant_adds_location_then_recency():
    frames = group_frames([ref("loc", 1), ref("a", 2), ref("x", 3), ref("y", 4)])
    chosen = select_relevant(frames, ["a"], location_id="loc", budget=3)
    assert [f.shot for f, _ in chosen] == [1, 2, 4]
    reasons = dict((f.shot, why) for f, why in chosen)
    assert reasons[1].startswith("location") and reasons[4] == "recent"


def test_unknown_policy():
    with pytest.raises(InvalidInputError):
        select_memory("everything", [])
