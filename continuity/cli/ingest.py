"""``continuity ingest``: a folder of entity subfolders, embedded on Ray, committed per entity."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from .common import DbOption, JsonOption, LibraryOption, console, handle_errors, open_library, print_json, progress_bar

if TYPE_CHECKING:  # Ray and the ingest package load only when the command runs
    from continuity.ingest import IngestSummary


@handle_errors
def ingest(
    folder: Path = typer.Argument(..., help="One subfolder per entity, images inside (as for import-folder)."),
    ray_address: str | None = typer.Option(
        None, "--ray", help="Ray cluster address (ray://host:10001, host:6379 or auto); default: a local cluster."
    ),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Embedder workers (one model load each)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per embedding batch."),
    kind: str = typer.Option("character", "--kind", "-k"),
    era: str = typer.Option("default", "--era"),
    library: str = LibraryOption,
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Register every subfolder as an entity, embedding on Ray. Each entity lands whole or fails alone
    with its reason; a re-run skips entities that landed."""
    from continuity.ingest import ingest_folder

    lib = open_library(db, library, create=True)
    with progress_bar(0, "embedding") as bar:
        task = bar.add_task("reading, checking and embedding", total=None)
        summary = ingest_folder(
            lib,
            folder,
            kind=kind,
            era=era,
            ray_address=ray_address,
            workers=workers,
            batch_size=batch_size,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if as_json:
        print_json(summary.to_json())
    else:
        _print_summary(summary)
    if summary.failed:
        raise typer.Exit(1)


def _print_summary(summary: IngestSummary) -> None:
    """A table of every entity, then each failure's reason on a line of its own (unwrapped, greppable)."""
    table = Table(title=f"ingest of {summary.folder} into library {summary.library!r}")
    for column in ("entity", "result", "images"):
        table.add_column(column)
    for outcome in summary.outcomes:
        table.add_row(outcome.name, outcome.status, str(outcome.images))
    console.print(table)
    for outcome in summary.failed:
        console.print(f"failed {outcome.name}: {outcome.reason}", soft_wrap=True, highlight=False, markup=False)
    console.print(
        f"{len(summary.landed)} landed, {len(summary.skipped)} skipped, {len(summary.failed)} failed;"
        f" {summary.images_processed} images in {summary.seconds:.1f} s on {summary.cluster}"
        f" with {summary.workers} worker(s)",
        soft_wrap=True,
    )
