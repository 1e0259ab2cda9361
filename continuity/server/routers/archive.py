"""A library as one downloadable archive (import it with ``continuity import``)."""

from __future__ import annotations

import os
import shutil
import tempfile

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from ..state import ExistingLibraryDep

router = APIRouter(tags=["store"])


@router.get(
    "/libraries/{lib:path}/export", response_class=FileResponse, responses={200: {"content": {"application/zip": {}}}}
)
def export(library: ExistingLibraryDep) -> FileResponse:
    """The library as one archive file (import it with ``continuity import``)."""
    folder = tempfile.mkdtemp(prefix="continuity-export-")
    path = os.path.join(folder, f"{library.name}.continuity")
    try:
        library.export(path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    # the temporary archive is deleted once it has been sent
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"{library.name}.continuity",
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
