"""``continuity query``: what would this shot retrieve, and why."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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
)

if TYPE_CHECKING:  # retrieval and the store load only when the command runs
    from memstore.image_search import ImageMatch
    from memstore.library import Library
    from retrieval import RetrievalResult, Retriever, ShotQuery, StoryContext


def _replay(retriever: Retriever, story_path: Path, shot: int, prompt: str | None) -> tuple[ShotQuery, StoryContext]:
    """Replay the story's context up to shot ``shot`` (1-based, global) and return its query and context."""
    from retrieval import ShotQuery, StoryContext

    from ..story import load_story

    script = load_story(story_path)
    if not 1 <= shot <= script.num_shots:
        fail(f"--shot {shot} is out of range; the story has shots 1 to {script.num_shots}")
    context = StoryContext()
    for index, scene, item in script.iter_shots():
        query = ShotQuery(
            prompt=item.prompt if (index + 1 != shot or not prompt) else prompt,
            story_id=script.id,
            shot_index=index,
            cut=item.cut,
            cast=tuple(item.cast) if item.cast else None,
            location=item.location or scene.location,
        )
        if index + 1 == shot:
            return query, context
        context.update(retriever.retrieve(query, context))
    raise AssertionError("unreachable: shot was range-checked")


def _image_matches(library: Library, image: Path, k: int) -> dict[str, list[ImageMatch]]:
    from memstore.image_search import search_by_image

    if not image.is_file():
        fail(f"--image {image} is not a file; give the path of an image")
    return search_by_image(library, str(image), k)


@handle_errors
def query(
    prompt: str | None = typer.Argument(None, help="The shot prompt (with --story: overrides that shot's prompt)."),
    story: Path | None = typer.Option(None, "--story", help="Story script; replays its context up to --shot."),
    shot: int | None = typer.Option(None, "--shot", help="1-based shot number in the story (with --story)."),
    k: int = typer.Option(8, "--k", help="At most this many entities."),
    references: int = typer.Option(2, "--references", help="References per entity."),
    era: str | None = typer.Option(None, "--era", help="Version label of the references to prefer."),
    image: Path | None = typer.Option(None, "--image", help="Also search by this image."),
    save: Path | None = typer.Option(
        None, "--save", help="Write the retrieved references and face crops into this folder, with manifest.json."
    ),
    library: str = LibraryOption,
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Show which blueprints a shot prompt retrieves, with scores and reasons."""
    from retrieval import Retriever, ShotQuery

    if k <= 0:
        fail(f"--k must be positive, got {k}")
    if (story is None) != (shot is None):
        fail("--story and --shot go together; give both or neither")
    if story is None and not prompt and image is None:
        fail("give a PROMPT, or --story FILE --shot N, or --image PATH")
    lib = open_library(db, library)
    retriever = Retriever(lib)
    result = None
    if story is not None and shot is not None:
        base, context = _replay(retriever, story, shot, prompt)
        q = ShotQuery(
            prompt=base.prompt,
            story_id=base.story_id,
            shot_index=base.shot_index,
            cut=base.cut,
            cast=base.cast,
            location=base.location,
            k=k,
            references_per_entity=references,
            era=era,
        )
        result = retriever.retrieve(q, context)
    elif prompt:
        result = retriever.retrieve(ShotQuery(prompt=prompt, k=k, references_per_entity=references, era=era))
    matches = _image_matches(lib, image, k) if image is not None else None
    if save is not None and result is not None:
        from .images import save_hits

        save_hits(lib, result.hits, save)
    if as_json:
        data: dict[str, Any] = result.to_json() if result is not None else {}
        if matches is not None:
            data["image_matches"] = {col: [m.to_json() for m in ms] for col, ms in matches.items()}
        print_json(data)
        return
    if result is not None:
        _print_result(result)
    if matches is not None:
        _print_matches(matches)


def _print_result(result: RetrievalResult) -> None:
    table = Table(title=f"shot: {result.query.prompt[:80]}", show_lines=False)
    for col in ("#", "name", "kind", "score", "reasons", "references"):
        table.add_column(col, overflow="fold")
    for i, hit in enumerate(result.hits, 1):
        refs = ", ".join(f"{r.id[:8]} ({r.era}, {r.source})" for r in hit.references) or "-"
        table.add_row(str(i), hit.name, hit.kind, f"{hit.score:.3f}", "; ".join(hit.reasons), refs)
    if not result.hits:
        console.print("nothing retrieved: no registered name, alias or description matches this shot")
    else:
        console.print(table)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


def _print_matches(matches: dict[str, list[ImageMatch]]) -> None:
    for column, items in matches.items():
        table = Table(title=f"image matches ({column})")
        for col in ("#", "name", "kind", "score", "reference"):
            table.add_column(col, overflow="fold")
        for i, m in enumerate(items, 1):
            table.add_row(str(i), m.name, m.kind, f"{m.score:.3f}", m.reference_id[:8])
        console.print(table)
