"""Shared pieces of the command line: options, store opening, error handling, printing."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from memstore.errors import ContinuityError

if TYPE_CHECKING:  # the store and rich's progress load only when a command runs
    from rich.progress import Progress

    from memstore.library import Library
    from memstore.store import Store

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

DbOption = typer.Option(
    None, "--db", envvar="CONTINUITY_DB", help="Store folder or LanceDB URI (default ./continuity-db)."
)
LibraryOption = typer.Option("default", "--library", "-l", help="Library (namespace) inside the store.")
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn every expected error into one line on stderr and exit code 1 (2 for bad usage)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except ContinuityError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            fail("interrupted; finished work is kept, unfinished work was not written", 130)
        except MemoryError:
            fail("out of memory; finished work is kept; free memory or work on fewer or smaller images at once")
        except subprocess.CalledProcessError as exc:
            command = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd or []))
            fail(f"the command {command[:120]!r} failed with exit code {exc.returncode}; see its output above")
        except OSError as exc:  # a disk that is full, a folder that is not writable, a path that is a folder
            fail(os_error_line(exc))

    return wrapper


def os_error_line(exc: OSError) -> str:
    """One line for an OS error: the typed store error where it is one (disk full, read-only),
    else what failed on which path."""
    from memstore.errors import first_line, store_error_of

    where = exc.filename if getattr(exc, "filename", None) else "the store"
    typed = store_error_of(exc, str(where))
    if typed is not None:
        return str(typed)
    if exc.strerror:
        return f"{exc.strerror}: {where}" if exc.filename else f"{exc.strerror}"
    return first_line(exc)


def open_store(db: str | None, create: bool = False) -> Store:
    from memstore.store import Store

    return Store.open(db, create=create)


def open_library(db: str | None, library: str, create: bool = False) -> Library:
    """The CLI opens existing stores only, unless a command creates one (``create``)."""
    from memstore import open_library as open_memstore_library

    return open_memstore_library(db, library, create=create)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def progress_bar(total: int, description: str) -> Progress:
    """A rich progress bar, or a silent one when the output is not a terminal.

    ``total`` and ``description`` are the caller's task, which it adds itself with ``add_task``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
