"""HTTP API of a continuity store, for pipelines on other machines (ComfyUI nodes, render farms).

``create_app(db)`` returns a FastAPI app over one store: register and read blueprints, fetch a
reference's image bytes, retrieve blueprints for a shot, download a library archive. Every error a
client can cause comes back as ``{"error": "<type>", "message": "<one line>"}`` with a status
mapped from :mod:`memstore.errors`; nothing a client sends yields a 500 with a traceback.

Run it with ``continuity serve`` (see :mod:`continuity.cli_serve`) or any ASGI server.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.background import BackgroundTask
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
from memstore.library import Library
from memstore.schema import Entity, Reference
from memstore.store import FORMAT_VERSION, Store
from memstore.validation import clean_library, clean_name, sql_str

log = logging.getLogger("continuity.server")

MAX_UPLOAD_BYTES = 32 * 1024 * 1024
MAX_IMAGES_PER_REQUEST = 16
MAX_JSON_BYTES = 1024 * 1024
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_REF_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class UploadTooLargeError(ImageTooLargeError):
    """One uploaded file is over the server's per-upload byte limit (HTTP 413)."""


class UnauthorizedError(ContinuityError):
    """The request lacks the bearer token this server was started with (HTTP 401)."""


# Most specific first: ImageTooLargeError is an ImageError, every *Error an InvalidInputError.
STATUS_BY_ERROR: tuple[tuple[type[BaseException], int], ...] = (
    (UnauthorizedError, 401),
    (UploadTooLargeError, 413),
    (NotFoundError, 404),
    (DuplicateEntityError, 409),
    (ConsentError, 403),
    (ImageError, 422),
    (VectorError, 422),
    (ScriptError, 422),
    (InvalidInputError, 422),
    (ContinuityError, 400),
)


def status_for(exc: BaseException) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(kind: str, message: str) -> dict[str, str]:
    lines = (message or kind).strip().splitlines()
    return {"error": kind, "message": lines[0] if lines else kind}


# --- request bodies ---------------------------------------------------------------------------
class QueryBody(BaseModel):
    """A shot's request for blueprints (the fields of ``retrieval.ShotQuery`` a client may set)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(..., max_length=20_000)
    k: int = Field(8, ge=1, le=1000)
    cast: list[str] | None = None
    location: str | None = None
    cut: bool = True
    era: str | None = None
    story_id: str | None = None
    shot_index: int | None = Field(None, ge=0, lt=2**31)
    references_per_entity: int = Field(2, ge=0, le=100)
    kinds: list[str] | None = None
    tags: list[str] = Field(default_factory=list)
    require_consent: bool = False

    @field_validator("prompt", "location", "era", "story_id", "cast", "kinds", "tags")
    @classmethod
    def _valid_text(cls, value: Any) -> Any:
        # JSON can carry lone surrogates ("\ud800"); no table or index can hold them.
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("contains a lone surrogate (invalid Unicode); send valid text") from None
        return value


# --- JSON shapes ------------------------------------------------------------------------------
def reference_json(ref: Reference, library: str) -> dict[str, Any]:
    return {
        "id": ref.id, "entity_id": ref.entity_id, "era": ref.era, "source": ref.source,
        "format": ref.image_format, "width": ref.width, "height": ref.height, "sha256": ref.sha256,
        "face_box": ref.face_box, "quality": ref.quality, "story": ref.story, "shot": ref.shot,
        "frame": ref.frame, "vectors": sorted(ref.vectors),
        "image_url": f"/libraries/{library}/references/{ref.id}/image",
    }


def entity_json(entity: Entity, refs: list[Reference] | None = None) -> dict[str, Any]:
    data = entity.model_dump(mode="json")
    if refs is not None:
        data["references"] = [reference_json(r, entity.library) for r in refs]
    return data


# --- the app ----------------------------------------------------------------------------------
class _State:
    """Per-app state: one store, cached Library and Retriever objects keyed by library config
    (building an embedder can load a model, so it must not happen per request)."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._libraries: dict[tuple[str, str], Library] = {}
        self._retrievers: dict[tuple[str, str], tuple[Any, threading.Lock]] = {}

    def _key(self, name: str) -> tuple[str, str]:
        name = clean_library(name)
        return name, json.dumps(self.store.library_config(name), sort_keys=True, default=str)

    def library(self, name: str) -> Library:
        key = self._key(name)
        with self._lock:
            lib = self._libraries.get(key)
            if lib is None:
                # a config change makes a new key; drop the stale object of that library
                self._libraries = {k: v for k, v in self._libraries.items() if k[0] != key[0]}
                lib = self._libraries[key] = Library(self.store, key[0])
            return lib

    def existing_library(self, name: str) -> Library:
        """The library, or NotFoundError when it has no entities and no configuration."""
        lib = self.library(name)
        if self.store.entities.count_rows(f"library = {sql_str(lib.name)}") == 0 and \
                self.store.get_config(f"library:{lib.name}") is None:
            raise NotFoundError(f"library {lib.name!r} does not exist; see GET /libraries")
        return lib

    def retriever(self, lib: Library) -> tuple[Any, threading.Lock]:
        from retrieval import Retriever  # lazy: the retrieval package is only needed for /query

        key = self._key(lib.name)
        with self._lock:
            item = self._retrievers.get(key)
            if item is None:
                self._retrievers = {k: v for k, v in self._retrievers.items() if k[0] != key[0]}
                item = self._retrievers[key] = (Retriever(lib), threading.Lock())
            return item


