"""``continuity serve``: run the HTTP API (see :mod:`continuity.server`) with uvicorn.

Security defaults, in the order a request meets them:
- Host and Origin: only the bound host, 127.0.0.1, localhost, ::1 and ``--allow-host`` names are
  answered (DNS rebinding), and a browser page of another origin cannot POST/PUT/PATCH/DELETE
  (CSRF) unless ``--allow-origin`` names it;
- keys: ``--api-key-env`` / ``--api-key-file`` give the admin key (surrounding whitespace, e.g.
  a file's trailing newline, is ignored); library keys from ``continuity keys create`` work too.
  Without any key on a loopback address a warning is printed; on any other address a random
  admin key is generated and printed once, so the port is never open to the network by accident;
- connections (uvicorn): ``timeout_keep_alive`` closes an idle connection after
  :data:`KEEP_ALIVE_S`; h11 refuses request heads over :data:`MAX_HEAD_BYTES`;
  :data:`MAX_CONNECTIONS` concurrent connections at most (503 beyond). uvicorn has no timeout for
  reading a request head; the app drops a body that pauses longer than its read timeout (408).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

import typer

from .common import DbOption, err_console, fail, handle_errors

KEEP_ALIVE_S = 5
MAX_HEAD_BYTES = 64 * 1024
MAX_CONNECTIONS = 256
AllowHostOption = typer.Option(
    [], "--allow-host", metavar="NAME", help="Another Host name to answer (a DNS name of this machine); repeatable."
)
AllowOriginOption = typer.Option(
    [],
    "--allow-origin",
    metavar="URL",
    help="A web origin whose pages may change data (scheme://host:port); repeatable.",
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_key(api_key_env: str | None, api_key_file: Path | None) -> str | None:
    if api_key_env is not None and api_key_file is not None:
        fail("give --api-key-env or --api-key-file, not both", 2)
    if api_key_env is not None:
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            fail(f"--api-key-env {api_key_env}: that environment variable is unset or empty; export the key in it", 2)
        return key
    if api_key_file is not None:
        try:
            key = api_key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"--api-key-file {api_key_file}: cannot read it ({type(exc).__name__}); give a UTF-8 text file", 2)
        if not key:
            fail(f"--api-key-file {api_key_file}: the file is empty; write the key in it", 2)
        return key
    return None


def _api_key(api_key_env: str | None, api_key_file: Path | None, host: str) -> str | None:
    """The admin key; without one, a warning on loopback and a generated key on any other address."""
    key = _read_key(api_key_env, api_key_file)
    if key is not None:
        return key
    if _is_loopback(host):
        err_console.print(
            "[yellow]warning:[/] serving without an API key: any program on this machine can read, write and"
            " export every library (library keys from 'continuity keys create' still work); use --api-key-env",
            highlight=False,
        )
        return None
    key = secrets.token_urlsafe(32)
    # Reachable from other machines: never without a key. Printed once, kept nowhere.
    err_console.print(
        f"[yellow]warning:[/] serving on {host} without --api-key-env; generated an admin key for this run:\n{key}",
        highlight=False,
        soft_wrap=True,
    )
    return key


@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 for every interface."),
    port: int = typer.Option(8765, "--port", help="TCP port."),
    db: str | None = DbOption,
    api_key_env: str | None = typer.Option(
        None,
        "--api-key-env",
        metavar="NAME",
        help="Name of an environment variable holding the admin key; clients then send 'Authorization: Bearer <key>'.",
    ),
    api_key_file: Path | None = typer.Option(
        None, "--api-key-file", metavar="PATH", help="A file holding the admin key (instead of --api-key-env)."
    ),
    allow_host: list[str] = AllowHostOption,
    allow_origin: list[str] = AllowOriginOption,
) -> None:
    """Serve the store over HTTP for pipelines on other machines (OpenAPI docs at /docs)."""
    from memstore.errors import require_extra
    from memstore.store import default_db

    for module in ("fastapi", "uvicorn", "multipart"):
        require_extra(module, "server")
    if not 0 <= port <= 65535:
        fail(f"--port must be 0-65535, got {port}", 2)
    api_key = _api_key(api_key_env, api_key_file, host)

    import uvicorn

    from ..server import create_app

    where = db or default_db()
    web = create_app(where, api_key=api_key, allowed_hosts=[host, *allow_host], allowed_origins=allow_origin)
    err_console.print(f"serving {where} on http://{host}:{port} (docs at /docs)", highlight=False)
    uvicorn.run(
        web,
        host=host,
        port=port,
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        limit_concurrency=MAX_CONNECTIONS,
    )
