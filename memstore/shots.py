"""ShotLog: the ``shots`` table, the story loop's record of finished shots.

A record is written last for its shot (after its keyframes and files), so a shot with a record is
finished; a rerun compares the record's ``input_hash`` with the shot's to resume or regenerate.
Every read and delete is scoped to one library, like every other table of the store.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import InvalidInputError
from .journal import FOLD_EVERY
from .schema import ShotRecord
from .validation import clean_text, sql_int_in, sql_str

if TYPE_CHECKING:
    from .library import Library
    from .store import Store

_WATERMARK_RE = re.compile(r"^[0-9a-f]{8}$")


def _watermark_text(watermark: str) -> str:
    """The provenance JSON's ``"watermark": "<id>"`` (the manifest is written with ``indent=2``, so
    the key and value are separated by one space), for a checked id."""
    wid = watermark.strip().lower() if isinstance(watermark, str) else ""
    if not _WATERMARK_RE.match(wid):
        raise InvalidInputError(f"a watermark id is 8 hex digits (e.g. 1f0c9a2b), got {str(watermark)[:40]!r}")
    return f'"watermark": "{wid}"'


def shots_with_watermark(store: Store, watermark: str) -> list[ShotRecord]:
    """Every shot record of any library of ``store`` whose frames carry ``watermark`` (usually one;
    a 32-bit id can collide across very large stores, so all matches are returned)."""
    text = _watermark_text(watermark)  # the id is checked: 8 hex digits, nothing to escape
    records = _read(store, f"provenance LIKE '%{text}%'", lambda r: text in (r.provenance or ""))
    return sorted(records, key=lambda r: (r.library, r.story_id, r.shot_index))


def _read(
    store: Store,
    where: str,
    wanted: Callable[[ShotRecord], bool],
    *,
    limit: int | None = None,
    columns: list[str] | None = None,
) -> list[ShotRecord]:
    """Records matching ``where`` in the table and ``wanted`` in the journal (``columns``: read only
    these from the table, the record's key always among them). The journal is read first: a
    concurrent fold commits the table before it clears the journal, so nothing is missed, and a
    record both places show is taken once."""
    journal = store.shot_journal
    pending = [r for r in journal.records() if wanted(r)] if journal is not None else []
    query = store.shots.search().where(where).limit(limit)
    if columns is not None:
        query = query.select(sorted({*columns, *_KEY}))
    records = [ShotRecord.from_row(r) for r in query.to_list()]
    seen = {_key(r) for r in records}
    return records + [r for r in pending if _key(r) not in seen]


_KEY = ("library", "story_id", "shot_index", "input_hash")


def _key(record: ShotRecord) -> tuple[str, str, int, str]:
    return (record.library, record.story_id, record.shot_index, record.input_hash)


def fold_journal(store: Store) -> int:
    """Commit the journal's records to the ``shots`` table in one append and clear it; returns how
    many were committed. Records a crashed fold already committed are not added twice."""
    journal = store.shot_journal
    if journal is None:
        return 0
    with store.write_lock():
        pending = journal.records()
        if pending:
            committed = _committed_keys(store, pending)
            rows = [r.model_dump() for r in pending if _key(r) not in committed]
            if rows:
                store.retry(lambda: store.shots.add(rows))
                store.maybe_compact("shots")
        journal.clear()
    return len(pending)


def _committed_keys(store: Store, records: list[ShotRecord]) -> set[tuple[str, str, int, str]]:
    """The keys of these records that the table already holds (a fold that crashed after its
    commit left them in the journal too): one filtered read of four columns."""
    where = " OR ".join(
        f"(story_id = {sql_str(story)} AND {sql_int_in('shot_index', sorted(indexes))})"
        for story, indexes in _indexes_by_story(records).items()
    )
    table = store.shots.to_lance().to_table(columns=list(_KEY), filter=where)
    return set(zip(*(table.column(c).to_pylist() for c in _KEY), strict=True))


def _indexes_by_story(records: list[ShotRecord]) -> dict[str, set[int]]:
    stories: dict[str, set[int]] = {}
    for record in records:
        stories.setdefault(record.story_id, set()).add(record.shot_index)
    return stories


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

    def _ours(self, record: ShotRecord, story_id: str | None = None) -> bool:
        return record.library == self.library.name and (story_id is None or record.story_id == story_id)

    def hashes(self, story_id: str) -> dict[int, str]:
        """Shot index -> the input hash it was made with, for every finished shot of a story."""
        story_id = clean_text(story_id, "story id")
        records = _read(self.store, self._where(story_id), lambda r: self._ours(r, story_id), columns=[])
        return {r.shot_index: r.input_hash for r in records}

    def records(self, story_id: str) -> list[ShotRecord]:
        """Every finished shot of a story, in shot order."""
        story_id = clean_text(story_id, "story id")
        records = _read(self.store, self._where(story_id), lambda r: self._ours(r, story_id))
        return sorted(records, key=lambda r: r.shot_index)

    def get(self, story_id: str, index: int) -> ShotRecord | None:
        story_id, index = clean_text(story_id, "story id"), int(index)
        where = self._where(story_id, f"shot_index = {index}")
        records = _read(self.store, where, lambda r: self._ours(r, story_id) and r.shot_index == index, limit=1)
        return records[0] if records else None

    def find_watermark(self, watermark: str) -> list[ShotRecord]:
        """This library's shots whose frames carry ``watermark`` (8 hex digits)."""
        return [r for r in shots_with_watermark(self.store, watermark) if r.library == self.library.name]

    def using(self, entity_id: str) -> list[ShotRecord]:
        """Every finished shot of any story of this library that retrieved ``entity_id``."""
        clause = f"library = {sql_str(self.library.name)} AND array_has_any(retrieved, [{sql_str(entity_id)}])"
        records = _read(self.store, clause, lambda r: self._ours(r) and entity_id in r.retrieved)
        return sorted(records, key=lambda r: (r.story_id, r.shot_index))

    def stories(self) -> list[str]:
        """Ids of the stories this library has finished shots of."""
        journal = self.store.shot_journal
        pending = {r.story_id for r in journal.records() if self._ours(r)} if journal is not None else set()
        table = self.store.shots.to_lance().to_table(
            columns=["story_id"], filter=f"library = {sql_str(self.library.name)}"
        )
        return sorted(pending | set(table.column("story_id").to_pylist()))

    def add(self, record: ShotRecord) -> None:
        """Record a finished shot (it outlives this process when this returns). Local stores
        journal it (one line; see memstore.journal) and fold every FOLD_EVERY records; remote
        stores commit it."""
        if record.library != self.library.name:
            raise ValueError(f"record of library {record.library!r} given to the shot log of {self.library.name!r}")
        journal = self.store.shot_journal
        with self.store.write_lock():
            if journal is not None:
                if journal.append(record) >= FOLD_EVERY:
                    fold_journal(self.store)
                return
            row = record.model_dump()
            self.store.retry(lambda: self.store.shots.add([row]))
            self.store.maybe_compact("shots")

    def flush(self) -> int:
        """Commit journalled records to the table now (a run calls this when it ends)."""
        return fold_journal(self.store)

    def forget(self, story_id: str, index: int | None = None) -> None:
        """Drop the record of one shot (or of every shot of the story)."""
        clauses = [f"shot_index = {int(index)}"] if index is not None else []
        with self.store.write_lock():
            fold_journal(self.store)  # so that the delete below reaches journalled records too
            self.store.retry(lambda: self.store.shots.delete(self._where(story_id, *clauses)))