def _read_upload(upload: UploadFile, limit: int) -> bytes:
    # Read one byte past the limit: enough to know, without holding a huge upload in memory.
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLargeError(
            f"upload {upload.filename or '<file>'!r} is over the {limit}-byte limit per image; downscale or recompress it"
        )
    return data


def _load_uploads(uploads: list[UploadFile] | None, limit: int) -> list[Any]:
    """Check every upload (size, then decodability) before anything is written."""
    from memstore.images import load_image

    uploads = [u for u in (uploads or []) if u is not None]
    if len(uploads) > MAX_IMAGES_PER_REQUEST:
        raise InvalidInputError(
            f"got {len(uploads)} images in one request, at most {MAX_IMAGES_PER_REQUEST}; send them in several requests"
        )
    out = []
    for upload in uploads:
        data = _read_upload(upload, limit)
        try:
            out.append(load_image(data))
        except ImageError as exc:  # name the upload instead of "<bytes>"
            message = str(exc)
            if message.startswith("<bytes>"):
                message = f"{upload.filename or 'upload'}" + message[len("<bytes>"):]
            raise type(exc)(message) from None
    return out


_TOO_LARGE = "continuity.body_too_large"


class _BodyTooLarge(Exception):
    pass


class _BodyLimit:
    """The whole-request byte limit, shared by the middleware and the error handler."""

    def __init__(self, limit: int):
        self.limit = limit
        self.message = (
            f"request body is over {limit} bytes; send at most {MAX_IMAGES_PER_REQUEST} images per request,"
            " each within the per-image limit"
        )


