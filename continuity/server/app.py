"""``create_app``: the FastAPI app over one store, assembled from the routers, the browser guard,
the key check, the limits and the error handlers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.params import Depends as DependsParam
from fastapi.responses import JSONResponse

from memstore.errors import InvalidInputError
from memstore.keys import KeyRing
from memstore.store import Store

from .auth import Authenticator, AuthMiddleware, declare_bearer
from .browser import BrowserGuardMiddleware
from .docs import router as docs_router
from .errors import ErrorHandlers, error_body
from .limits import BODY_READ_TIMEOUT_S, MAX_UPLOAD_BYTES, BodyLimit, BodyLimitMiddleware
from .routers import archive, entities, gallery, imports, names, query, references, runs, search, store, stories, verify
from .state import AppState
from .stories import StoryConflictError
from .webapp import WebAppMiddleware, pages_app


def _check_settings(api_key: str | None, max_upload_bytes: int, body_timeout_s: float) -> None:
    if api_key is not None and not api_key.strip():
        raise InvalidInputError("api_key is empty; give a non-empty key or None for no authentication")
    if not isinstance(max_upload_bytes, int) or max_upload_bytes <= 0:
        raise InvalidInputError(f"max_upload_bytes must be a positive integer, got {max_upload_bytes!r}")
    if not body_timeout_s > 0:
        raise InvalidInputError(f"body_timeout_s must be a positive number of seconds, got {body_timeout_s!r}")


def create_app(
    db: str,
    *,
    api_key: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    allowed_hosts: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
    body_timeout_s: float = BODY_READ_TIMEOUT_S,
    outputs_dir: str | os.PathLike[str] | None = None,
) -> FastAPI:
    """A FastAPI app over the store at ``db`` (created when missing).

    ``api_key``: the admin key (every library, every scope; surrounding whitespace is ignored).
    Authentication is on when it is set or when the store holds active library keys (``continuity
    keys create``) as the app is made; then every request except ``GET /health`` needs
    ``Authorization: Bearer <key>`` (see :mod:`.auth`).
    ``allowed_hosts``: Host names answered besides 127.0.0.1, localhost and ::1 (the bound host,
    a DNS name); ``allowed_origins``: web origins besides the server's own that may POST, PUT,
    PATCH or DELETE (see :mod:`.browser`).
    ``max_upload_bytes``: the limit per uploaded image (413 above it, while it streams); a whole
    request may carry at most :data:`~continuity.server.limits.MAX_IMAGES_PER_REQUEST` of them and
    :data:`memstore.images.MAX_BATCH_PIXELS` pixels in all. ``body_timeout_s``: the longest pause
    between two chunks of a request body (408 after it).
    ``outputs_dir``: where committed story shots' files go (MP4, keyframe JPEGs, provenance), in
    ``<outputs_dir>/<library>/<story>/shots/``; by default ``<db>/_outputs`` for a local store and
    a folder in the user's cache (``~/.cache/continuity/outputs/<hash of the URI>``) otherwise.
    ``/docs`` is a page that works offline and asks for the key itself (see :mod:`.docs`); so is
    the web app at ``/`` (see :mod:`.webapp`).
    """
    _check_settings(api_key, max_upload_bytes, body_timeout_s)
    limit = BodyLimit(max_upload_bytes, body_timeout_s)
    app = FastAPI(
        title="continuity",
        summary="A memory for generative video: blueprints per library, retrieval per shot.",
        version="0.1.0",
        docs_url=None,  # FastAPI's page loads its assets from a CDN: ours ships them (see .docs)
        redoc_url=None,
    )
    db_store = Store.open(db, create=True)
    keyring = KeyRing(db_store)
    app.state.continuity = AppState(db_store, limit, keyring, Path(outputs_dir) if outputs_dir is not None else None)
    errors = ErrorHandlers(http_413=limit.summary)
    errors.install(app)
    app.add_exception_handler(StoryConflictError, _story_conflict)

    # The middleware added last runs first: browser checks, then the key, then the body limits,
    # so nothing of a body is read before the request is known to be allowed.
    app.add_middleware(BodyLimitMiddleware, limit=limit)
    secured: list[DependsParam] = []
    if api_key is not None or keyring.has_active_keys():
        app.add_middleware(AuthMiddleware, authenticator=Authenticator(api_key, keyring))
        secured = [Depends(declare_bearer)]
    # the web app's files are public (like /docs): served after the Host check, before the key check
    app.add_middleware(WebAppMiddleware, pages=pages_app(errors))
    app.add_middleware(BrowserGuardMiddleware, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins)

    app.include_router(store.public_router)
    app.include_router(docs_router)
    routers = (store.router, gallery.router, names.router, entities.router, references.router, query.router)
    web = (runs.router, imports.router)  # what the web app needs beyond the pipelines' API
    for router in (*routers, search.router, archive.router, stories.router, verify.router, *web):
        app.include_router(router, dependencies=secured)
    return app


async def _story_conflict(request: Request, exc: Exception) -> JSONResponse:
    # 409 here rather than in errors.STATUS_BY_ERROR, which belongs to the shared error table
    return JSONResponse(error_body(type(exc).__name__, str(exc)), status_code=409)
