"""ShotLog: the ``shots`` table, the story loop's record of finished shots.

A record is written last for its shot (after its keyframes and files), so a shot with a record is
finished; a rerun compares the record's ``input_hash`` with the shot's to resume or regenerate.
Every read and delete is scoped to one library, like every other table of the store.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import InvalidInputError
from .schema import ShotRecord
from .validation import clean_text, sql_str

if TYPE_CHECKING:
    from .library import Library
    from .store import Store

_WATERMARK_RE = re.compile(r"^[0-9a-f]{8}$")


def _watermark_clause(watermark: str) -> str:
    """A filter on the provenance JSON's ``"watermark": "<id>"`` (the manifest is written with
    ``indent=2``, so the key and value are separated by one space)."""
    wid = watermark.strip().lower() if isinstance(watermark, str) else ""
    if not _WATERMARK_RE.match(wid):
        raise InvalidInputError(f"a watermark id is 8 hex digits (e.g. 1f0c9a2b), got {str(watermark)[:40]!r}")
    return f'provenance LIKE \'%"watermark": "{wid}"%\''


def shots_with_watermark(store: Store, watermark: str) -> list[ShotRecord]:
    """Every shot record of any library of ``store`` whose frames carry ``watermark`` (usually one;
    a 32-bit id can collide across very large stores, so all matches are returned)."""
    rows = store.shots.search().where(_watermark_clause(watermark)).limit(None).to_list()
    return sorted((ShotRecord.from_row(r) for r in rows), key=lambda r: (r.library, r.story_id, r.shot_index))


class ShotLog:
    """Finished shots of one library's story runs."""

    def __init__(self, library: Library):
        self.library = library
        self.store = library.store

    def _where(self, story_id: str, *clauses: str) -> str:
        return " AND ".join(
            [
                f"library = {sql_str(self.library.name)}",
                f"story_id = {sql_str(clean_text(story_id, 'story id'))}",
                *clauses,
            ]
        )

    def hashes(self, story_id: str) -> dict[int, str]:
        """Shot index -> the input hash it was made with, for every finished shot of a story."""
        rows = (
            self.store.shots.search()
            .where(self._where(story_id))
            .select(["shot_index", "input_hash"])
            .limit(None)
            .to_list()
        )
        return {int(r["shot_index"]): r["input_hash"] for r in rows}

    def records(self, story_id: str) -> list[ShotRecord]:
        """Every finished shot of a story, in shot order."""
        rows = self.store.shots.search().where(self._where(story_id)).limit(None).to_list()
        return sorted((ShotRecord.from_row(r) for r in rows), key=lambda r: r.shot_index)

    def get(self, story_id: str, index: int) -> ShotRecord | None:
        rows = self.store.shots.search().where(self._where(story_id, f"shot_index = {int(index)}")).limit(1).to_list()
        return ShotRecord.from_row(rows[0]) if rows else None

    def find_watermark(self, watermark: str) -> list[ShotRecord]:
        """This library's shots whose frames carry ``watermark`` (8 hex digits)."""
        clause = f"library = {sql_str(self.library.name)} AND {_watermark_clause(watermark)}"
        rows = self.store.shots.search().where(clause).limit(None).to_list()
        return sorted((ShotRecord.from_row(r) for r in rows), key=lambda r: (r.story_id, r.shot_index))

    def using(self, entity_id: str) -> list[ShotRecord]:
        """Every finished shot of any story of this library that retrieved ``entity_id``."""
        clause = f"library = {sql_str(self.library.name)} AND array_has_any(retrieved, [{sql_str(entity_id)}])"
        rows = self.store.shots.search().where(clause).limit(None).to_list()
        return sorted((ShotRecord.from_row(r) for r in rows), key=lambda r: (r.story_id, r.shot_index))

    def stories(self) -> list[str]:
        """Ids of the stories this library has finished shots of."""
        table = self.store.shots.to_lance().to_table(
            columns=["story_id"], filter=f"library = {sql_str(self.library.name)}"
        )
        return sorted(set(table.column("story_id").to_pylist()))

    def add(self, record: ShotRecord) -> None:
        """Record a finished shot (one commit)."""
        if record.library != self.library.name:
            raise ValueError(f"record of library {record.library!r} given to the shot log of {self.library.name!r}")
        row = record.model_dump()
        with self.store.write_lock():
            self.store.retry(lambda: self.store.shots.add([row]))
            self.store.maybe_compact("shots")

    def forget(self, story_id: str, index: int | None = None) -> None:
        """Drop the record of one shot (or of every shot of the story)."""
        clauses = [f"shot_index = {int(index)}"] if index is not None else []
        with self.store.write_lock():
            self.store.retry(lambda: self.store.shots.delete(self._where(story_id, *clauses)))
