"""Checks of a whole story against a library before anything renders: every name a shot or scene
uses must be an entity (or a cast member the run registers), with a did-you-mean for typos; a cast
member the library lacks needs images to be registered from."""

from __future__ import annotations

from memstore.library import Library
from memstore.validation import name_key

from .story import StoryScript
from .suggest import did_you_mean


def name_problems(story: StoryScript, library: Library) -> list[str]:
    """Every unknown name in the story, one line each (empty when all resolve)."""
    entities = library.list()
    known = {name_key(n) for e in entities for n in e.names}
    spelled = [n for e in entities for n in e.names]
    problems = []
    for member in story.cast:
        if member.ref is None and name_key(member.name) not in known and not member.images:
            problems.append(
                f"cast member {member.name!r} is not in library {library.name!r} and the script gives no images:"
                f" register it (continuity register {member.name!r} --kind {member.kind}) or add its images"
                f"{did_you_mean(member.name, spelled)}"
            )
        known.add(name_key(member.name))
        spelled.append(member.name)
    for index, scene, shot in story.iter_shots():
        uses = [("location", shot.location or scene.location)] + [("cast", n) for n in shot.cast or ()]
        for what, name in uses:
            if name is not None and name_key(name) not in known:
                problems.append(
                    f"shot {index} (scene {scene.index}, shot {shot.index}): {what} {name!r} is not in library"
                    f" {library.name!r} nor the script's cast{did_you_mean(name, spelled)}"
                )
    return problems
