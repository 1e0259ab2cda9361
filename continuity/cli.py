"""``continuity``: the command line (see DESIGN.md for the surface).

Store and library commands live here; other areas add theirs through ``register(app)`` in their
own ``cli_*`` modules so that each stays small.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from .cli_common import (
    DbOption,
    JsonOption,
    LibraryOption,
    console,
    fail,
    handle_errors,
    open_library,
    open_store,
    print_json,
    progress_bar,
)

app = typer.Typer(
    name="continuity",
    help="A memory for generative video: register blueprints, retrieve them per shot, keep stories consistent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def _entity_json(entity, refs=None) -> dict:
    data = entity.model_dump(mode="json")
    if refs is not None:
        data["references"] = [
            {
                "id": r.id, "era": r.era, "source": r.source, "width": r.width, "height": r.height,
                "sha256": r.sha256, "face_box": r.face_box, "story": r.story, "shot": r.shot,
                "frame": r.frame, "vectors": sorted(r.vectors),
            }
            for r in refs
        ]
    return data


@app.command()
@handle_errors
def init(db: Optional[str] = DbOption) -> None:
    """Create a store (or check an existing one)."""
    from memstore.store import Store

    store = Store.init(db)
    console.print(f"store ready at [bold]{store.uri}[/]")


@app.command()
@handle_errors
def register(
    name: str = typer.Argument(..., help="Entity name, unique in its library."),
    kind: str = typer.Option(..., "--kind", "-k", help="character | location | prop | style"),
    image: List[Path] = typer.Option([], "--image", "-i", help="Reference image (repeatable)."),
    alias: List[str] = typer.Option([], "--alias", "-a", help="Another name (repeatable)."),
    description: str = typer.Option("", "--description", "-d"),
    tag: List[str] = typer.Option([], "--tag", "-t"),
    era: str = typer.Option("default", "--era", help="Version label of these images, e.g. 'armored'."),
    library: str = LibraryOption,
    rights_owner: Optional[str] = typer.Option(None, "--rights-owner"),
    license: Optional[str] = typer.Option(None, "--license"),
    consent: Optional[str] = typer.Option(None, "--consent", help="yes | no"),
    expires: Optional[str] = typer.Option(None, "--rights-expires", help="ISO date after which use is refused."),
    db: Optional[str] = DbOption,
) -> None:
    """Register an entity with reference images; nothing is written if any image is bad."""
    if consent not in (None, "yes", "no"):
        fail(f"--consent must be 'yes' or 'no', got {consent!r}", 2)
    rights = {"owner": rights_owner, "license": license, "consent": None if consent is None else consent == "yes", "expires": expires}
    lib = open_library(db, library, create=True)
    with progress_bar(len(image), "embedding") as bar:
        task = bar.add_task(f"embedding {name}", total=len(image) * max(1, len(lib.embedders)))
        entity = lib.register(
            name, kind, images=[str(p) for p in image], aliases=alias, description=description,
            tags=tag, era=era, rights=rights, progress=lambda n: bar.advance(task, n),
        )
    console.print(f"registered {entity.kind} [bold]{entity.name}[/] ({entity.id}) with {len(image)} image(s) in library {lib.name!r}")


@app.command("add-image")
@handle_errors
def add_image(
    name: str = typer.Argument(...),
    paths: List[Path] = typer.Argument(..., help="Image files."),
    era: str = typer.Option("default", "--era"),
    library: str = LibraryOption,
    db: Optional[str] = DbOption,
) -> None:
    """Add reference images to an entity (all or none)."""
    lib = open_library(db, library)
    before = len(lib.references(name, with_vectors=False))
    with progress_bar(len(paths), "embedding") as bar:
        task = bar.add_task("embedding", total=len(paths) * max(1, len(lib.embedders)))
        lib.add_images(name, [str(p) for p in paths], era=era, progress=lambda n: bar.advance(task, n))
    after = len(lib.references(name, with_vectors=False))
    console.print(f"added {after - before} new image(s) to [bold]{lib.get(name).name}[/] ({len(paths) - (after - before)} already stored)")


@app.command("list")
@handle_errors
def list_(
    kind: Optional[str] = typer.Option(None, "--kind", "-k"),
    tag: Optional[str] = typer.Option(None, "--tag", "-t"),
    library: str = LibraryOption,
    db: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """List entities of a library."""
    lib = open_library(db, library)
    entities = lib.list(kind=kind, tag=tag)
    counts: dict[str, int] = {}
    for ref in lib.references(with_vectors=False):
        counts[ref.entity_id] = counts.get(ref.entity_id, 0) + 1
    if as_json:
        print_json([{**_entity_json(e), "reference_count": counts.get(e.id, 0)} for e in entities])
        return
    table = Table(title=f"library {lib.name!r}: {len(entities)} entities")
    for col in ("name", "kind", "aliases", "refs", "description"):
        table.add_column(col)
    for e in entities:
        table.add_row(e.name, e.kind, ", ".join(e.aliases), str(counts.get(e.id, 0)), (e.description[:60] + "…") if len(e.description) > 60 else e.description)
    console.print(table)


@app.command()
@handle_errors
def show(
    name: str = typer.Argument(...),
    library: str = LibraryOption,
    db: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one entity with its references."""
    lib = open_library(db, library)
    entity = lib.get(name)
    refs = lib.references(entity)
    if as_json:
        print_json(_entity_json(entity, refs))
        return
    console.print(f"[bold]{entity.name}[/] ({entity.kind}, id {entity.id}, library {entity.library})")
    if entity.aliases:
        console.print(f"aliases: {', '.join(entity.aliases)}")
    if entity.description:
        console.print(f"description: {entity.description}")
    if entity.tags:
        console.print(f"tags: {', '.join(entity.tags)}")
    r = entity.rights
    console.print(f"rights: owner={r.owner} license={r.license} consent={r.consent} expires={r.expires}")
    table = Table(title=f"{len(refs)} reference(s)")
    for col in ("id", "era", "source", "size", "face", "vectors", "sha256"):
        table.add_column(col)
    for ref in refs:
        table.add_row(ref.id[:12], ref.era, ref.source, f"{ref.width}x{ref.height}", "yes" if ref.face_box else "-", ", ".join(sorted(ref.vectors)), ref.sha256[:12])
    console.print(table)


