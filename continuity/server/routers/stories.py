"""Story sessions over HTTP: plan a shot, render it anywhere, commit its frames or MP4, read the
story's shots and provenance, reset it from a shot. The HTTP face of :class:`continuity.session.StorySession`.

A plan is kept by the server until its shot is committed (see :mod:`..stories`); the commit
stores the shot exactly as planned, writes its MP4, keyframe JPEGs and provenance under the app's
outputs folder, and its keyframes become the memory of later shots."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, UploadFile
from pydantic import BaseModel, ConfigDict, Field, field_validator

from memstore.errors import NotFoundError
from memstore.library import Library
from memstore.schema import ShotRecord
from memstore.validation import MAX_PROMPT_CHARS

from ...story import MAX_FRAMES, ShotOptions
from ..frames import uploaded_frames
from ..shapes import add_image_urls, reference_json
from ..state import AppState, ExistingLibraryDep, StateDep, UploadLimitDep
from ..stories import StoryConflictError, StoryHandle, clean_story_id
from .query import MAX_QUERY_LIST

router = APIRouter(tags=["stories"])
StoryPath = Annotated[str, Path(description="The story id (any text without '/').")]
ShotIndex = Annotated[int, Path(ge=0, lt=2**31, description="The shot's 0-based index in the story.")]
MAX_SHOT_SECONDS = 600.0


def _valid_unicode(value: str | list[str] | None) -> str | list[str] | None:
    # JSON can carry lone surrogates ("\ud800"); no table or index can hold them.
    for text in value if isinstance(value, list) else [value]:
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("contains a lone surrogate (invalid Unicode); send valid text") from None
    return value


class PlanBody(BaseModel):
    """The next shot of a story, as a script entry would give it."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS)
    cut: bool = Field(True, description="False: the shot continues the previous one (pronouns resolve to it).")
    cast: list[str] | None = Field(None, max_length=MAX_QUERY_LIST)
    location: str | None = None
    seed: int | None = Field(None, ge=0, lt=2**32)
    duration: float = Field(2.0, gt=0, le=MAX_SHOT_SECONDS)
    scene: int = Field(1, ge=1, lt=2**31)
    first_frame_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    era: str | dict[str, str] | None = Field(None, description="One era for every entity, or entity name -> era.")
    regions: dict[str, tuple[float, float, float, float]] | None = Field(
        None, description="Entity name -> [x0, y0, x1, y1] in 0..1: where it stands in the frame."
    )
    frames: int | None = Field(None, ge=1, le=MAX_FRAMES, description="Frame count; overrides duration x fps.")
    options: ShotOptions | None = Field(None, description="Per-shot steps, guidance and entity scales.")

    _text = field_validator("prompt", "cast", "location", "first_frame_prompt", "negative_prompt")(
        classmethod(lambda cls, v: _valid_unicode(v))
    )


class ResetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_index: int = Field(0, ge=0, lt=2**31, description="Shots from this index on are forgotten.")


def _story(state: AppState, library: Library, story: str) -> tuple[str, StoryHandle]:
    story_id = clean_story_id(story)
    retriever, _ = state.retriever(library)
    return story_id, state.stories.open(library, story_id, retriever)


def _record_json(record: ShotRecord, library: str) -> dict[str, Any]:
    data = record.model_dump(mode="json", exclude={"provenance", "output"})
    data["has_video"] = record.output is not None
    data["provenance_url"] = f"/libraries/{library}/stories/{record.story_id}/shots/{record.shot_index}/provenance"
    return data


def plan_json(plan: Any, library: str, story_id: str) -> dict[str, Any]:
    """A plan as a remote pipeline needs it: what to render with (hits with reasons, references
    and memory keyframes with their image URLs), its size and seed, and where to commit it."""
    data = plan.result.to_json()
    for hit in data["hits"]:
        add_image_urls(hit["references"], library)
    add_image_urls(data["memory"], library)
    spec = plan.spec
    return {
        "story_id": story_id,
        "index": plan.index,
        "scene": plan.scene_index,
        "input_hash": plan.input_hash,
        "seed": plan.seed,
        "cut": plan.shot.cut,
        "location": plan.location,
        "num_frames": spec.num_frames,
        "width": spec.width,
        "height": spec.height,
        "fps": spec.fps,
        "consent_overrides": [o.entity_id for o in plan.overrides],
        **data,
        "commit_url": f"/libraries/{library}/stories/{story_id}/shots/{plan.index}",
    }


@router.get("/libraries/{lib:path}/stories")
def list_stories(library: ExistingLibraryDep) -> dict[str, Any]:
    """The library's stories with their finished shots."""
    stories = []
    for story_id in library.shots.stories():
        indexes = library.shots.hashes(story_id)
        stories.append({"story_id": story_id, "shots": len(indexes), "next_index": max(indexes, default=-1) + 1})
    return {"library": library.name, "stories": stories}


