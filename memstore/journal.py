"""ShotJournal: shot records written ahead of the ``shots`` table, on local stores.

A story loop records one shot at a time. As a Lance commit, a one-row append costs 7-10 ms on this
machine's disk (a data file, a manifest and a versions entry), and it was the largest part of the
loop's per-shot overhead (benchmarks/results/story_loop.json). A record is a few hundred bytes, so
it goes first to a JSON-lines file beside the tables, one ``write`` (0.01 ms), and is folded into
the table in one commit per :data:`FOLD_EVERY` records (or when a run ends, or before anything
deletes records). Once written, a record survives ``kill -9`` of its process, like a Lance commit.
Neither is fsync'd, and need not be: a record only lets a rerun skip a shot whose files it finds,
so a record lost with the power makes a finished shot render again, never an unfinished one count
(an fsync cost 0.3 ms quiet and 5 ms on a busy disk, per shot).

Readers take the journal and then the table (see :meth:`memstore.shots.ShotLog`): a fold commits
the table before it removes the journal, so a reader sees every record at least once whichever
moment it reads at, and drops the duplicate a concurrent fold can show it.

Only local stores journal: object stores cannot append to a file, and every store process on one
machine shares the file under the store's write lock. Remote stores commit each record.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from .schema import ShotRecord

#: records kept in the journal before a fold commits them to the table: at 64 a fold (one append of
#: 64 rows, ~10 ms) costs 0.15 ms a shot, and a reader filters at most 64 rows in Python
FOLD_EVERY = 64

JOURNAL_FILE = "shots.journal.jsonl"


class ShotJournal:
    """The journal file of one local store. Writers hold the store's write lock; readers need none."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, record: ShotRecord) -> int:
        """Add a record (it outlives this process when this returns); returns how many the
        journal now holds."""
        line = record.model_dump_json().encode() + b"\n"
        with open(self.path, "ab+") as handle:
            if handle.tell() and not _ends_with_newline(handle):
                line = b"\n" + line  # a writer killed mid-line: keep its torn bytes off this record
            handle.write(line)
            handle.seek(0)  # counted from the file, so other processes' appends and folds count too
            return handle.read().count(b"\n")  # at most FOLD_EVERY lines: the file is folded then

    def records(self) -> list[ShotRecord]:
        """Every whole record in the journal, in the order written (a torn last line is skipped)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        records = []
        for line in data.splitlines():
            try:
                records.append(ShotRecord.model_validate_json(line))
            except ValidationError:  # only a writer killed mid-line leaves one
                continue
        return records

    def clear(self) -> None:
        """Forget the journal's records: call only once the table holds them."""
        self.path.unlink(missing_ok=True)


def _ends_with_newline(handle: BinaryIO) -> bool:
    handle.seek(-1, os.SEEK_END)
    ends = handle.read(1) == b"\n"
    handle.seek(0, os.SEEK_END)
    return ends
