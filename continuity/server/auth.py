"""The bearer key check. Routes carry it as a dependency (which also declares the scheme in the
OpenAPI schema); a middleware runs the same check first, because a dependency runs only after
FastAPI has parsed (spooled) the request body and never for /docs, /openapi.json or unknown paths."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import UnauthorizedError, error_response

PUBLIC_PATHS = frozenset({"/health"})
UNAUTHORIZED_MESSAGE = "missing or wrong API key; send the header 'Authorization: Bearer <key>'"

# Only declares the scheme in the OpenAPI schema: ApiKey does the checking (constant-time, raw bytes).
_DeclaredBearer = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


class ApiKey:
    """The one key this server was started with; calling it is the route dependency."""

    def __init__(self, key: str):
        self._key = key.encode("utf-8")

    def accepts(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Starlette decodes header bytes as latin-1: encoding back gives the bytes the client sent.
        return hmac.compare_digest(token.strip().encode("latin-1", "replace"), self._key)

    def __call__(self, request: Request, _declared: _DeclaredBearer) -> None:
        if not self.accepts(request.headers.get("authorization")):
            raise UnauthorizedError(UNAUTHORIZED_MESSAGE)


class ApiKeyMiddleware:
    """Refuse every request without the key, except :data:`PUBLIC_PATHS`, before routing and
    before any of its body is read."""

    def __init__(self, app: ASGIApp, api_key: ApiKey):
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = HTTPConnection(scope)
        if request.url.path in PUBLIC_PATHS or self.api_key.accepts(request.headers.get("authorization")):
            await self.app(scope, receive, send)
            return
        await error_response(UnauthorizedError(UNAUTHORIZED_MESSAGE))(scope, receive, send)
