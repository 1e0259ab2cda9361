"""HTTP API of a continuity store, for pipelines on other machines (ComfyUI nodes, render farms).

``create_app(db)`` returns a FastAPI app over one store: register and read blueprints, fetch a
reference's image bytes, retrieve blueprints for a shot, download a library archive. Every error a
client can cause comes back as ``{"error": "<type>", "message": "<one line>"}`` with a status
mapped from :mod:`memstore.errors`; nothing a client sends yields a 500 with a traceback.

Run it with ``continuity serve`` (see :mod:`continuity.cli.serve`) or any ASGI server.

Layout: :mod:`.app` assembles; :mod:`.state` holds the store and the ``Depends`` providers;
:mod:`.errors`, :mod:`.limits` and :mod:`.auth` are the cross-cutting concerns; :mod:`.routers` has
one ``APIRouter`` per resource.
"""

from __future__ import annotations

from .app import create_app
from .errors import UnauthorizedError, UploadTooLargeError, status_for
from .limits import MAX_IMAGES_PER_REQUEST, MAX_UPLOAD_BYTES
from .routers.query import QueryBody

__all__ = [
    "MAX_IMAGES_PER_REQUEST",
    "MAX_UPLOAD_BYTES",
    "QueryBody",
    "UnauthorizedError",
    "UploadTooLargeError",
    "create_app",
    "status_for",
]
