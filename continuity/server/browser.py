"""Keeping web pages out: the Host check (DNS rebinding) and the Origin check (CSRF).

A page on another site can make a browser send requests to this server: a form POST needs no
CORS preflight (a CSRF: it creates entities), and a page whose domain re-resolves to 127.0.0.1
(DNS rebinding) can even read the answers, exports included. Two checks close both, before any
key check, routing or body:
- the ``Host`` header must name a host this server answers to (the bound host, loopback names,
  and those configured); a rebinding page's requests carry its own domain there (400);
- a state-changing request (POST, PUT, PATCH, DELETE) that a browser sends from a page, i.e. with
  an ``Origin`` header (or ``Sec-Fetch-Site`` cross-site/same-site), must come from this server's own
  origin or a configured one (403). Clients that are not browsers send no Origin and pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import CrossOriginError, UntrustedHostError, error_response

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def host_of(netloc: str) -> str:
    """The host of ``host[:port]`` (brackets of an IPv6 literal removed), lowercased."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an origin or URL, lowercased; None when it is not one (e.g. ``null``)."""
    parts = urlsplit(url.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


class BrowserGuardMiddleware:
    """Refuse untrusted Host headers and cross-origin state-changing requests (see the module docstring)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str], allowed_origins: Iterable[str] = ()):
        self.app = app
        self.hosts = frozenset(host_of(h) for h in (*LOOPBACK_HOSTS, *allowed_hosts) if h.strip())
        self.origins = frozenset(o for o in (origin_of(u) for u in allowed_origins) if o is not None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host = headers.get("host", "")
        if host_of(host) not in self.hosts:
            error = UntrustedHostError(
                f"Host {host!r} is not a host this server answers to; connect by its address,"
                " or start it with --allow-host for that name"
            )
            await error_response(error)(scope, receive, send)
            return
        if scope["method"] in UNSAFE_METHODS and not self._same_origin(headers, host):
            error = CrossOriginError(
                f"{scope['method']} from the page at {headers.get('origin') or 'another site'!r} refused: only this"
                " server's own pages may change data; start it with --allow-origin for that origin"
            )
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _same_origin(self, headers: dict[str, str], host: str) -> bool:
        origin = headers.get("origin")
        if origin is None:
            # no Origin: a client that is not a browser, unless the browser says the page is another site's
            return headers.get("sec-fetch-site", "none") not in ("cross-site", "same-site")
        claimed = origin_of(origin)
        if claimed is None:
            return False  # "null": a sandboxed page, a file, a redirect from elsewhere
        return claimed in self.origins or urlsplit(claimed).netloc == host.strip().lower()
