"""Typed JSON error bodies: every error a client can cause is ``{"error": "<type>", "message": "<one line>"}``
with a status mapped from :mod:`memstore.errors`; nothing a client sends yields a 500 with a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from memstore.errors import (
    ConsentError,
    ContinuityError,
    DuplicateEntityError,
    ImageError,
    ImageTooLargeError,
    InvalidInputError,
    NotFoundError,
    ScriptError,
    VectorError,
)
from memstore.images import PixelBudgetError

log = logging.getLogger("continuity.server")

# Set in the request scope (to the error) by the body guard when it cut a body off: the parse
# failure that follows (a 400 from FastAPI, or any exception) is then answered as that error.
BODY_CUT_SCOPE_KEY = "continuity.body_cut"


class UploadTooLargeError(ImageTooLargeError):
    """One uploaded file is over the server's per-upload byte limit (HTTP 413)."""


class PayloadTooLargeError(ContinuityError):
    """A request body is over the whole-request limit, or a form field over its own (HTTP 413)."""


class UnauthorizedError(ContinuityError):
    """The request lacks a valid key: the server's admin key or a library key (HTTP 401)."""


class ForbiddenError(ContinuityError):
    """The key is valid but may not do this: another library, or a scope too low (HTTP 403)."""


class CrossOriginError(ForbiddenError):
    """A browser sent a state-changing request from another site's page (HTTP 403): a CSRF."""


class UntrustedHostError(ContinuityError):
    """The Host header names no host this server answers to (HTTP 400): DNS rebinding."""


class MalformedBodyError(ContinuityError):
    """A request body that is cut short or not well-formed, e.g. multipart without its closing boundary (HTTP 400)."""


class RequestTimeoutError(ContinuityError):
    """The client stopped sending its request body (HTTP 408)."""


# Most specific first: ImageTooLargeError is an ImageError, every *Error an InvalidInputError.
STATUS_BY_ERROR: tuple[tuple[type[BaseException], int], ...] = (
    (UnauthorizedError, 401),
    (ForbiddenError, 403),
    (UploadTooLargeError, 413),
    (PixelBudgetError, 413),
    (PayloadTooLargeError, 413),
    (MalformedBodyError, 400),
    (RequestTimeoutError, 408),
    (NotFoundError, 404),
    (DuplicateEntityError, 409),
    (ConsentError, 403),
    (ImageError, 422),
    (VectorError, 422),
    (ScriptError, 422),
    (InvalidInputError, 422),
    (ContinuityError, 400),
)

HTTP_ERROR_KINDS = {404: "NotFoundError", 405: "MethodNotAllowed", 413: "PayloadTooLargeError"}


def status_for(exc: BaseException) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(kind: str, message: str) -> dict[str, str]:
    lines = (message or kind).strip().splitlines()
    return {"error": kind, "message": lines[0] if lines else kind}


def error_response(exc: ContinuityError) -> JSONResponse:
    status = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(type(exc).__name__, str(exc)), status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> str:
    """The first validation error as one line: where, what, and what was sent."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body",)) or "request"
    message = f"{where}: {first.get('msg', 'invalid request')}"
    if "input" in first and first["input"] is not None and first.get("type") != "missing":
        got = repr(first["input"])
        message += f", got {got[:80] + '...' if len(got) > 80 else got}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return message


class ErrorHandlers:
    """The app's exception handlers. ``http_413``: the message of a 413 no guard of ours raised
    (it names this app's limits)."""

    def __init__(self, *, http_413: str):
        self.http_413 = http_413

    def install(self, app: FastAPI) -> None:
        app.add_exception_handler(ContinuityError, self.continuity_error)
        app.add_exception_handler(RequestValidationError, self.validation_error)
        app.add_exception_handler(StarletteHTTPException, self.http_error)
        app.add_exception_handler(Exception, self.unexpected)

    def _cut_off(self, request: Request) -> JSONResponse | None:
        error = request.scope.get(BODY_CUT_SCOPE_KEY)
        return error_response(error) if isinstance(error, ContinuityError) else None

    async def continuity_error(self, request: Request, exc: ContinuityError) -> JSONResponse:
        return error_response(exc)

    async def validation_error(self, request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("InvalidInputError", validation_message(exc)), status_code=422)

    async def http_error(self, request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cut = self._cut_off(request)  # the body parser failed because the limiter cut it off
        if cut is not None:
            return cut
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint {request.method} {request.url.path}; see /docs"
        elif exc.status_code == 413:
            message = self.http_413
        return JSONResponse(
            error_body(HTTP_ERROR_KINDS.get(exc.status_code, "HTTPError"), message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def unexpected(self, request: Request, exc: Exception) -> JSONResponse:
        cut = self._cut_off(request)  # the limiter cut a body that was read outside the parser
        if cut is not None:
            return cut
        # A bug, not bad input: log the traceback here, never send it to the client.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        message = f"unexpected {type(exc).__name__}; see the server log"
        return JSONResponse(error_body("InternalError", message), status_code=500)
