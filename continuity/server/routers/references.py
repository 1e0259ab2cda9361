"""One reference's stored image bytes, and the crop of its face box."""

from __future__ import annotations

import io
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from memstore.errors import InvalidInputError, NotFoundError
from memstore.schema import Reference

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


FACE_JPEG_QUALITY = 92


def face_crop(ref: Reference) -> bytes:
    """The reference's face box cut out of its image (clamped to the image), as JPEG."""
    box = ref.face_box or []
    width, height = ref.width, ref.height
    x0, y0, x1, y1 = (int(round(v)) for v in box[:4]) if len(box) >= 4 else (0, 0, 0, 0)
    x0, x1 = max(0, min(x0, width)), max(0, min(x1, width))
    y0, y1 = max(0, min(y0, height)), max(0, min(y1, height))
    if x1 <= x0 or y1 <= y0:
        raise NotFoundError(f"reference {ref.id!r} has no face box; GET its /image instead")
    out = io.BytesIO()
    ref.pil().crop((x0, y0, x1, y1)).save(out, format="JPEG", quality=FACE_JPEG_QUALITY)
    return out.getvalue()


@router.get(
    "/libraries/{lib:path}/references/{ref_id}/face",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def reference_face(library: LibraryDep, ref_id: RefIdDep, request: Request) -> Response:
    """The face of one reference (its face box, found by a face embedder) as a JPEG crop; 404
    when the reference has none."""
    ref = library.reference(ref_id, with_images=False)
    if not ref.face_box:  # refused before the image is read
        raise NotFoundError(f"reference {ref_id!r} has no face box; GET its /image instead")
    etag = f'"{ref.sha256}-face"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(
        content=face_crop(library.reference(ref_id, with_images=True)), media_type="image/jpeg", headers=headers
    )
