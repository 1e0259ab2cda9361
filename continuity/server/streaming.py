"""The request body as it streams in, checked chunk by chunk before FastAPI's parser sees it.

:class:`BodyGuard` wraps the ASGI ``receive`` of one request and refuses, as soon as the bytes
received show it:
- a body over the whole-request limit (chunked uploads have no Content-Length to refuse up front);
- in a multipart upload, a file part over the per-upload limit, or a form field over its limit,
  so a 300 MB part is cut after 32 MB instead of being spooled to disk whole first;
- a multipart body that ends without its closing boundary (the parser would silently drop the
  last part: an entity registered without its image);
- a client that stops sending its body for longer than the read timeout.

Refusing means: the error is put in the request scope (see :data:`~.errors.BODY_CUT_SCOPE_KEY`)
and an exception is raised into the body reader; the error handlers then answer with that error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import NoReturn

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.types import Message, Receive, Scope

from memstore.errors import ContinuityError

from .errors import (
    BODY_CUT_SCOPE_KEY,
    MalformedBodyError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UploadTooLargeError,
)


class BodyCut(Exception):
    """Raised into the body reader once the guard has refused the body (the error is in the scope)."""


@dataclass(frozen=True)
class StreamLimits:
    """What one request body may be: ``total`` bytes in all (``total_message`` says so), file parts
    of ``per_file`` bytes, form fields of ``per_field`` bytes, and no pause over ``timeout_s``."""

    total: int
    total_message: str
    per_file: int
    per_field: int
    timeout_s: float


class _MultipartWatch:
    """Follows the parts of a multipart body: their sizes, and whether the closing boundary came."""

    def __init__(self, boundary: bytes, limits: StreamLimits):
        self.limits = limits
        self.boundary = boundary
        self.ended = False
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._filename: str | None = None
        self._size = 0
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_end": self._end,
            },
        )

    def feed(self, data: bytes) -> None:
        try:
            self.parser.write(data)
        except MultipartParseError as exc:
            raise MalformedBodyError(
                f"malformed multipart body ({exc}); send a well-formed multipart/form-data body"
            ) from None

    def finish(self) -> None:
        if not self.ended:
            raise MalformedBodyError(
                "multipart body ends without its closing boundary; the upload was cut short, send it again"
            )

    def _part_begin(self) -> None:
        self._header_name = self._header_value = self._disposition = b""
        self._filename, self._size = None, 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        filename = options.get(b"filename")
        self._filename = filename.decode("utf-8", "replace") if filename is not None else None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._filename is not None and self._size > self.limits.per_file:
            raise UploadTooLargeError(
                f"upload {self._filename!r} is over the {self.limits.per_file}-byte limit per image;"
                " downscale or recompress it"
            )
        if self._filename is None and self._size > self.limits.per_field:
            raise PayloadTooLargeError(
                f"a form field is over {self.limits.per_field} bytes; send long text in several fields or as a file"
            )

    def _end(self) -> None:
        self.ended = True


def multipart_boundary(scope: Scope) -> bytes | None:
    """The boundary of a multipart/form-data request, or None for any other body."""
    headers = dict(scope.get("headers") or [])
    kind, options = parse_options_header(headers.get(b"content-type", b""))
    if kind != b"multipart/form-data":
        return None
    return options.get(b"boundary") or None


class BodyGuard:
    """The checked ``receive`` of one request (see the module docstring)."""

    def __init__(self, scope: Scope, receive: Receive, limits: StreamLimits):
        self.scope = scope
        self.receive = receive
        self.limits = limits
        self.seen = 0
        self.done = False
        boundary = multipart_boundary(scope)
        self.multipart = _MultipartWatch(boundary, limits) if boundary is not None else None

    async def __call__(self) -> Message:
        if self.done:  # after the body: e.g. waiting for a disconnect while a download streams, no timeout
            return await self.receive()
        try:
            message = await asyncio.wait_for(self.receive(), self.limits.timeout_s)
        except TimeoutError:
            self._refuse(
                RequestTimeoutError(
                    f"no body bytes for {self.limits.timeout_s:g} s; the request was dropped, send it again"
                )
            )
        if message["type"] == "http.request":
            try:
                self._check(message)
            except ContinuityError as exc:
                self._refuse(exc)
        return message

    def _check(self, message: Message) -> None:
        body = message.get("body", b"")
        self.seen += len(body)
        if self.seen > self.limits.total:
            raise PayloadTooLargeError(self.limits.total_message)
        if self.multipart is not None and body:
            self.multipart.feed(body)
        if not message.get("more_body", False):
            self.done = True
            if self.multipart is not None:
                self.multipart.finish()

    def _refuse(self, error: ContinuityError) -> NoReturn:
        self.done = True
        # FastAPI turns the parse failure into a 400: the error handlers read this mark instead
        self.scope[BODY_CUT_SCOPE_KEY] = error
        raise BodyCut(str(error))
