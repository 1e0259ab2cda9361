"""A StorySession positioned at one shot, for the nodes that know a story.

Shots are numbered from 1 in the nodes, as in the command line (``--shot``) and on the animatic's
frames ("SHOT 3"); 0 means "the next shot" (after the story's last finished one). The session is
built for one node call: its story context and hash chain are replayed from the shot log of the
shots *before* the asked one, so re-running a graph for shot 3 is a retake of shot 3 (its earlier
take is replaced on commit) and never sees shot 3's own old take or the shots after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from continuity.session import SessionConfig, StorySession

    from .handles import LibraryHandle


def names_list(text: str) -> tuple[str, ...]:
    """A comma- or newline-separated list from a text widget ("Aria, the knight")."""
    return tuple(p.strip() for p in text.replace("\n", ",").split(",") if p.strip())


def shot_index(handle: LibraryHandle, story: str, shot: int) -> int:
    """The 0-based index of shot number ``shot`` (1-based; 0 = the next shot of ``story``)."""
    from memstore.errors import InvalidInputError

    if not isinstance(shot, int) or isinstance(shot, bool) or shot < 0:
        raise InvalidInputError(f"shot must be 0 (the next shot) or a shot number from 1, got {shot!r}")
    if shot > 0:
        return shot - 1
    records = handle.library.shots.records(story)
    return records[-1].shot_index + 1 if records else 0


def session_at(handle: LibraryHandle, story: str, index: int, config: SessionConfig) -> StorySession:
    """A session whose next shot is ``index``, with the context of the shots before it only."""
    from continuity.session import StorySession

    session = StorySession(handle.library, story, config, retriever=handle.retriever, resume=False)
    earlier = [r for r in session.shots() if r.shot_index < index]
    # StorySession replays its whole log on open; "up to shot k, keeping the later shots" has no
    # public verb yet (reset(k) drops them), so the pack replays the earlier records itself.
    session._replay(earlier)
    session.next_index = index
    return session


def session_config(
    *,
    width: int = 640,
    height: int = 360,
    fps: int = 12,
    seed: int = 0,
    memory_policy: str = "relevant",
    memory_budget: int = 10,
    overrides: Sequence[str] = (),
) -> SessionConfig:
    from continuity.session import SessionConfig

    return SessionConfig(
        width=width,
        height=height,
        fps=fps,
        seed=seed,
        memory_policy=memory_policy,
        memory_budget=memory_budget,
        consent_overrides=tuple(overrides),
    )


def check_story(story: str) -> str:
    from memstore.validation import clean_text

    if not isinstance(story, str) or not story.strip():
        from memstore.errors import InvalidInputError

        raise InvalidInputError("story is empty; give the story id (the same in every node of one story)")
    return clean_text(story.strip(), "story id")
