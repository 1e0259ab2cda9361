"""The web app's entity grid: one page of a library's entities (filtered by kind, tag and name)
with a thumbnail URL each, and small JPEG thumbnails, so a library of thousands stays light."""

from __future__ import annotations

import io
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from memstore.errors import InvalidInputError
from memstore.schema import Entity, Reference
from memstore.validation import name_key

from ..shapes import entity_json
from ..state import ExistingLibraryDep, LibraryDep
from .references import RefIdDep

router = APIRouter(tags=["entities"])
PAGE_SIZE = 48
MAX_PAGE_SIZE = 200
THUMB_SIZES = (96, 192, 384)  # a fixed set: every size is one cache entry in the browser
THUMB_QUALITY = 82


def matches(entity: Entity, needle: str) -> bool:
    """Whether the name search ``needle`` (already folded) is in the entity's name or an alias."""
    return any(needle in name_key(n) for n in (entity.name, *entity.aliases))


def thumbnail_url(library: str, ref: Reference, size: int = THUMB_SIZES[1]) -> str:
    return f"/libraries/{library}/references/{ref.id}/thumbnail?size={size}"


def first_references(library: Any, entities: list[Entity]) -> dict[str, Reference]:
    """Each entity's first registered reference (else its first of any source), one read for the page."""
    firsts: dict[str, Reference] = {}
    refs = library.references(entity_ids=[e.id for e in entities], with_vectors=False)
    for ref in sorted(refs, key=lambda r: (r.source != "registered", r.created, r.id)):
        firsts.setdefault(ref.entity_id, ref)
    return firsts


@router.get("/libraries/{lib:path}/gallery")
def gallery(
    library: ExistingLibraryDep,
    offset: Annotated[int, Query(ge=0, lt=2**31)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    kind: str | None = None,
    tag: str | None = None,
    q: Annotated[str | None, Query(max_length=200, description="Part of a name or alias.")] = None,
) -> dict[str, Any]:
    """One page of entities, sorted by name, with a thumbnail URL each; ``kinds`` and ``tags``
    count the whole library (the filters a page offers), ``total`` the entities that match."""
    everyone = library.list()
    chosen = library.list(kind=kind or None, tag=tag or None) if kind or tag else everyone
    if q and q.strip():
        needle = name_key(q.strip())
        chosen = [e for e in chosen if matches(e, needle)]
    chosen.sort(key=lambda e: name_key(e.name))
    page = chosen[offset : offset + limit]
    firsts = first_references(library, page)
    return {
        "library": library.name,
        "total": len(chosen),
        "offset": offset,
        "limit": limit,
        "kinds": dict(Counter(e.kind for e in everyone)),
        "tags": dict(Counter(t for e in everyone for t in e.tags)),
        "entities": [
            {
                **entity_json(e),
                "thumbnail_url": thumbnail_url(library.name, firsts[e.id]) if e.id in firsts else None,
            }
            for e in page
        ],
    }


def thumbnail_jpeg(ref: Reference, size: int) -> bytes:
    image = ref.pil()
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


@router.get(
    "/libraries/{lib:path}/references/{ref_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def reference_thumbnail(
    library: LibraryDep,
    ref_id: RefIdDep,
    request: Request,
    size: Annotated[int, Query(description=f"Longest side in pixels: one of {THUMB_SIZES}.")] = THUMB_SIZES[1],
) -> Response:
    """A reference's image as a small JPEG (longest side ``size``) for grids and lists."""
    if size not in THUMB_SIZES:
        raise InvalidInputError(f"thumbnail size must be one of {THUMB_SIZES}, got {size}")
    ref = library.reference(ref_id, with_images=True)
    etag = f'"{ref.sha256}-{size}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(thumbnail_jpeg(ref, size), media_type="image/jpeg", headers=headers)
