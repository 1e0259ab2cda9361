"""Upload and body limits: a per-image byte limit, a cap on images per request, a whole-request
limit enforced while the body streams in, and a far smaller one for JSON bodies."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import UploadFile
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memstore.errors import ImageError, InvalidInputError
from memstore.images import EncodedImage, load_image

from .errors import BODY_CUT_SCOPE_KEY, UploadTooLargeError, error_body

MAX_UPLOAD_BYTES = 32 * 1024 * 1024
MAX_IMAGES_PER_REQUEST = 16
MAX_JSON_BYTES = 1024 * 1024
MULTIPART_OVERHEAD_BYTES = 1024 * 1024  # form fields and part headers beside the images


@dataclass(frozen=True)
class BodyLimit:
    """The limits of one app, derived from its per-upload byte limit."""

    per_upload: int

    @property
    def total(self) -> int:
        """The whole-request limit of an upload."""
        return self.per_upload * MAX_IMAGES_PER_REQUEST + MULTIPART_OVERHEAD_BYTES

    @property
    def message(self) -> str:
        return (
            f"request body is over {self.total} bytes; send at most {MAX_IMAGES_PER_REQUEST} images"
            " per request, each within the per-image limit"
        )

    @property
    def summary(self) -> str:
        return f"request body is too large; at most {MAX_IMAGES_PER_REQUEST} images of {self.per_upload} bytes each"


class _BodyTooLarge(Exception):
    """Raised into the body reader when the bytes read pass the limit."""


class BodyLimitMiddleware:
    """Refuse request bodies over the limit with 413: at once when Content-Length says so, else
    (chunked uploads) as soon as the bytes read pass it, so a huge body is never spooled whole."""

    def __init__(self, app: ASGIApp, limit: BodyLimit):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        # Only uploads carry images; a JSON body (a query) has no business being large.
        upload = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
        limit = self.limit.total if upload else MAX_JSON_BYTES
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            message = (
                self.limit.message
                if upload
                else (f"request body is over {limit} bytes; a JSON request must be smaller")
            )
            response = JSONResponse(error_body("PayloadTooLargeError", message), status_code=413)
            await response(scope, receive, send)
            return
        await self.app(scope, _counted(receive, scope, limit), send)


def _counted(receive: Receive, scope: Scope, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                # FastAPI turns the parse failure into a 400: the error handler reads this mark
                scope[BODY_CUT_SCOPE_KEY] = True
                raise _BodyTooLarge()
        return message

    return counted


def read_upload(upload: UploadFile, limit: int) -> bytes:
    # Read one byte past the limit: enough to know, without holding a huge upload in memory.
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLargeError(
            f"upload {upload.filename or '<file>'!r} is over the {limit}-byte limit per image;"
            " downscale or recompress it"
        )
    return data


def load_uploads(uploads: list[UploadFile] | None, limit: int) -> list[EncodedImage]:
    """Check every upload (size, then decodability) before anything is written."""
    uploads = [u for u in (uploads or []) if u is not None]
    if len(uploads) > MAX_IMAGES_PER_REQUEST:
        raise InvalidInputError(
            f"got {len(uploads)} images in one request, at most {MAX_IMAGES_PER_REQUEST}; send them in several requests"
        )
    return [_decode(upload, read_upload(upload, limit)) for upload in uploads]


def _decode(upload: UploadFile, data: bytes) -> EncodedImage:
    try:
        return load_image(data)
    except ImageError as exc:  # name the upload instead of "<bytes>"
        message = str(exc)
        if message.startswith("<bytes>"):
            message = f"{upload.filename or 'upload'}" + message[len("<bytes>") :]
        raise type(exc)(message) from None
