"""The full-text (BM25) index over entities' ``search_text`` (name, aliases, description), owned by
the store like every other table structure.

Searches run on an in-memory BM25 built once per entities-table version (a cheap version check per
call, the store's :class:`~memstore.store.VersionWatch`): one Lance read when the table changed,
then a query is a few numpy operations (~0.1 ms at 1,000 entities, against ~7 ms for a LanceDB
full-text query, most of it the round trip through its async runtime). A read is never a write:
nothing is built on disk, so a read-only store searches the same way.

It scores exactly as LanceDB's native FTS index does with this project's configuration
(``FTS(with_position=False)``: tantivy's simple tokenizer, tokens of 40+ bytes dropped, lower case,
English Snowball stemming, then NLTK's English stop words, then ASCII folding; Okapi BM25 with
k1 = 1.2, b = 0.75 and idf = ln(1 + (N - n + 0.5) / (n + 0.5)), document statistics over the whole
table, every library's rows included, results filtered by library afterwards). The LanceDB index is
still made by :meth:`TextIndex.ensure` and searched by :meth:`TextIndex.search_indexed`:
tests/retrieval/test_text_index.py holds the two rankings equal on a real library.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .validation import clean_kind, sql_str

if TYPE_CHECKING:
    from .store import Store

COLUMN = "search_text"
#: unindexed commits tolerated before the LanceDB FTS index is rebuilt (each rebuild is itself a commit)
REFRESH_AFTER = 8
MAX_QUERY_TERMS = 64
MAX_TOKEN_BYTES = 40
K1 = 1.2
B = 0.75
#: LanceDB's English stop words (NLTK's list), applied to stemmed tokens as LanceDB applies them
STOP_WORDS = tuple(
    """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he
    him his himself she she's her hers herself it it's its itself they them their theirs themselves what which
    who whom this that that'll these those am is are was were be been being have has had having do does did
    doing a an the and but if or because as until while of at by for with about against between into through
    during before after above below to from up down in out on off over under again further then once here there
    when where why how all any both each few more most other some such no nor not only own same so than too very
    s t can will just don don't should should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't
    doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't
    shan shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn wouldn't""".split()
)


@dataclass(frozen=True)
class TextHit:
    entity_id: str
    score: float


def query_text(prompt: str) -> str:
    """Plain words of a prompt: the FTS parser sees no operators, quotes or field syntax."""
    words = re.findall(r"[^\W_]+", prompt)
    return " ".join(words[:MAX_QUERY_TERMS])


class Analyzer:
    """LanceDB's FTS token pipeline, built from the same tantivy filters (tantivy is a dependency)."""

    def __init__(self) -> None:
        import tantivy

        f = tantivy.Filter
        builder = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        for step in (
            f.remove_long(MAX_TOKEN_BYTES),
            f.lowercase(),
            f.stemmer("english"),
            f.custom_stopword(list(STOP_WORDS)),
            f.ascii_fold(),
        ):
            builder = builder.filter(step)
        self._analyzer = builder.build()

    def tokens(self, text: str) -> list[str]:
        return list(self._analyzer.analyze(text)) if text else []


