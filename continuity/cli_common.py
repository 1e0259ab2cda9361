"""Shared pieces of the command line: options, store opening, error handling, printing."""
from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, Optional

import typer
from rich.console import Console

from memstore.errors import ContinuityError

console = Console()
err_console = Console(stderr=True)

DbOption = typer.Option(None, "--db", envvar="CONTINUITY_DB", help="Store folder or LanceDB URI (default ./continuity-db).")
LibraryOption = typer.Option("default", "--library", "-l", help="Library (namespace) inside the store.")
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every expected error into one line on stderr and exit code 1 (2 for bad usage)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except ContinuityError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            fail("interrupted; finished work is kept, unfinished work was not written", 130)

    return wrapper


def open_store(db: Optional[str], create: bool = False):
    from memstore.store import Store

    return Store.open(db, create=create)


def open_library(db: Optional[str], library: str, create: bool = False):
    from memstore.library import Library

    store = open_store(db, create=create)
    return Library(store, library)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def progress_bar(total: int, description: str):
    """A rich progress bar, or a silent one when the output is not a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    )
