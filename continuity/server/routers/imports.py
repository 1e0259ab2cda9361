"""Importing an archive (``continuity export`` / ``GET .../export``) into a library by upload."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile

from memstore.archive import import_library
from memstore.errors import ArchiveError, InvalidInputError

from ..errors import UploadTooLargeError
from ..state import LibraryDep, StateDep

router = APIRouter(tags=["store"])
CHUNK = 1 << 20


def spool(upload: UploadFile, folder: str, limit: int) -> Path:
    """The upload copied to a file in ``folder``, refused past ``limit`` bytes."""
    path = Path(folder) / "upload.continuity"
    size = 0
    with path.open("wb") as out:
        while chunk := upload.file.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise UploadTooLargeError(f"the archive is over this server's limit of {limit} bytes per file")
            out.write(chunk)
    if size == 0:
        raise InvalidInputError("the archive is empty; send the file written by 'continuity export'")
    return path


@router.post("/libraries/{lib:path}/import", status_code=201)
def import_archive(
    state: StateDep,
    library: LibraryDep,
    archive: Annotated[UploadFile, File(description="A .continuity archive written by export.")],
) -> dict[str, Any]:
    """Import an archive into this library (whatever library it was exported from): every row is
    checked as registration would, and a bad archive or a name that exists here changes nothing."""
    folder = tempfile.mkdtemp(prefix="continuity-import-")
    try:
        path = spool(archive, folder, state.limit.per_upload)
        try:
            result = import_library(state.store, path, library=library.name)
        except ArchiveError as exc:  # name the upload, not the server's temporary file
            raise ArchiveError(str(exc).replace(str(path), repr(archive.filename or "the archive"))) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"library": library.name, **{k: v for k, v in result.items() if not k.startswith("_")}}
