"""The full-text (BM25) index over entities' ``search_text`` (name, aliases, description), kept
beside the FAISS indexes and owned by the store like every other table structure.

LanceDB's native full-text index does the scoring (English stemming and stop words). The index is
made lazily on first use and made again once the entities table has moved on by more than a few
versions; rows added since the last build are still searched (LanceDB scans unindexed rows), so
results are never stale, only slower until the next refresh.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .validation import clean_kind, sql_str

if TYPE_CHECKING:
    from .store import Store

COLUMN = "search_text"
#: unindexed commits tolerated before the FTS index is rebuilt (each rebuild is itself a commit)
REFRESH_AFTER = 8
MAX_QUERY_TERMS = 64


@dataclass(frozen=True)
class TextHit:
    entity_id: str
    score: float


def query_text(prompt: str) -> str:
    """Plain words of a prompt: the FTS parser sees no operators, quotes or field syntax."""
    words = re.findall(r"[^\W_]+", prompt)
    return " ".join(words[:MAX_QUERY_TERMS])


class TextIndex:
    """BM25 search of one store's entities table, index kept fresh by table version."""

    _lock = threading.Lock()

    def __init__(self, store: Store):
        self.store = store
        self._indexed_version: int | None = None

    def _has_index(self, table: Any) -> bool:
        try:
            return any(COLUMN in list(ix.columns) and "FTS" in str(ix.index_type) for ix in table.list_indices())
        except Exception:  # noqa: BLE001 - remote tables may not list indices: treat as missing
            return False

    def ensure(self) -> None:
        """Build the FTS index if missing, or rebuild it when the table moved on by REFRESH_AFTER."""
        table = self.store.entities
        version = int(table.version)
        if self._indexed_version is not None and version - self._indexed_version < REFRESH_AFTER:
            return
        with self._lock, self.store.write_lock():
            table = self.store.entities
            exists = self._has_index(table)
            if exists and self._indexed_version is None:
                # made by another process or an earlier run: use it unless too many rows are unindexed
                stats = _index_stats(table)
                if stats is None or stats[1] <= max(64, stats[0] // 4):
                    self._indexed_version = int(table.version)
                    return
            if table.count_rows() == 0:
                return
            self.store.retry(lambda: _create(table))
            self._indexed_version = int(self.store.entities.version)

    def search(self, library: str, prompt: str, *, k: int = 20, kind: str | None = None) -> list[TextHit]:
        """Entities of ``library`` ranked by BM25 against the prompt's words, best first."""
        text = query_text(prompt)
        if not text:
            return []
        self.ensure()
        if self._indexed_version is None:
            return []  # empty table
        where = f"library = {sql_str(library)}"
        if kind is not None:
            where += f" AND kind = {sql_str(clean_kind(kind))}"
        rows = (
            self.store.entities.search(text, query_type="fts", fts_columns=COLUMN)
            .where(where, prefilter=True)
            .select(["id", "_score"])
            .limit(k)
            .to_list()
        )
        return [TextHit(r["id"], float(r["_score"])) for r in rows]


def _create(table: Any) -> None:
    from lancedb.index import FTS

    table.create_index(COLUMN, config=FTS(with_position=False), replace=True)


def _index_stats(table: Any) -> tuple[int, int] | None:
    try:
        stats = table.index_stats(f"{COLUMN}_idx")
        return int(stats.num_indexed_rows), int(stats.num_unindexed_rows)
    except Exception:  # noqa: BLE001 - no stats (older index, remote table): rebuild
        return None
