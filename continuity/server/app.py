"""``create_app``: the FastAPI app over one store, assembled from the routers, the limits, the
key check and the error handlers."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.params import Depends as DependsParam

from memstore.errors import InvalidInputError
from memstore.store import Store

from .auth import ApiKey, ApiKeyMiddleware
from .errors import ErrorHandlers
from .limits import MAX_UPLOAD_BYTES, BodyLimit, BodyLimitMiddleware
from .routers import archive, entities, query, references, store
from .state import AppState


def _check_settings(api_key: str | None, max_upload_bytes: int) -> None:
    if api_key is not None and not api_key.strip():
        raise InvalidInputError("api_key is empty; give a non-empty key or None for no authentication")
    if not isinstance(max_upload_bytes, int) or max_upload_bytes <= 0:
        raise InvalidInputError(f"max_upload_bytes must be a positive integer, got {max_upload_bytes!r}")


def create_app(
    db: str,
    *,
    api_key: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
) -> FastAPI:
    """A FastAPI app over the store at ``db`` (created when missing).

    ``api_key``: when set, every request except ``GET /health`` needs ``Authorization: Bearer <key>``.
    ``max_upload_bytes``: the limit per uploaded image (413 above it); a whole request may carry
    at most :data:`~continuity.server.limits.MAX_IMAGES_PER_REQUEST` of them.
    """
    _check_settings(api_key, max_upload_bytes)
    limit = BodyLimit(max_upload_bytes)
    app = FastAPI(
        title="continuity",
        summary="A memory for generative video: blueprints per library, retrieval per shot.",
        version="0.1.0",
    )
    app.state.continuity = AppState(Store.open(db, create=True), limit)
    ErrorHandlers(body_too_large=limit.message, http_413=limit.summary).install(app)

    # The middleware added last runs first: the key is checked before any body is counted or read.
    app.add_middleware(BodyLimitMiddleware, limit=limit)
    secured: list[DependsParam] = []
    if api_key is not None:
        key = ApiKey(api_key)
        app.add_middleware(ApiKeyMiddleware, api_key=key)
        secured = [Depends(key)]

    app.include_router(store.public_router)
    for router in (store.router, entities.router, references.router, query.router, archive.router):
        app.include_router(router, dependencies=secured)
    return app