@router.post("/libraries/{lib:path}/stories/{story}/plan")
def plan_shot(state: StateDep, library: ExistingLibraryDep, story: StoryPath, body: PlanBody) -> dict[str, Any]:
    """Plan the story's next shot: retrieval with reasons, consent, memory keyframes, input hash.
    The plan is kept until the shot is committed to its ``commit_url`` (planning again replaces it)."""
    story_id, handle = _story(state, library, story)
    with handle.lock:
        with state.query_lock(library.name):  # the retriever's hot index syncs in place
            plan = handle.session.plan(
                body.prompt,
                cut=body.cut,
                cast=body.cast,
                location=body.location,
                seed=body.seed,
                duration=body.duration,
                scene_index=body.scene,
                first_frame_prompt=body.first_frame_prompt,
                negative_prompt=body.negative_prompt,
                era=body.era,
                regions=body.regions,
                frames=body.frames,
                options=body.options,
            )
        state.stories.keep_plan(plan, library.name, story_id)
    return plan_json(plan, library.name, story_id)


@router.post("/libraries/{lib:path}/stories/{story}/shots/{index}", status_code=201)
def commit_shot(
    state: StateDep,
    library: ExistingLibraryDep,
    upload_limit: UploadLimitDep,
    story: StoryPath,
    index: ShotIndex,
    video: Annotated[UploadFile | None, File(description="The rendered shot as one MP4.")] = None,
    frames: Annotated[list[UploadFile] | None, File(description="Or its frames as PNG/JPEG, in order.")] = None,
    fps: Annotated[float | None, Form(gt=0, le=240, description="Frame rate of still frames.")] = None,
    model_id: Annotated[str | None, Form(max_length=256, description="What rendered it.")] = None,
) -> dict[str, Any]:
    """Commit a planned shot's frames: keyframes written back as memory, MP4 and provenance
    written, the shot recorded. 409 without a pending plan for ``index``; a bad upload writes nothing."""
    story_id, handle = _story(state, library, story)
    plan = state.stories.pending_plan(library.name, story_id, index)
    array, video_fps = uploaded_frames(video, frames, upload_limit)  # every check before any write
    with handle.lock:
        session = handle.session
        if session.next_index != plan.index:
            state.stories.forget_plans(library.name, story_id)
            raise StoryConflictError(
                f"shot {index} was planned before story {story_id!r} moved on (its next shot is"
                f" {session.next_index}); plan that shot again"
            )
        done = session.commit(plan, array, fps=video_fps or fps, model_id=model_id or None)
        state.stories.forget_plans(library.name, story_id)
    return {
        "index": done.index,
        "input_hash": done.input_hash,
        "next_index": done.index + 1,
        "frames": int(array.shape[0]),
        "keyframes": [reference_json(k, library.name) for k in done.keyframes],
        "record": _record_json(done.record, library.name),
    }


@router.get("/libraries/{lib:path}/stories/{story}/shots")
def list_shots(library: ExistingLibraryDep, story: StoryPath) -> dict[str, Any]:
    """The story's finished shots, in order."""
    story_id = clean_story_id(story)
    records = library.shots.records(story_id)
    return {"story_id": story_id, "shots": [_record_json(r, library.name) for r in records]}


@router.get("/libraries/{lib:path}/stories/{story}/shots/{index}/provenance")
def shot_provenance(state: StateDep, library: ExistingLibraryDep, story: StoryPath, index: ShotIndex) -> dict[str, Any]:
    """The provenance manifest recorded for a finished shot."""
    story_id, handle = _story(state, library, story)
    if library.shots.get(story_id, index) is None:
        raise NotFoundError(
            f"story {story_id!r} has no finished shot {index}; see GET /libraries/{library.name}/stories/{story_id}/shots"
        )
    return handle.session.provenance(index)


@router.post("/libraries/{lib:path}/stories/{story}/reset")
def reset_story(state: StateDep, library: ExistingLibraryDep, story: StoryPath, body: ResetBody) -> dict[str, Any]:
    """Forget shots ``from_index`` on (records, keyframes, pending plans): they are planned anew."""
    story_id, handle = _story(state, library, story)
    with handle.lock:
        dropped = handle.session.reset(body.from_index)
        state.stories.forget_plans(library.name, story_id)
        return {"story_id": story_id, "dropped": dropped, "next_index": handle.session.next_index}


# Last: "{lib:path}/stories/{story}" would otherwise also match a story named "stories"'s shots.
@router.get("/libraries/{lib:path}/stories/{story}")
def get_story(state: StateDep, library: ExistingLibraryDep, story: StoryPath) -> dict[str, Any]:
    """Where the story stands: the next shot to plan and how many are finished."""
    story_id, handle = _story(state, library, story)
    with handle.lock:
        return {"story_id": story_id, "next_index": handle.session.next_index, "shots": len(handle.session.shots())}
