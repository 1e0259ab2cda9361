"""Upload and body limits: a per-image byte limit, a cap on images per request, a pixel budget per
request, a whole-request limit and per-part limits enforced while the body streams in (see
:mod:`.streaming`), and a far smaller one for JSON bodies."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fastapi import UploadFile
from starlette.types import ASGIApp, Receive, Scope, Send

from memstore.errors import ImageError, InvalidInputError
from memstore.images import EncodedImage, PixelBudget, header_size, load_image
from memstore.validation import clean_file_name

from .errors import PayloadTooLargeError, UploadTooLargeError, error_response
from .streaming import BodyGuard, StreamLimits, multipart_boundary

MAX_UPLOAD_BYTES = 32 * 1024 * 1024
MAX_IMAGES_PER_REQUEST = 16
MAX_JSON_BYTES = 1024 * 1024
MULTIPART_OVERHEAD_BYTES = 1024 * 1024  # form fields and part headers beside the images
MAX_FIELD_BYTES = 1024 * 1024  # one form field (Starlette's own limit, refused here first with a typed 413)
BODY_READ_TIMEOUT_S = 30.0  # the longest pause between two chunks of a request body


@dataclass(frozen=True)
class BodyLimit:
    """The limits of one app, derived from its per-upload byte limit."""

    per_upload: int
    read_timeout_s: float = BODY_READ_TIMEOUT_S

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

    def stream_limits(self, upload: bool) -> StreamLimits:
        if upload:
            return StreamLimits(self.total, self.message, self.per_upload, MAX_FIELD_BYTES, self.read_timeout_s)
        message = f"request body is over {MAX_JSON_BYTES} bytes; a JSON request must be smaller"
        return StreamLimits(MAX_JSON_BYTES, message, MAX_JSON_BYTES, MAX_JSON_BYTES, self.read_timeout_s)

    @property
    def summary(self) -> str:
        return f"request body is too large; at most {MAX_IMAGES_PER_REQUEST} images of {self.per_upload} bytes each"


class BodyLimitMiddleware:
    """Refuse request bodies over the limits with 413: at once when Content-Length says so, else
    as the bytes stream in (see :class:`~.streaming.BodyGuard`: per-part limits, the closing
    boundary, the read timeout), so a huge body or part is never spooled whole."""

    def __init__(self, app: ASGIApp, limit: BodyLimit):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Only uploads carry images; a JSON body (a query) has no business being large.
        upload = multipart_boundary(scope) is not None
        limits = self.limit.stream_limits(upload)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limits.total:
            await error_response(PayloadTooLargeError(limits.total_message))(scope, receive, send)
            return
        await self.app(scope, BodyGuard(scope, receive, limits), send)


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
    """Check every upload before anything is written: its size, then every header against the
    request's pixel budget (nothing is decoded until the whole request fits), then each image's
    decoding, one at a time."""
    uploads = [u for u in (uploads or []) if u is not None]
    if len(uploads) > MAX_IMAGES_PER_REQUEST:
        raise InvalidInputError(
            f"got {len(uploads)} images in one request, at most {MAX_IMAGES_PER_REQUEST}; send them in several requests"
        )
    data = [read_upload(upload, limit) for upload in uploads]
    budget = PixelBudget()
    for upload, raw in zip(uploads, data, strict=True):
        budget.spend(*header_size(raw, _name(upload)), _name(upload))
    return [_decode(upload, raw) for upload, raw in zip(uploads, data, strict=True)]


def _name(upload: UploadFile) -> str:
    return upload.filename or "upload"


def _decode(upload: UploadFile, data: bytes) -> EncodedImage:
    try:
        return dataclasses.replace(load_image(data), name=clean_file_name(upload.filename))
    except ImageError as exc:  # name the upload instead of "<bytes>"
        message = str(exc)
        if message.startswith("<bytes>"):
            message = _name(upload) + message[len("<bytes>") :]
        raise type(exc)(message) from None
