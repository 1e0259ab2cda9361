"""Checks of a whole story against a library before anything renders: every name a shot or scene
uses must be an entity (or a cast member the run registers), with a did-you-mean for typos; a cast
member the library lacks needs images to be registered from, and those images must exist; the
generator's weights must be where ``--model``/``--adapter`` say; no shot may retrieve an entity whose
consent or rights refuse it. :func:`preflight` collects every problem, one line each, so a story
fails before its first shot renders, with the whole list at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memstore.errors import ContinuityError
from memstore.library import Library
from memstore.validation import name_key

from .story import Shot, StoryScript
from .suggest import did_you_mean

if TYPE_CHECKING:  # planning loads the retriever; the name checks need none of it
    from .plan import StoryPlan
    from .session import SessionConfig


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
        uses += keyed_names(shot)
        for what, name in uses:
            if name is not None and name_key(name) not in known:
                problems.append(
                    f"shot {index} (scene {scene.index}, shot {shot.index}): {what} {name!r} is not in library"
                    f" {library.name!r} nor the script's cast{did_you_mean(name, spelled)}"
                )
    return problems


def keyed_names(shot: Shot) -> list[tuple[str, str]]:
    """The entity names a shot keys its per-entity settings by (eras, regions, scales)."""
    eras = shot.era if isinstance(shot.era, dict) else {}
    scales = shot.options.scales if shot.options else {}
    return [
        *(("era for", n) for n in eras),
        *(("region for", n) for n in shot.regions or {}),
        *(("scale for", n) for n in scales),
    ]


def cast_image_problems(story: StoryScript, library: Library) -> list[str]:
    """Cast members the run would register (or look up by ``ref``) that it cannot: a ``ref`` naming
    no entity, an image path that is not a file."""
    from pathlib import Path

    base = Path(story.base_dir) if story.base_dir else Path(".")
    problems = []
    for member in story.cast:
        if member.ref is not None:
            if library.find(member.ref) is None:
                problems.append(
                    f"cast member {member.name!r} refers to {member.ref!r}, which is not in library"
                    f" {library.name!r}{did_you_mean(member.ref, [n for e in library.list() for n in e.names])}"
                )
            continue
        if library.find(member.name) is not None:
            continue  # already registered: its images are not read
        for path in member.image_paths(base):
            if not path.is_file():
                problems.append(
                    f"cast member {member.name!r}: image {str(path)!r} does not exist; fix the path in the"
                    " script (relative to the script's folder)"
                )
    return problems


def named_consent_problems(story: StoryScript, library: Library, config: SessionConfig) -> list[str]:
    """Entities the script names (cast, locations, per-shot settings) whose consent or rights
    refuse them, one line each with the first shot that uses them. Cheap (no retrieval), so a run
    checks it before its first shot; entities only retrieval would find are checked per shot,
    and all of them by ``story plan``."""
    from .consent import ConsentError, check_rights

    first_use: dict[str, str] = {}
    for member in story.cast:
        first_use.setdefault(name_key(member.ref or member.name), "the script's cast")
    for index, scene, shot in story.iter_shots():
        where = f"shot {index} (scene {scene.index}, shot {shot.index})"
        names = [shot.location or scene.location, *(shot.cast or ()), *(n for _, n in keyed_names(shot))]
        for name in names:
            if name is not None:
                first_use.setdefault(name_key(name), where)
    problems = []
    for key, where in first_use.items():
        entity = library.find(key)
        if entity is None:
            continue  # unknown names are name_problems'; cast members to register have no rights yet
        try:
            check_rights([entity], overrides=set(config.consent_overrides), require_consent=config.require_consent)
        except ConsentError as err:
            problems.append(f"{where}: {err}")
    return problems


def weight_problems(config: SessionConfig) -> list[str]:
    """The generator's name, options and weights as :func:`check_generator` checks them (no load)."""
    from .generator_setup import check_generator

    try:
        check_generator(config.generator, model=config.model, adapter=config.adapter, options=config.generator_options)
    except ContinuityError as err:
        return [str(err)]
    return []


def preflight(
    story: StoryScript, library: Library, config: SessionConfig, *, plan: StoryPlan | None = None
) -> list[str]:
    """Every problem that would stop ``story`` before or during its run, one line each (empty: go).

    ``plan`` is the story's :func:`continuity.plan.plan_story` when the caller has one (its refused
    uses are the consent problems); without it the story is planned here, committing nothing."""
    problems = name_problems(story, library) + cast_image_problems(story, library) + weight_problems(config)
    if plan is None:
        from .plan import plan_story

        plan = plan_story(story, library, config)
    return problems + [use.problem() for use in plan.refused]
