"""Story runs as the web app shows them: the runs a library's store holds, one run's view (the
same rendering as ``report.html``), and each shot's MP4 and poster frame."""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse, HTMLResponse, Response

from memstore.errors import NotFoundError
from retrieval.memory import POLICIES, group_frames, select_memory

from ..shapes import reference_json
from ..state import ExistingLibraryDep
from ..stories import clean_story_id
from ..webapp.run_view import RunView, run_url, video_of
from .query import MAX_QUERY_LIST

router = APIRouter(tags=["stories"])
StoryPath = Annotated[str, Path(description="The story id (any text without '/').")]
ShotIndex = Annotated[int, Path(ge=0, lt=2**31, description="The shot's 0-based index in the story.")]
POSTER_QUALITY = 85


@router.get("/libraries/{lib:path}/runs")
def list_runs(library: ExistingLibraryDep) -> dict[str, Any]:
    """The story runs of the library: shots finished, generator, last change, where to view it."""
    runs = []
    for story_id in library.shots.stories():
        records = library.shots.records(story_id)
        if not records:
            continue
        runs.append(
            {
                "story_id": story_id,
                "shots": len(records),
                "generator": next((r.generator for r in records if r.generator), None),
                "updated": max(r.created for r in records).isoformat(),
                "videos": sum(1 for r in records if video_of(r) is not None),
                "url": run_url(library.name, story_id),
            }
        )
    return {"library": library.name, "runs": runs}


@router.get("/libraries/{lib:path}/runs/{story}/view", response_class=HTMLResponse)
def run_view(library: ExistingLibraryDep, story: StoryPath) -> HTMLResponse:
    """The run view as an HTML fragment (``continuity.report.render_run``; all user text escaped).
    Its images and videos are in ``data-src``/``data-poster`` attributes, for the page to fetch with its key."""
    html = RunView(library, clean_story_id(story)).html()
    return HTMLResponse(html, headers={"Content-Security-Policy": "default-src 'none'"})


@router.get(
    "/libraries/{lib:path}/runs/{story}/shots/{index}/video",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}}}},
)
def shot_video(library: ExistingLibraryDep, story: StoryPath, index: ShotIndex) -> FileResponse:
    """The shot's MP4, as its run wrote it (only the file its record names is ever served)."""
    video = video_of(RunView(library, clean_story_id(story)).record(index))
    if video is None:
        raise NotFoundError(f"shot {index} of story {story!r} has no video file on this server")
    return FileResponse(video, media_type="video/mp4", headers={"Cache-Control": "private, max-age=60"})


@router.get(
    "/libraries/{lib:path}/runs/{story}/shots/{index}/poster",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def shot_poster(library: ExistingLibraryDep, story: StoryPath, index: ShotIndex) -> Response:
    """The first frame of the shot's MP4 as a JPEG: the poster the player shows before it plays."""
    from PIL import Image

    from continuity.video import read_frames

    video = video_of(RunView(library, clean_story_id(story)).record(index))
    if video is None:
        raise NotFoundError(f"shot {index} of story {story!r} has no video file on this server")
    out = io.BytesIO()
    Image.fromarray(read_frames(video, max_frames=1)[0]).save(out, format="JPEG", quality=POSTER_QUALITY)
    return Response(out.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


@router.get("/libraries/{lib:path}/runs/{story}/memory")
def shot_memory(
    library: ExistingLibraryDep,
    story: StoryPath,
    before: Annotated[
        int, Query(ge=0, lt=2**31, description="The shot's 0-based index: memory comes from earlier shots.")
    ],
    entity: Annotated[list[str], Query(max_length=MAX_QUERY_LIST, description="Entity ids the shot shows.")] = [],  # noqa: B006
    location: Annotated[str | None, Query(description="The shot's location entity id.")] = None,
    policy: Annotated[str, Query(description=f"One of {', '.join(POLICIES)}.")] = "relevant",
    budget: Annotated[int, Query(ge=0, le=100)] = 10,
) -> dict[str, Any]:
    """The memory keyframes a shot of the story would get (the story loop's selection, on what
    the store holds): pass the shot's hits from ``/query`` as ``entity`` (and ``location``)."""
    story_id = clean_story_id(story)
    frames = group_frames(library.keyframes(story_id, before=before, with_vectors=False))
    names = {e.id: e.name for e in library.entities_by_id(entity).values()} if entity else {}
    chosen = select_memory(policy, frames, entity_ids=entity, location_id=location, names=names, budget=budget)
    return {
        "story_id": story_id,
        "before": before,
        "policy": policy,
        "memory": [{**reference_json(f.reference, library.name), "reason": why} for f, why in chosen],
    }


# Last: "{lib:path}/runs/{story}" would otherwise also match the routes above.
@router.get("/libraries/{lib:path}/runs/{story}")
def get_run(library: ExistingLibraryDep, story: StoryPath) -> dict[str, Any]:
    """One run as JSON: per shot its number (1-based), prompt, memory and keyframe ids, guard verdict and media URLs."""
    return RunView(library, clean_story_id(story)).summary()
