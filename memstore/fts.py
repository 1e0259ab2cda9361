"""The full-text (BM25) index over entities' ``search_text`` (name, aliases, description), kept
beside the FAISS indexes and owned by the store like every other table structure.

LanceDB's native full-text index does the scoring (English stemming and stop words). The index is
made lazily on first use and made again once the entities table has moved on by more than a few
versions; rows added since the last build are still searched (LanceDB scans unindexed rows), so
results are never stale, only slower until the next refresh.
"""

from __future__ import annotations

import math
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
        self._unwritable_at: int | None = None  # the table version at which building last failed

    def _has_index(self, table: Any) -> bool:
        try:
            return any(COLUMN in list(ix.columns) and "FTS" in str(ix.index_type) for ix in table.list_indices())
        except Exception:  # noqa: BLE001 - remote tables may not list indices: treat as missing
            return False

    def ensure(self) -> bool:
        """Build the FTS index if missing, or rebuild it when the table moved on by REFRESH_AFTER.
        Returns whether an index exists to search. Building is a write: where it cannot be done
        (a read-only store, a failing disk), the index there is used as it is, stale rows
        included (LanceDB scans rows added since), or :meth:`search` scans without one."""
        table = self.store.entities
        version = int(table.version)
        if self._indexed_version is not None and version - self._indexed_version < REFRESH_AFTER:
            return True
        if self._unwritable_at == version:
            return self._has_index(table)
        try:
            with self._lock, self.store.write_lock():
                self._build()
        except Exception:  # noqa: BLE001 - a read never fails because the index could not be (re)built
            self._unwritable_at = version
            return self._has_index(self.store.entities)
        return self._indexed_version is not None

    def _build(self) -> None:
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
        where = f"library = {sql_str(library)}"
        if kind is not None:
            where += f" AND kind = {sql_str(clean_kind(kind))}"
        if not self.ensure():
            return self._scan(where, text, k)  # an empty table, or a read-only store without an index
        rows = (
            self.store.entities.search(text, query_type="fts", fts_columns=COLUMN)
            .where(where, prefilter=True)
            .select(["id", "_score"])
            .limit(k)
            .to_list()
        )
        return [TextHit(r["id"], float(r["_score"])) for r in rows]

    def _scan(self, where: str, text: str, k: int) -> list[TextHit]:
        """BM25 computed here over the matching rows (no stemming): the fallback where no index
        exists and none can be built."""
        rows = self.store.entities.to_lance().to_table(columns=["id", COLUMN], filter=where).to_pylist()
        docs = [(r["id"], _words(r[COLUMN] or "")) for r in rows]
        return [TextHit(i, s) for i, s in bm25(docs, _words(text))[:k]]


def _words(text: str) -> list[str]:
    return [w.casefold() for w in re.findall(r"[^\W_]+", text)]


def bm25(
    docs: list[tuple[str, list[str]]], terms: list[str], k1: float = 1.2, b: float = 0.75
) -> list[tuple[str, float]]:
    """(id, score) of the documents matching any term, best first (Okapi BM25)."""
    if not docs:
        return []
    mean_length = sum(len(words) for _, words in docs) / len(docs) or 1.0
    frequency = {t: sum(1 for _, words in docs if t in words) for t in set(terms)}
    scored = []
    for doc_id, words in docs:
        score = 0.0
        for term in set(terms):
            count = words.count(term)
            if count:
                idf = math.log(1 + (len(docs) - frequency[term] + 0.5) / (frequency[term] + 0.5))
                score += idf * count * (k1 + 1) / (count + k1 * (1 - b + b * len(words) / mean_length))
        if score > 0:
            scored.append((doc_id, score))
    return sorted(scored, key=lambda item: -item[1])


def _create(table: Any) -> None:
    from lancedb.index import FTS

    table.create_index(COLUMN, config=FTS(with_position=False), replace=True)


def _index_stats(table: Any) -> tuple[int, int] | None:
    try:
        stats = table.index_stats(f"{COLUMN}_idx")
        return int(stats.num_indexed_rows), int(stats.num_unindexed_rows)
    except Exception:  # noqa: BLE001 - no stats (older index, remote table): rebuild
        return None
