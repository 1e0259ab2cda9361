"""The web app at ``/``: a library manager and story viewer for the people who curate the
blueprints, in plain HTML, CSS and JavaScript modules shipped in ``static/`` (no CDN, no build).

The page holds no data: it asks for an API key (kept in the tab's ``sessionStorage``, as
``/docs`` does) and talks to the JSON API with it. Its files are public, like ``/docs``, so a
browser opens them without a key: :class:`WebAppMiddleware` answers ``GET /`` and
``GET /app/<file>`` before the key check (after the Host check), and nothing else.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from memstore.errors import NotFoundError

from ...report import report_css
from ..errors import ErrorHandlers

STATIC = Path(__file__).parent / "static"
ASSET_PREFIX = "/app/"
SUFFIXES = (".js", ".css", ".svg", ".html")
# Only this server's own files may load or run in the page; media comes back as blob: URLs.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:;"
    " media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

router = APIRouter(include_in_schema=False)


def asset_names() -> frozenset[str]:
    """The files the page may load: those shipped in ``static/`` (a fixed set: no request path reaches the disk)."""
    return frozenset(
        p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file() and p.suffix in SUFFIXES
    )


_ASSETS = asset_names()


@router.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"), headers=HEADERS)


@router.get("/app/report.css")
def run_view_css() -> Response:
    """The run view's stylesheet: the same file ``report.html`` inlines (one rendering)."""
    return Response(report_css(), media_type="text/css", headers={**HEADERS, "Cache-Control": "no-cache"})


@router.get("/app/{name:path}")
def asset(name: str) -> Response:
    if name not in _ASSETS:
        raise NotFoundError(f"no web app file {name[:80]!r}")
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if name.endswith(".js"):
        media = "text/javascript"  # module scripts need a JavaScript type whatever the system's table says
    headers = {**HEADERS, "Cache-Control": "no-cache"}  # revalidated: an upgrade is seen at once
    return Response((STATIC / name).read_bytes(), media_type=media, headers=headers)


def is_page_request(scope: Scope) -> bool:
    path = scope.get("path", "")
    return scope.get("method") in ("GET", "HEAD") and (path == "/" or path.startswith(ASSET_PREFIX))


class WebAppMiddleware:
    """Serve the web app's public files (``GET /``, ``GET /app/...``) from ``pages``; pass the rest on."""

    def __init__(self, app: ASGIApp, pages: FastAPI):
        self.app = app
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_page_request(scope):
            await self.pages(scope, receive, send)
            return
        await self.app(scope, receive, send)


def pages_app(errors: ErrorHandlers) -> FastAPI:
    """A FastAPI app holding only the web app's routes (with the main app's typed error handlers)."""
    pages = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    pages.include_router(router)
    errors.install(pages)
    return pages


__all__ = ["WebAppMiddleware", "pages_app", "router"]
