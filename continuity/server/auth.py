"""Who may do what: the server's admin key and the store's per-library keys (see :mod:`memstore.keys`).

Every request but ``GET /health`` needs ``Authorization: Bearer <key>`` once authentication is on
(the server has an admin key, or the store holds library keys when the app is made). The admin key
(``--api-key-env``) may do everything in every library. A library key reaches only its library, up
to its scope, over every endpoint: ``read`` lists, shows, fetches images and face crops, queries,
searches by image and plans story shots; ``write`` also registers, updates, adds images, removes,
commits and resets story shots; ``admin`` also exports. ``GET /libraries`` lists only the
libraries a key reaches. ``/docs`` (a page with no data, and its assets) is public so that a
browser opens it; the page asks for a key and sends it itself, and ``/openapi.json`` needs any valid key.

The middleware checks all of this from the method and the path before routing and before any of
the body is read (a dependency runs only after FastAPI has parsed, i.e. spooled, the body). The
library provider of every ``/libraries/{lib}`` route checks the resolved name once more.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from memstore.keys import KeyRing, KeyScope, scope_allows

from .errors import ForbiddenError, UnauthorizedError, error_response

PUBLIC_PATHS = frozenset({"/health", "/docs"})
PUBLIC_PREFIXES = ("/docs/assets/",)  # the docs page's static files
UNAUTHORIZED_MESSAGE = "missing or wrong API key; send the header 'Authorization: Bearer <key>'"
ACCESS_SCOPE_KEY = "continuity.access"
_LIBRARY_PATH = re.compile(r"^/libraries/([^/]+)(/.*)?$")
# POSTs that only read: a query, an image search, planning a story shot (kept in server memory only)
_READING_POSTS = re.compile(r"/(query|search/image|stories/[^/]+/plan)")  # fullmatch: "$" admits a "\n"

# Only declares the scheme in the OpenAPI schema: the middleware does the checking.
_DeclaredBearer = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


def declare_bearer(_declared: _DeclaredBearer) -> None:
    """The routes' dependency that puts the bearer scheme in the OpenAPI schema."""


@dataclass(frozen=True)
class Access:
    """What one request's key may do: ``library`` None is every library (the admin key, or no auth)."""

    library: str | None
    scope: KeyScope

    def reaches(self, library: str) -> bool:
        return self.library is None or self.library == library

    def check(self, library: str, needed: KeyScope, what: str) -> None:
        if not self.reaches(library):
            raise ForbiddenError(f"this key is for library {self.library!r}; it cannot reach library {library!r}")
        if not scope_allows(self.scope, needed):
            raise ForbiddenError(f"this key has scope {self.scope!r}; {what} needs scope {needed!r}")


OPEN_ACCESS = Access(None, "admin")


def needed_scope(method: str, rest: str) -> KeyScope:
    """The scope a request on ``/libraries/{lib}{rest}`` needs: the one table of who may do what."""
    if rest == "/export":
        return "admin"
    if method in ("GET", "HEAD") or (method == "POST" and _READING_POSTS.fullmatch(rest)):
        return "read"
    return "write"


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class Authenticator:
    """Turns an ``Authorization`` header into an :class:`Access`, or None when the key is missing or wrong."""

    def __init__(self, admin_key: str | None, keyring: KeyRing):
        self._admin = admin_key.strip().encode("utf-8") if admin_key is not None else None
        self.keyring = keyring

    def access(self, authorization: str | None) -> Access | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        # Starlette decodes header bytes as latin-1: encoding back gives the bytes the client sent.
        raw = token.encode("latin-1", "replace")
        if self._admin is not None and hmac.compare_digest(raw, self._admin):
            return OPEN_ACCESS
        found = self.keyring.verify(raw.decode("utf-8", "replace"))
        return Access(*found) if found is not None else None


class AuthMiddleware:
    """Refuse every request the key does not allow (see the module docstring), before routing and
    before any of its body is read; put the key's :class:`Access` in the scope for the routes."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator):
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        access = self.authenticator.access(HTTPConnection(scope).headers.get("authorization"))
        if access is None:
            await error_response(UnauthorizedError(UNAUTHORIZED_MESSAGE))(scope, receive, send)
            return
        match = _LIBRARY_PATH.match(scope["path"])
        if match is not None:
            method, rest = scope["method"], match.group(2) or ""
            try:
                access.check(match.group(1), needed_scope(method, rest), f"{method} {scope['path']}")
            except ForbiddenError as exc:
                await error_response(exc)(scope, receive, send)
                return
        scope[ACCESS_SCOPE_KEY] = access
        await self.app(scope, receive, send)


def request_access(request: Request) -> Access:
    """The request's :class:`Access` (every library, when the server runs without authentication)."""
    access = request.scope.get(ACCESS_SCOPE_KEY)
    return access if isinstance(access, Access) else OPEN_ACCESS


AccessDep = Annotated[Access, Depends(request_access)]
