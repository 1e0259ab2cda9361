"""Store and library commands: init, register, add-image, list, show, rename, remove, export,
import, import-folder, libraries. Registered onto the main app by :mod:`continuity.cli`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from memstore.sheets import SheetImages, sheet_images
from memstore.validation import MAX_DESCRIPTION_LENGTH, VIEWS

from .common import (
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

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@handle_errors
def init(db: str | None = DbOption) -> None:
    """Create a store (or check an existing one)."""
    from memstore.store import Store

    store = Store.init(db)
    console.print(f"store ready at [bold]{store.uri}[/]")


ViewOption = typer.Option(None, "--view", help=f"The view the images show: {', '.join(VIEWS)}.")
SheetOption = typer.Option(None, "--sheet", help="A turnaround sheet: one image, several views side by side.")
SheetViewsOption = typer.Option(None, "--views", help="The sheet's views left to right, e.g. front,profile,back.")
SheetRowsOption = typer.Option(1, "--sheet-rows", min=1, help="Rows of poses on the sheet.")


@handle_errors
def register(
    name: str = typer.Argument(..., help="Entity name, unique in its library."),
    kind: str = typer.Option(..., "--kind", "-k", help="character | location | prop | style"),
    image: list[Path] = typer.Option([], "--image", "-i", help="Reference image (repeatable)."),
    alias: list[str] = typer.Option([], "--alias", "-a", help="Another name (repeatable)."),
    description: str = typer.Option("", "--description", "-d"),
    tag: list[str] = typer.Option([], "--tag", "-t"),
    era: str = typer.Option("default", "--era", help="Version label of these images, e.g. 'armored'."),
    view: str | None = ViewOption,
    sheet: Path | None = SheetOption,
    sheet_views: str | None = SheetViewsOption,
    sheet_rows: int = SheetRowsOption,
    library: str = LibraryOption,
    rights_owner: str | None = typer.Option(None, "--rights-owner"),
    license: str | None = typer.Option(None, "--license"),
    consent: str | None = typer.Option(None, "--consent", help="yes | no"),
    expires: str | None = typer.Option(None, "--rights-expires", help="ISO date after which use is refused."),
    db: str | None = DbOption,
) -> None:
    """Register an entity with reference images; nothing is written if any image is bad."""
    if consent not in (None, "yes", "no"):
        fail(f"--consent must be 'yes' or 'no', got {consent!r}", 2)
    rights = {
        "owner": rights_owner,
        "license": license,
        "consent": None if consent is None else consent == "yes",
        "expires": expires,
    }
    inputs = _image_inputs(image, view, sheet, sheet_views, sheet_rows)
    lib = open_library(db, library, create=True)
    with progress_bar(len(inputs.images), "embedding") as bar:
        task = bar.add_task(f"embedding {name}", total=len(inputs.images) * max(1, len(lib.embedders)))
        entity = lib.register(
            name,
            kind,
            images=inputs.images,
            names=inputs.names,
            views=inputs.views,
            aliases=alias,
            description=description,
            tags=tag,
            era=era,
            rights=rights,
            progress=lambda n: bar.advance(task, n),
        )
    console.print(
        f"registered {entity.kind} [bold]{entity.name}[/] ({entity.id}) with {len(inputs.images)} image(s) "
        f"in library {lib.name!r}"
    )


@handle_errors
def add_image(
    name: str = typer.Argument(...),
    paths: list[Path] = typer.Argument(None, help="Image files."),
    era: str = typer.Option("default", "--era"),
    view: str | None = ViewOption,
    sheet: Path | None = SheetOption,
    sheet_views: str | None = SheetViewsOption,
    sheet_rows: int = SheetRowsOption,
    library: str = LibraryOption,
    db: str | None = DbOption,
) -> None:
    """Add reference images (or a turnaround sheet's views) to an entity (all or none)."""
    inputs = _image_inputs(paths or [], view, sheet, sheet_views, sheet_rows)
    if not inputs.images:
        fail("give image files, or --sheet FILE --views LIST", 2)
    lib = open_library(db, library)
    before = len(lib.references(name, with_vectors=False))
    count = len(inputs.images)
    with progress_bar(count, "embedding") as bar:
        task = bar.add_task("embedding", total=count * max(1, len(lib.embedders)))
        lib.add_images(
            name,
            inputs.images,
            era=era,
            names=inputs.names,
            views=inputs.views,
            progress=lambda n: bar.advance(task, n),
        )
    added = len(lib.references(name, with_vectors=False)) - before
    console.print(f"added {added} new image(s) to [bold]{lib.get(name).name}[/] ({count - added} already stored)")


def _image_inputs(
    paths: list[Path], view: str | None, sheet: Path | None, sheet_views: str | None, rows: int
) -> SheetImages:
    """Image files (with one view label) plus a sheet's panels, for one all-or-nothing write."""
    files = SheetImages([str(p) for p in paths], [None] * len(paths), [view] * len(paths))
    if sheet is None:
        if sheet_views:
            fail("--views labels the panels of a --sheet; give --sheet FILE too", 2)
        return files
    if not sheet_views:
        fail("--sheet needs --views, its views left to right (e.g. front,three-quarter,profile,back)", 2)
    return files + sheet_images(str(sheet), sheet_views.split(","), rows=rows)


@handle_errors
def list_entities(
    kind: str | None = typer.Option(None, "--kind", "-k"),
    tag: str | None = typer.Option(None, "--tag", "-t"),
    library: str = LibraryOption,
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """List entities of a library."""
    lib = open_library(db, library)
    entities = lib.list(kind=kind, tag=tag)
    counts: dict[str, int] = {}
    for ref in lib.references(with_vectors=False):
        counts[ref.entity_id] = counts.get(ref.entity_id, 0) + 1
    if as_json:
        print_json([{**e.to_json(), "reference_count": counts.get(e.id, 0)} for e in entities])
        return
    table = Table(title=f"library {lib.name!r}: {len(entities)} entities")
    for col in ("name", "kind", "aliases", "refs", "description"):
        table.add_column(col)
    for e in entities:
        description = (e.description[:60] + "…") if len(e.description) > 60 else e.description
        table.add_row(e.name, e.kind, ", ".join(e.aliases), str(counts.get(e.id, 0)), description)
    console.print(table)


@handle_errors
def show(
    name: str = typer.Argument(...),
    save: Path | None = typer.Option(
        None, "--save", help="Write its references and face crops into this folder, with manifest.json."
    ),
    library: str = LibraryOption,
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one entity with its references."""
    lib = open_library(db, library)
    entity = lib.get(name)
    refs = lib.references(entity)
    if save is not None:
        from .images import write_references

        write_references(lib, [(entity, refs)], save, faces=True)
    if as_json:
        print_json(entity.to_json(references=refs))
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
        table.add_row(
            ref.id[:12],
            ref.era,
            ref.source,
            f"{ref.width}x{ref.height}",
            "yes" if ref.face_box else "-",
            ", ".join(sorted(ref.vectors)),
            ref.sha256[:12],
        )
    console.print(table)


@handle_errors
def rename(
    name: str = typer.Argument(...),
    new_name: str = typer.Argument(...),
    library: str = LibraryOption,
    db: str | None = DbOption,
) -> None:
    """Rename an entity; the old name stays as an alias."""
    entity = open_library(db, library).rename(name, new_name)
    console.print(f"renamed to [bold]{entity.name}[/]; aliases: {', '.join(entity.aliases)}")


@handle_errors
def remove(
    name: str = typer.Argument(...),
    library: str = LibraryOption,
    db: str | None = DbOption,
) -> None:
    """Remove an entity with its references and cached tokens."""
    entity = open_library(db, library).remove(name)
    console.print(f"removed {entity.kind} [bold]{entity.name}[/]")


@handle_errors
def export_library(
    library: str = typer.Argument(..., help="Library to export."),
    out: Path = typer.Argument(..., help="Archive file to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT even if it is not a continuity archive."),
    db: str | None = DbOption,
) -> None:
    """Export one library to a single archive file (an earlier archive at OUT is replaced)."""
    lib = open_library(db, library)
    if lib.count()["entities"] == 0:
        fail(f"library {library!r} has no entities; nothing to export (see: continuity list --library {library})")
    counts = lib.export(out, force=force)
    console.print(
        f"exported {counts['entities']} entities, {counts['references']} references, {counts['tokens']} tokens to {out}"
    )


@handle_errors
def import_library(
    archive: Path = typer.Argument(..., help="Archive written by continuity export."),
    library: str | None = typer.Option(None, "--library", "-l", help="Import under this library name instead."),
    db: str | None = DbOption,
) -> None:
    """Import an exported library; refused whole if any id or name clashes."""
    from memstore.archive import import_library as import_archive

    result = import_archive(open_store(db, create=True), archive, library)
    console.print(
        f"imported {result['entities']} entities, {result['references']} references into library {result['library']!r}"
    )
    if result.get("dropped_columns"):
        console.print(
            f"dropped columns {', '.join(result['dropped_columns'])}: no configured embedder of the library writes"
            " them (configure one and run continuity reindex to fill it)"
        )


def _folder_plan(folder: Path) -> list[tuple[str, list[str], str]]:
    """(name, image paths, description) per entity subfolder, refusing a folder with none."""
    if not folder.is_dir():
        fail(f"{folder} is not a folder; give a folder with one subfolder per entity")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        fail(f"{folder} has no subfolders; put each entity's images in a subfolder named after it")
    plan = []
    for sub in subdirs:
        images = sorted(str(p) for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        plan.append((sub.name, images, _description(sub / "description.txt")))
    return plan


def _description(about: Path) -> str:
    """An entity folder's description.txt as text ('' when there is none)."""
    if not about.exists():
        return ""
    if not about.is_file():
        fail(f"{about} is not a file; make description.txt a UTF-8 text file or remove it")
    if about.stat().st_size > 4 * MAX_DESCRIPTION_LENGTH:  # the most UTF-8 bytes the limit allows
        fail(f"{about} is larger than a description may be ({MAX_DESCRIPTION_LENGTH} characters); shorten it")
    try:
        return about.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        fail(f"{about} is not UTF-8 text (byte {exc.start}); save it as UTF-8")


@handle_errors
def import_folder(
    folder: Path = typer.Argument(..., help="One subfolder per entity, images inside."),
    kind: str = typer.Option("character", "--kind", "-k"),
    era: str = typer.Option("default", "--era"),
    library: str = LibraryOption,
    db: str | None = DbOption,
) -> None:
    """Register every subfolder as an entity. All images are checked first: one bad image, nothing written."""
    plan = _folder_plan(folder)
    lib = open_library(db, library, create=True)
    total = sum(len(images) for _, images, _ in plan) * max(1, len(lib.embedders))
    prepared = []
    with progress_bar(total, "embedding") as bar:
        task = bar.add_task("checking and embedding", total=total)
        for name, images, description in plan:
            prepared.append(
                lib.prepare(
                    name, kind, images=images, description=description, era=era, progress=lambda n: bar.advance(task, n)
                )
            )
    entities = lib.commit(prepared)
    names = ", ".join(e.name for e in entities)
    console.print(f"registered {len(entities)} {kind}(s) from {folder}: {names}")


@handle_errors
def libraries(db: str | None = DbOption, as_json: bool = JsonOption) -> None:
    """List the libraries of a store."""
    names = open_store(db).libraries()
    if as_json:
        print_json(names)
    else:
        for name in names:
            console.print(name)