class _BodyLimitMiddleware:
    """Refuse request bodies over the limit with 413: at once when Content-Length says so, else
    (chunked uploads) as soon as the bytes read pass it, so a huge body is never spooled whole."""

    def __init__(self, app: Any, limit: _BodyLimit):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        # Only uploads carry images; a JSON body (a query) has no business being large.
        upload = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
        limit = self.limit.limit if upload else MAX_JSON_BYTES
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            response = JSONResponse(error_body("PayloadTooLargeError", self.limit.message if upload else
                                               f"request body is over {limit} bytes; a JSON request must be smaller"),
                                    status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    scope[_TOO_LARGE] = True  # FastAPI turns a parse failure into a 400: the handler reads this
                    raise _BodyTooLarge()
            return message

        await self.app(scope, counted, send)


def _consent(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    text = value.strip().lower()
    if text in ("yes", "true", "1"):
        return True
    if text in ("no", "false", "0"):
        return False
    raise InvalidInputError(f"consent must be 'yes' or 'no', got {value!r}")


def _bearer_ok(header: str | None, key: bytes) -> bool:
    if not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Starlette decodes header bytes as latin-1: encoding back gives the bytes the client sent.
    return hmac.compare_digest(token.strip().encode("latin-1", "replace"), key)


def create_app(
    db: str,
    *,
    api_key: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
) -> FastAPI:
    """A FastAPI app over the store at ``db`` (created when missing).

    ``api_key``: when set, every request except ``GET /health`` needs ``Authorization: Bearer <key>``.
    ``max_upload_bytes``: the limit per uploaded image (413 above it); a whole request may carry
    at most :data:`MAX_IMAGES_PER_REQUEST` of them.
    """
    if api_key is not None and not api_key.strip():
        raise InvalidInputError("api_key is empty; give a non-empty key or None for no authentication")
    if not isinstance(max_upload_bytes, int) or max_upload_bytes <= 0:
        raise InvalidInputError(f"max_upload_bytes must be a positive integer, got {max_upload_bytes!r}")
    state = _State(Store.open(db, create=True))
    key = api_key.encode("utf-8") if api_key is not None else None

    # Declares the bearer scheme in the OpenAPI schema; the middleware below does the checking.
    secured = [Depends(HTTPBearer(auto_error=False))] if key is not None else []
    app = FastAPI(
        title="continuity",
        summary="A memory for generative video: blueprints per library, retrieval per shot.",
        version="0.1.0",
    )
    app.state.continuity = state

    body_limit = _BodyLimit(max_upload_bytes * MAX_IMAGES_PER_REQUEST + 1024 * 1024)
    app.add_middleware(_BodyLimitMiddleware, limit=body_limit)

    # --- errors ---------------------------------------------------------------------------------
    @app.exception_handler(ContinuityError)
    async def _continuity_error(request: Request, exc: ContinuityError) -> JSONResponse:
        status = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(error_body(type(exc).__name__, str(exc)), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body",)) or "request"
        message = f"{where}: {first.get('msg', 'invalid request')}"
        if "input" in first and first["input"] is not None and first.get("type") != "missing":
            got = repr(first["input"])
            message += f", got {got[:80] + '...' if len(got) > 80 else got}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        return JSONResponse(error_body("InvalidInputError", message), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "NotFoundError", 405: "MethodNotAllowed", 413: "PayloadTooLargeError"}
        message = str(exc.detail)
        if request.scope.get(_TOO_LARGE):  # the body parser failed because the limiter cut it off
            return JSONResponse(error_body("PayloadTooLargeError", body_limit.message), status_code=413)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint {request.method} {request.url.path}; see /docs"
        elif exc.status_code == 413:
            message = f"request body is too large; at most {MAX_IMAGES_PER_REQUEST} images of {max_upload_bytes} bytes each"
        return JSONResponse(
            error_body(kinds.get(exc.status_code, "HTTPError"), message),
            status_code=exc.status_code, headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if request.scope.get(_TOO_LARGE):  # the limiter cut a body that was read outside the parser
            return JSONResponse(error_body("PayloadTooLargeError", body_limit.message), status_code=413)
        # A bug, not bad input: log the traceback here, never send it to the client.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("InternalError", f"unexpected {type(exc).__name__}; see the server log"), status_code=500
        )

    # --- authentication -------------------------------------------------------------------------
    if key is not None:
        @app.middleware("http")
        async def _authenticate(request: Request, call_next: Any) -> Response:
            if request.url.path == "/health" or _bearer_ok(request.headers.get("authorization"), key):
                return await call_next(request)
            return JSONResponse(
                error_body("UnauthorizedError", "missing or wrong API key; send the header 'Authorization: Bearer <key>'"),
                status_code=401, headers={"WWW-Authenticate": "Bearer"},
            )

    # --- endpoints ------------------------------------------------------------------------------
    @app.get("/health", tags=["store"])
    def health() -> dict[str, Any]:
        """Liveness and a cheap store read (no authentication)."""
        fmt = state.store.get_config("format", {}).get("version")
        return {"status": "ok", "format_version": fmt or FORMAT_VERSION}

    @app.get("/libraries", tags=["store"], dependencies=secured)
    def libraries() -> dict[str, Any]:
        out = []
        for name in state.store.libraries():
            out.append({"name": name, **state.library(name).count()})
        return {"libraries": out}

    @app.get("/libraries/{lib:path}/entities", tags=["entities"], dependencies=secured)
    def list_entities(lib: str, kind: str | None = None, tag: str | None = None) -> dict[str, Any]:
        library = state.existing_library(lib)
        entities = library.list(kind=kind or None, tag=tag or None)
        counts: dict[str, int] = {}
        for ref in library.references(with_vectors=False):
            counts[ref.entity_id] = counts.get(ref.entity_id, 0) + 1
        return {
            "library": library.name,
            "entities": [{**entity_json(e), "reference_count": counts.get(e.id, 0)} for e in entities],
        }

    @app.post("/libraries/{lib:path}/entities/{name:path}/images", tags=["entities"], status_code=201,
              dependencies=secured)
    def add_images(
        lib: str,
        name: str,
        images: Annotated[list[UploadFile], File(description="Reference images (JPEG, PNG, WebP, ...).")],
        era: Annotated[str, Form()] = "default",
    ) -> dict[str, Any]:
        """Add images to an entity, all or none; bytes it already has are not stored twice."""
        library = state.library(lib)
        entity = library.get(clean_name(name))
        encoded = _load_uploads(images, max_upload_bytes)
        if not encoded:
            raise InvalidInputError("no images in the request; send one or more 'images' files")
        before = {r.id for r in library.references(entity, with_vectors=False)}
        refs = library.add_images(entity, [e.data for e in encoded], era=era)
        return {
            "entity": entity_json(entity),
            "added": len({r.id for r in refs} - before),
            "references": [{**reference_json(r, library.name), "new": r.id not in before} for r in refs],
        }

    @app.get("/libraries/{lib:path}/entities/{name:path}", tags=["entities"], dependencies=secured)
    def get_entity(lib: str, name: str) -> dict[str, Any]:
        library = state.library(lib)
        entity = library.get(clean_name(name))
        return entity_json(entity, library.references(entity, with_vectors=True))

    @app.delete("/libraries/{lib:path}/entities/{name:path}", tags=["entities"], dependencies=secured)
    def remove_entity(lib: str, name: str) -> dict[str, Any]:
        """Remove an entity with its references and cached tokens."""
        library = state.library(lib)
        removed = library.remove(clean_name(name))
        return {"removed": entity_json(removed)}

    @app.post("/libraries/{lib:path}/entities", tags=["entities"], status_code=201, dependencies=secured)
    def register_entity(
        lib: str,
        name: Annotated[str, Form()],
        kind: Annotated[str, Form(description="character | location | prop | style")],
        aliases: Annotated[list[str], Form(description="Other names (repeat the field).")] = [],  # noqa: B006
        description: Annotated[str, Form()] = "",
        tags: Annotated[list[str], Form(description="Tags (repeat the field).")] = [],  # noqa: B006
        era: Annotated[str, Form(description="Version label of these images.")] = "default",
        consent: Annotated[str | None, Form(description="yes | no")] = None,
        rights_owner: Annotated[str | None, Form()] = None,
        license: Annotated[str | None, Form()] = None,
        rights_expires: Annotated[str | None, Form(description="ISO date after which use is refused.")] = None,
        images: Annotated[list[UploadFile] | None, File(description="Reference images.")] = None,
    ) -> dict[str, Any]:
        """Register an entity with its images; nothing is written if any field or image is bad."""
        library = state.library(lib)
        rights = {"owner": rights_owner or None, "license": license or None, "consent": _consent(consent),
                  "expires": rights_expires or None}
        encoded = _load_uploads(images, max_upload_bytes)
        entity = library.register(
            name, kind, images=[e.data for e in encoded], aliases=[a for a in aliases if a.strip()],
            description=description, tags=[t for t in tags if t.strip()], era=era, rights=rights,
        )
        return entity_json(entity, library.references(entity, with_vectors=True))

    @app.get("/libraries/{lib:path}/references/{ref_id}/image", tags=["entities"], dependencies=secured,
             response_class=Response, responses={200: {"content": {m: {} for m in MEDIA_TYPES.values()}}})
    def reference_image(lib: str, ref_id: str, request: Request) -> Response:
        """The stored image bytes of one reference, as registered (byte-identical for JPEG/PNG/WebP)."""
        library = state.library(lib)
        if not _REF_ID_RE.match(ref_id):
            raise InvalidInputError(f"reference id {ref_id!r} is malformed; expected the id from an entity's 'references'")
        ref = library.reference(ref_id, with_images=True)
        etag = f'"{ref.sha256}"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        media = MEDIA_TYPES.get(ref.image_format, "application/octet-stream")
        return Response(content=ref.image, media_type=media, headers=headers)

    @app.post("/libraries/{lib:path}/query", tags=["retrieval"], dependencies=secured)
    def query(lib: str, body: QueryBody) -> dict[str, Any]:
        """Retrieve blueprints for one shot: hits with scores, reasons and reference ids."""
        from retrieval import ShotQuery

        library = state.existing_library(lib)
        shot = ShotQuery(
            prompt=body.prompt, k=body.k, cast=tuple(body.cast) if body.cast is not None else None,
            location=body.location, cut=body.cut, era=body.era, story_id=body.story_id,
            shot_index=body.shot_index, references_per_entity=body.references_per_entity,
            kinds=tuple(body.kinds) if body.kinds is not None else None, tags=tuple(body.tags),
            require_consent=body.require_consent,
        )
        retriever, lock = state.retriever(library)
        with lock:  # one query at a time per library: the retriever's hot index syncs in place
            result = retriever.retrieve(shot, context=None)
        data = result.to_json()
        for hit in data["hits"]:  # where a remote pipeline fetches each blueprint image
            for ref in hit["references"]:
                ref["image_url"] = f"/libraries/{library.name}/references/{ref['id']}/image"
        return data

    @app.get("/libraries/{lib:path}/export", tags=["store"], dependencies=secured,
             response_class=FileResponse, responses={200: {"content": {"application/zip": {}}}})
    def export(lib: str) -> FileResponse:
        """The library as one archive file (import it with ``continuity import``)."""
        library = state.existing_library(lib)
        folder = tempfile.mkdtemp(prefix="continuity-export-")
        path = os.path.join(folder, f"{library.name}.continuity")
        try:
            library.export(path)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return FileResponse(
            path, media_type="application/zip", filename=f"{library.name}.continuity",
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )

    return app


__all__ = ["MAX_UPLOAD_BYTES", "QueryBody", "UnauthorizedError", "UploadTooLargeError", "create_app", "status_for"]
