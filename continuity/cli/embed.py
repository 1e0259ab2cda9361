"""``continuity embedders`` / ``configure`` / ``reindex``: which embedders index a library."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from .common import (
    DbOption,
    JsonOption,
    LibraryOption,
    console,
    fail,
    handle_errors,
    open_library,
    print_json,
    progress_bar,
)

EmbedderHelp = 'An embedder name (e.g. dlib) or a JSON config, e.g. \'{"type": "open-clip", "model": "ViT-B-32"}\'.'


def parse_embedder(text: str) -> str | dict[str, Any]:
    """A name or a JSON object with a "type"."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            fail(f"--embedder is not valid JSON ({exc.msg} at column {exc.colno}); give a name or a JSON object", 2)
        if not isinstance(value, dict) or "type" not in value:
            fail(f'--embedder JSON must be an object with a "type", got {text!r}', 2)
        return value
    if not text:
        fail("--embedder is empty; give a name such as dlib or a JSON config", 2)
    return text


@handle_errors
def embedders(
    library: str | None = typer.Option(None, "--library", "-l", help="Also show what this library uses."),
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """List the embedders this installation knows (and, with --library, those configured)."""
    from memstore.embedders import embedder_class, list_embedders

    names = list_embedders()
    configured: list[dict[str, Any]] = []
    if library is not None:
        lib = open_library(db, library)
        configured = [{**e.to_config(), "column": e.column_name} for e in lib.embedders]
    if as_json:
        registered = [{"name": n, "modality": embedder_class(n).modality} for n in names]
        data: dict[str, Any] = {"registered": registered}
        if library is not None:
            data["configured"] = configured
        print_json(data)
        return
    table = Table(title="registered embedders")
    table.add_column("name")
    table.add_column("modality")
    table.add_column("about", overflow="fold")
    for n in names:
        cls = embedder_class(n)
        doc = (cls.__doc__ or "").strip().splitlines()
        table.add_row(n, cls.modality, doc[0] if doc else "")
    console.print(table)
    for cfg in configured:
        column = cfg.pop("column")
        console.print(f"configured: column [bold]{column}[/] <- {json.dumps(cfg)}", highlight=False)


@handle_errors
def configure(
    embedder: list[str] = typer.Option(
        [], "--embedder", "-e", help=EmbedderHelp + " Repeat for several; replaces the list."
    ),
    index_factory: str | None = typer.Option(
        None,
        "--index-factory",
        help="FAISS factory: auto (by size: Flat, PQ<d/4>x4fs,RFlat above 50k rows, IVF above 2M), "
        "Flat, HNSW32,Flat, IVF1024,Flat or PQ128x4fs,RFlat.",
    ),
    library: str = LibraryOption,
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Set which embedders index a library (and its FAISS factory); run reindex afterwards."""
    if not embedder and index_factory is None:
        fail("nothing to configure; give --embedder and/or --index-factory", 2)
    lib = open_library(db, library, create=True)
    configs = None
    if embedder:
        from memstore.embedders import get_embedder
        from memstore.embedders.reindex import load_model

        configs = [get_embedder(parse_embedder(e)) for e in embedder]
        for emb in configs:
            load_model(emb)  # refuse weights that are missing before anything is written
    lib.configure(embedders=configs, index_factory=index_factory)
    config = lib.config
    if as_json:
        print_json(config)
        return
    console.print(
        f"library {lib.name!r}: embedders {[e.column_name for e in lib.embedders]}, "
        f"index {config.get('index_factory', 'auto')}",
        highlight=False,
    )


@handle_errors
def reindex(
    embedder: str | None = typer.Option(
        None, "--embedder", "-e", help=EmbedderHelp + " Added to the library when new."
    ),
    force: bool = typer.Option(False, "--force", help="Recompute vectors that exist already."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    library: str = LibraryOption,
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Compute vector columns for references stored before an embedder was configured."""
    from memstore.embedders.reindex import add_embedder, pending
    from memstore.embedders.reindex import reindex as run_reindex

    lib = open_library(db, library)
    targets = [add_embedder(lib, parse_embedder(embedder))] if embedder is not None else list(lib.embedders)
    total = sum(len(pending(lib, e, force=force)) for e in targets)
    with progress_bar(total, "embedding") as bar:
        task = bar.add_task("reindexing", total=total)
        written: dict[str, int] = {}
        for emb in targets:
            written.update(
                run_reindex(lib, emb, batch_size=batch_size, force=force, progress=lambda n: bar.advance(task, n))
            )
    if as_json:
        print_json({"library": lib.name, "written": written})
        return
    for column, count in written.items():
        console.print(f"{column}: {count} reference(s) embedded", highlight=False)
