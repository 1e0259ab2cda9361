"""One reference's stored image bytes."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from memstore.errors import InvalidInputError

from ..state import LibraryDep

MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_REF_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

router = APIRouter(tags=["entities"])


def get_ref_id(ref_id: str) -> str:
    """The route's ``{ref_id}``, refused before any store read when it cannot be an id."""
    if not _REF_ID_RE.match(ref_id):
        raise InvalidInputError(f"reference id {ref_id!r} is malformed; expected the id from an entity's 'references'")
    return ref_id


RefIdDep = Annotated[str, Depends(get_ref_id)]


@router.get(
    "/libraries/{lib:path}/references/{ref_id}/image",
    response_class=Response,
    responses={200: {"content": {m: {} for m in MEDIA_TYPES.values()}}},
)
def reference_image(library: LibraryDep, ref_id: RefIdDep, request: Request) -> Response:
    """The stored image bytes of one reference, as registered (byte-identical for JPEG/PNG/WebP)."""
    ref = library.reference(ref_id, with_images=True)
    etag = f'"{ref.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    media = MEDIA_TYPES.get(ref.image_format, "application/octet-stream")
    return Response(content=ref.image, media_type=media, headers=headers)