@app.command()
@handle_errors
def rename(
    name: str = typer.Argument(...),
    new_name: str = typer.Argument(...),
    library: str = LibraryOption,
    db: Optional[str] = DbOption,
) -> None:
    """Rename an entity; the old name stays as an alias."""
    entity = open_library(db, library).rename(name, new_name)
    console.print(f"renamed to [bold]{entity.name}[/]; aliases: {', '.join(entity.aliases)}")


@app.command()
@handle_errors
def remove(
    name: str = typer.Argument(...),
    library: str = LibraryOption,
    db: Optional[str] = DbOption,
) -> None:
    """Remove an entity with its references and cached tokens."""
    entity = open_library(db, library).remove(name)
    console.print(f"removed {entity.kind} [bold]{entity.name}[/]")


@app.command("export")
@handle_errors
def export_(
    library: str = typer.Argument(..., help="Library to export."),
    out: Path = typer.Argument(..., help="Archive file to write."),
    db: Optional[str] = DbOption,
) -> None:
    """Export one library to a single archive file."""
    lib = open_library(db, library)
    if lib.count()["entities"] == 0:
        fail(f"library {library!r} has no entities; nothing to export (see: continuity list --library {library})")
    counts = lib.export(out)
    console.print(f"exported {counts['entities']} entities, {counts['references']} references, {counts['tokens']} tokens to {out}")


@app.command("import")
@handle_errors
def import_(
    archive: Path = typer.Argument(..., help="Archive written by continuity export."),
    library: Optional[str] = typer.Option(None, "--library", "-l", help="Import under this library name instead."),
    db: Optional[str] = DbOption,
) -> None:
    """Import an exported library; refused whole if any id or name clashes."""
    from memstore.archive import import_library

    result = import_library(open_store(db, create=True), archive, library)
    console.print(f"imported {result['entities']} entities, {result['references']} references into library {result['library']!r}")


@app.command("import-folder")
@handle_errors
def import_folder(
    folder: Path = typer.Argument(..., help="One subfolder per entity, images inside."),
    kind: str = typer.Option("character", "--kind", "-k"),
    era: str = typer.Option("default", "--era"),
    library: str = LibraryOption,
    db: Optional[str] = DbOption,
) -> None:
    """Register every subfolder as an entity. All images are checked first: one bad image and nothing is written."""
    if not folder.is_dir():
        fail(f"{folder} is not a folder; give a folder with one subfolder per entity")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        fail(f"{folder} has no subfolders; put each entity's images in a subfolder named after it")
    lib = open_library(db, library, create=True)
    plan = []
    for sub in subdirs:
        images = sorted(str(p) for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        description = (sub / "description.txt").read_text().strip() if (sub / "description.txt").exists() else ""
        plan.append((sub.name, images, description))
    total = sum(len(images) for _, images, _ in plan) * max(1, len(lib.embedders))
    prepared = []
    with progress_bar(total, "embedding") as bar:
        task = bar.add_task("checking and embedding", total=total)
        for name, images, description in plan:
            prepared.append(lib.prepare(name, kind, images=images, description=description, era=era, progress=lambda n: bar.advance(task, n)))
    entities = lib.commit(prepared)
    console.print(f"registered {len(entities)} {kind}(s) from {folder}: {', '.join(e.name for e in entities)}")


@app.command()
@handle_errors
def libraries(db: Optional[str] = DbOption, as_json: bool = JsonOption) -> None:
    """List the libraries of a store."""
    names = open_store(db).libraries()
    if as_json:
        print_json(names)
    else:
        for name in names:
            console.print(name)


# Other areas register their commands here (query, story, demo, serve, reindex, ...).
for _module in ("cli_embed", "cli_query", "cli_story", "cli_serve"):
    try:
        _mod = importlib.import_module(f"{__package__}.{_module}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__package__}.{_module}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
