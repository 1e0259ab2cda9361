"""``continuity serve``: run the HTTP API (see :mod:`continuity.server`) with uvicorn."""

from __future__ import annotations

import ipaddress
import os

import typer

from .common import DbOption, err_console, fail, handle_errors


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_key(api_key_env: str | None, host: str) -> str | None:
    """The key named by ``--api-key-env``; without one, a warning when the port is reachable from outside."""
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key or not api_key.strip():
            fail(f"--api-key-env {api_key_env}: that environment variable is unset or empty; export the key in it", 2)
        return api_key
    if not _is_loopback(host):
        # Reachable from other machines with no key: allowed (a trusted network), but said aloud.
        err_console.print(
            f"[yellow]warning:[/] serving on {host} without an API key; "
            "anyone who can reach it can write; use --api-key-env"
        )
    return None


@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 for every interface."),
    port: int = typer.Option(8765, "--port", help="TCP port."),
    db: str | None = DbOption,
    api_key_env: str | None = typer.Option(
        None,
        "--api-key-env",
        metavar="NAME",
        help="Name of an environment variable holding the API key; clients then send 'Authorization: Bearer <key>'.",
    ),
) -> None:
    """Serve the store over HTTP for pipelines on other machines (OpenAPI docs at /docs)."""
    from memstore.errors import require_extra
    from memstore.store import default_db

    for module in ("fastapi", "uvicorn", "multipart"):
        require_extra(module, "server")
    if not 0 <= port <= 65535:
        fail(f"--port must be 0-65535, got {port}", 2)
    api_key = _api_key(api_key_env, host)

    import uvicorn

    from ..server import create_app

    where = db or default_db()
    web = create_app(where, api_key=api_key)
    err_console.print(f"serving {where} on http://{host}:{port} (docs at /docs)", highlight=False)
    uvicorn.run(web, host=host, port=port, log_level="warning")
