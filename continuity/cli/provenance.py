"""``continuity consent grant|revoke NAME --by WHO [--document FILE]`` and ``continuity audit ENTITY``."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import DbOption, JsonOption, LibraryOption, console, err_console, handle_errors, open_library, print_json

consent_app = typer.Typer(
    help="Record consent given or withdrawn, with its evidence (who, when, a document's sha256).",
    no_args_is_help=True,
)
ByOption = typer.Option(..., "--by", help="Who records it (the person, their agent, the rights desk).")
DocumentOption = typer.Option(None, "--document", help="The signed release or withdrawal; its sha256 is kept.")


def _record(name: str, granted: bool, by: str, document: Path | None, db: str | None, library: str) -> None:
    from memstore.consent_log import ConsentLog
    from memstore.errors import InvalidInputError

    from ..provenance import file_sha256

    if document is not None and not document.is_file():
        raise InvalidInputError(f"document {str(document)!r} does not exist; give the file of the release")
    digest = file_sha256(document) if document is not None else None
    event = ConsentLog(open_library(db, library)).record(name, granted, by, document_sha256=digest)
    what = "granted" if granted else "withdrawn: new generation with it is refused from now on"
    err_console.print(f"consent of {event.entity_name!r} {what} (by {event.by}, {event.at.isoformat()})")


@consent_app.command("grant")
@handle_errors
def grant(
    name: str = typer.Argument(..., help="Entity name, alias or id."),
    by: str = ByOption,
    document: Path | None = DocumentOption,
    db: str | None = DbOption,
    library: str = LibraryOption,
) -> None:
    """Record that consent was given (the entity may be generated)."""
    _record(name, True, by, document, db, library)


@consent_app.command("revoke")
@handle_errors
def revoke(
    name: str = typer.Argument(..., help="Entity name, alias or id."),
    by: str = ByOption,
    document: Path | None = DocumentOption,
    db: str | None = DbOption,
    library: str = LibraryOption,
) -> None:
    """Record that consent was withdrawn: new generation with the entity is refused at once."""
    _record(name, False, by, document, db, library)


@handle_errors
def audit(
    entity: str = typer.Argument(..., help="Entity name, alias or id."),
    db: str | None = DbOption,
    library: str = LibraryOption,
    as_json: bool = JsonOption,
) -> None:
    """Every shot and output file that used an entity, with watermark ids, and its consent history."""
    from ..provenance.audit import audit_entity

    report = audit_entity(open_library(db, library), entity)
    if as_json:
        print_json(report)
        return
    e = report["entity"]
    console.print(f"{e['name']} ({e['id']}, {e['kind']}): consent {report['consent']}", highlight=False)
    for event in report["consent_events"]:
        word = "granted" if event["granted"] else "withdrawn"
        doc = f", document sha256 {event['document_sha256']}" if event["document_sha256"] else ""
        console.print(f"  {event['at']}: {word} by {event['by']}{doc}", highlight=False)
    console.print(f"{len(report['shots'])} shot(s) used it:", highlight=False)
    for s in report["shots"]:
        console.print(f"  story {s['story_id']} shot {s['shot_index']}, watermark {s['watermark']}", highlight=False)
        for f in s["outputs"]:
            console.print(f"    {f}", highlight=False)
