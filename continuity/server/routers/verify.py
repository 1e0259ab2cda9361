"""POST /verify: the HTTP side of ``continuity verify``: a file's content credentials and
watermark, resolved to this store's shot records."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile

from memstore.errors import InvalidInputError

from ..auth import AccessDep
from ..state import StateDep

router = APIRouter(tags=["provenance"])
SUFFIXES = (".mp4", ".mov", ".m4v", ".jpg", ".jpeg", ".png")
CHUNK = 1 << 20


def _suffix(name: str | None) -> str:
    suffix = Path(name or "").suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInputError(f"cannot verify {str(name)[:80]!r}: send an MP4, JPEG or PNG ({', '.join(SUFFIXES)})")
    return suffix


@router.post("/verify")
def verify(
    state: StateDep,
    access: AccessDep,
    file: Annotated[UploadFile, File(description="An MP4 or image the story loop wrote (or a copy of one).")],
) -> dict[str, Any]:
    """``status`` valid | tampered | unknown (``exit_code`` 0 | 1 | 2, as the CLI's), the
    credentials' claims, the watermark ids found and the shots (with entities and consent) they name,
    of the libraries the request's key reaches (``hidden_shots`` counts the others)."""
    from continuity.provenance.verify import verify_file

    suffix = _suffix(file.filename)
    limit = state.limit.per_upload
    fd, tmp = tempfile.mkstemp(prefix=".verify.", suffix=suffix)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := file.file.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise InvalidInputError(f"the file is larger than this server's limit of {limit} bytes")
                out.write(chunk)
        result = verify_file(tmp, state.store).to_json()
        shown = [s for s in result["shots"] if access.reaches(s["library"])]
        result.update(file=file.filename, shots=shown, hidden_shots=len(result["shots"]) - len(shown))
        return result
    finally:
        Path(tmp).unlink(missing_ok=True)
