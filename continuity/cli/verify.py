"""``continuity verify FILE [--json]``: where a file came from (content credentials and watermark).

Exit status: 0 the file's content credentials are valid; 1 they were tampered with (a signature or
content hash fails); 2 unknown (no credentials: the watermark, when found, still names the shot).
"""

from __future__ import annotations

from pathlib import Path

import typer

from .common import DbOption, JsonOption, console, handle_errors, print_json

STATUS_WORDS = {
    "valid": "[green]valid[/] content credentials",
    "tampered": "[red]tampered[/]: the content credentials do not match the file",
    "unknown": "[yellow]unknown[/]: no content credentials",
}


@handle_errors
def verify(
    file: Path = typer.Argument(..., help="An MP4 or image (JPEG, PNG) to check."),
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Check a file's C2PA content credentials and watermark; name the store, story, shot, entities
    and consent it came from. Exit status 0 valid, 1 tampered, 2 unknown."""
    from memstore.errors import ContinuityError
    from memstore.store import Store

    from ..provenance.verify import verify_file

    try:
        store = Store.open(db)
    except ContinuityError:
        store = None  # no store here: the file's own credentials still say where it came from
    result = verify_file(file, store)
    if as_json:
        print_json(result.to_json())
    else:
        _print(result)
    raise typer.Exit(result.exit_code)


def _print(result: object) -> None:
    from ..provenance.credentials import SHOT_ASSERTION, STORY_ASSERTION
    from ..provenance.verify import Verification

    assert isinstance(result, Verification)
    creds = result.credentials
    console.print(f"{result.path}: {STATUS_WORDS[result.status]}", highlight=False)
    for failure in creds.failures:
        console.print(f"  {failure}", highlight=False)
    if creds.signer:
        trust = "trusted" if creds.trusted else "not in CONTINUITY_TRUST_ANCHORS"
        console.print(f"  signed by {creds.signer.get('common_name')} ({creds.signer.get('issuer')}; {trust})")
    shot = creds.assertion(SHOT_ASSERTION)
    if shot:
        console.print(
            f"  claims: store {shot.get('store')}, library {shot.get('library')}, story {shot.get('story_id')},"
            f" shot {shot.get('shot_index')}, generator {shot.get('generator')}, seed {shot.get('seed')}",
            highlight=False,
        )
        for b in shot.get("blueprints", []):
            console.print(f"    {b.get('name')} ({b.get('entity_id')}): consent {b.get('consent')}", highlight=False)
    story = creds.assertion(STORY_ASSERTION)
    if story:
        console.print(
            f"  claims: story {story.get('story_id')}, {len(story.get('shots', []))} shot(s)", highlight=False
        )
    found = ", ".join(f"{wid} ({n} frame(s))" for wid, n in result.watermarks.items()) or "none found"
    console.print(f"  watermark: {found}", highlight=False)
    for s in result.shots:
        console.print(
            f"  from store {s['store']}, library {s['library']}, story {s['story_id']}, shot {s['shot_index']}",
            highlight=False,
        )
        for e in s["entities"]:
            state = "removed" if e["removed"] else f"consent now {e['consent_now']}"
            console.print(f"    {e['name']} ({e['entity_id']}): {state}", highlight=False)