class Bm25Table:
    """BM25 postings of every entity row at one table version: term -> (rows, per-row term weight
    without idf), so that a query is a sum of idf-scaled weight arrays."""

    def __init__(self, version: int, rows: dict[str, list[Any]], analyzer: Analyzer):
        self.version = version
        self.ids: list[str] = list(rows["id"])
        self.libraries, self.library_codes = _codes(rows["library"])
        self.kinds, self.kind_codes = _codes(rows["kind"])
        docs = [analyzer.tokens(text or "") for text in rows[COLUMN]]
        lengths = np.array([len(d) for d in docs], dtype=np.float64)
        self.count = len(docs)
        mean = float(lengths.mean()) if self.count and lengths.sum() > 0 else 1.0
        norm = K1 * (1.0 - B + B * lengths / mean)
        postings: dict[str, tuple[list[int], list[int]]] = {}
        for row, words in enumerate(docs):
            counts: dict[str, int] = {}
            for w in words:
                counts[w] = counts.get(w, 0) + 1
            for w, c in counts.items():
                entry = postings.setdefault(w, ([], []))
                entry[0].append(row)
                entry[1].append(c)
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for w, (at, tf) in postings.items():
            rows_of = np.asarray(at, dtype=np.int64)
            freq = np.asarray(tf, dtype=np.float64)
            self.postings[w] = (rows_of, freq * (K1 + 1.0) / (freq + norm[rows_of]))

    def search(self, terms: list[str], library: str, kind: str | None, k: int) -> list[TextHit]:
        lib = self.libraries.get(library)
        if lib is None or k <= 0:
            return []
        scores = np.zeros(self.count, dtype=np.float64)
        for term in terms:  # as LanceDB does, a word said twice in the prompt counts twice
            posting = self.postings.get(term)
            if posting is None:
                continue
            rows, weight = posting
            df = len(rows)
            scores[rows] += math.log(1.0 + (self.count - df + 0.5) / (df + 0.5)) * weight
        keep = (scores > 0) & (self.library_codes == lib)
        if kind is not None:
            code = self.kinds.get(kind)
            if code is None:
                return []
            keep &= self.kind_codes == code
        found = np.flatnonzero(keep)
        order = found[np.argsort(-scores[found], kind="stable")][:k]
        # float32 as LanceDB reports its scores, so that both paths print the same numbers
        return [TextHit(self.ids[i], float(np.float32(scores[i]))) for i in order.tolist()]


def _codes(values: list[Any]) -> tuple[dict[str, int], np.ndarray]:
    names: dict[str, int] = {}
    codes = np.fromiter((names.setdefault(str(v), len(names)) for v in values), dtype=np.int32, count=len(values))
    return names, codes


class TextIndex:
    """BM25 search of one store's entities table: in memory, rebuilt when the table version moves."""

    _lock = threading.Lock()

    def __init__(self, store: Store):
        self.store = store
        self._indexed_version: int | None = None
        self._unwritable_at: int | None = None  # the table version at which building last failed
        self._watch = store.watch("entities")
        self._analyzer: Analyzer | None = None
        self._table: Bm25Table | None = None
        self._build_lock = threading.Lock()
        self.builds = 0  # how many in-memory tables were built (tests and benchmarks read it)

    # --- the in-memory search (what every read uses) --------------------------------------------
    def search(self, library: str, prompt: str, *, k: int = 20, kind: str | None = None) -> list[TextHit]:
        """Entities of ``library`` ranked by BM25 against the prompt's words, best first."""
        text = query_text(prompt)
        if not text:
            return []
        kind = clean_kind(kind) if kind is not None else None
        table = self.table()
        return table.search(self.analyzer().tokens(text), library, kind, k)

    def analyzer(self) -> Analyzer:
        if self._analyzer is None:
            self._analyzer = Analyzer()
        return self._analyzer

    def table(self) -> Bm25Table:
        """The postings at the entities table's current version (read and built when it moved on)."""
        version = self._watch.version()
        current = self._table
        if current is not None and current.version == version:
            return current
        with self._build_lock:
            current = self._table
            if current is None or current.version != version:
                current = self._table = self._read()
                self.builds += 1
            return current

    def _read(self) -> Bm25Table:
        dataset = self.store.entities.to_lance()
        version = int(dataset.version)  # the version of the rows read, whatever lands meanwhile
        rows = dataset.to_table(columns=["id", "library", "kind", COLUMN]).to_pydict()
        return Bm25Table(version, rows, self.analyzer())

    # --- LanceDB's own FTS index (the reference the in-memory ranking is held to) ----------------
    def _has_index(self, table: Any) -> bool:
        try:
            return any(COLUMN in list(ix.columns) and "FTS" in str(ix.index_type) for ix in table.list_indices())
        except Exception:  # noqa: BLE001 - remote tables may not list indices: treat as missing
            return False

    def ensure(self) -> bool:
        """Build LanceDB's FTS index if missing, or rebuild it when the table moved on by
        REFRESH_AFTER. Returns whether an index exists to search. Building is a write: where it
        cannot be done (a read-only store, a failing disk), the index there is used as it is."""
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

    def search_indexed(self, library: str, prompt: str, *, k: int = 20, kind: str | None = None) -> list[TextHit]:
        """The same search through LanceDB's FTS index (built by :meth:`ensure`); [] without one."""
        text = query_text(prompt)
        if not text or not self.ensure():
            return []
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
