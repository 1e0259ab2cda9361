"""Search a library by image: which entities does an uploaded picture look like?"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from memstore.image_search import search_by_image
from memstore.validation import clean_kind

from ..limits import load_uploads
from ..shapes import image_url
from ..state import ExistingLibraryDep, StateDep, UploadLimitDep

router = APIRouter(tags=["retrieval"])


@router.post("/libraries/{lib:path}/search/image")
def search_image(
    state: StateDep,
    library: ExistingLibraryDep,
    upload_limit: UploadLimitDep,
    image: Annotated[UploadFile, File(description="One picture (JPEG, PNG, WebP, ...).")],
    k: Annotated[int, Form(ge=1, le=100)] = 5,
    kind: Annotated[str | None, Form(description="character | location | prop | style")] = None,
) -> dict[str, Any]:
    """The nearest entities per vector column (whole-image embedders on the picture, face
    embedders on its largest face), each with its best reference and score, best first."""
    [encoded] = load_uploads([image], upload_limit)  # size, pixels and decoding checked as for registration
    with state.query_lock(library.name):  # the hot indexes sync in place
        found = search_by_image(library, encoded.data, k, kind=clean_kind(kind) if kind else None)
    return {
        "library": library.name,
        "columns": {
            column: [{**m.to_json(), "image_url": image_url(library.name, m.reference_id)} for m in matches]
            for column, matches in found.items()
        },
    }
