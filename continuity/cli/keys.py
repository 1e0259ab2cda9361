"""``continuity keys create | list | revoke``: per-library API keys of the HTTP server (see :mod:`memstore.keys`)."""

from __future__ import annotations

import typer

from .common import DbOption, JsonOption, console, err_console, handle_errors, open_store, print_json

keys_app = typer.Typer(
    help="Per-library API keys for 'continuity serve' (scopes: read < write < admin).", no_args_is_help=True
)


@keys_app.command("create")
@handle_errors
def create(
    library: str = typer.Option(..., "--library", "-l", help="The one library the key reaches."),
    scope: str = typer.Option(
        "read", "--scope", help="read (list, show, images, query) | write (+ register, add, remove) | admin (+ export)."
    ),
    db: str | None = DbOption,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    from memstore.keys import KeyRing

    new = KeyRing(open_store(db)).create(library, scope)
    err_console.print(
        f"key {new.record.id} for library {new.record.library!r}, scope {new.record.scope}; it is shown only now:",
        highlight=False,
    )
    typer.echo(new.key)


@keys_app.command("list")
@handle_errors
def list_keys(
    library: str | None = typer.Option(None, "--library", "-l", help="Only the keys of this library."),
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Every key's id, library, scope, created and revoked time (never the key)."""
    from memstore.keys import KeyRing

    rows = [k.to_json() for k in KeyRing(open_store(db)).list(library)]
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("id", "library", "scope", "created", "revoked")
    for row in rows:
        table.add_row(*(str(row[c] or "") for c in ("id", "library", "scope", "created", "revoked")))
    console.print(table)


@keys_app.command("revoke")
@handle_errors
def revoke(
    key_id: str = typer.Argument(..., metavar="ID", help="The key's id from 'keys list'."), db: str | None = DbOption
) -> None:
    """Revoke a key: a running server refuses it from its next request on."""
    from memstore.keys import KeyRing

    record = KeyRing(open_store(db)).revoke(key_id)
    err_console.print(f"revoked key {record.id} of library {record.library!r}", highlight=False)
