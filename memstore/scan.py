"""A re-ranked fast-scan PQ index (``PQ<m>x4fs,RFlat``) searched on several threads at once.

Such an index answers a query by scanning the PQ code of every row (64 bytes a row for 512-d
vectors: 64 MB at 1M rows), then re-ranking the best ``k_factor * k`` on their exact vectors. FAISS
spreads a batch of queries over its OpenMP threads, but one query runs on one thread, and a story
shot is one query. At 1M rows that one thread streams 64 MB from memory: 3-10 ms on this project's
2-core machine, measured at different times as the host's memory bandwidth varied (the scale
benchmark records that bandwidth beside its figures: benchmarks/results/retrieval_scale.json), and
as the codes were still in the host's shared last-level cache (300 MB) or not: searches back to
back read them from there, a search after a 4 ms pause (about what the rest of a retrieve takes)
mostly from memory (the benchmark's ``bare_search``: 2.1-3.5 against 3.2-5.7 ms on 2 threads).

:class:`ThreadedScan` is a search view of the same index: its codes cut into contiguous slices
(whole 32-row blocks of the fast-scan layout, copied byte for byte, so every slice scores a row
exactly as the whole index does), one slice per thread of a FAISS ``IndexShards``, whose worker
threads block rather than spin while idle. The slices' candidates are merged and re-ranked on the
index's own exact vectors. The results equal the one-thread search's (a test compares them); the view
costs one more copy of the codes (64 MB at 1M rows). Rows appended to the index are appended to the
last slice as well, so a growing library does not copy its codes again.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

#: rows each extra thread must have to scan: below it, handing a slice to a thread costs more than
#: it saves (a fast-scan pass over 250k rows is ~1-2 ms)
ROWS_PER_THREAD = 250_000


def thread_count(rows: int, threads: int) -> int:
    """Threads worth using for a scan of ``rows`` rows, at most ``threads``."""
    return max(1, min(int(threads), rows // ROWS_PER_THREAD))


class ThreadedScan:
    """Search view of an ``IndexIDMap2(IndexRefine(IndexPQFastScan, IndexFlat))`` over ``threads``
    slices; it holds the index, so the codebook and exact vectors it reads outlive a rebuild."""

    def __init__(self, index: Any, threads: int):
        import faiss

        refined = faiss.downcast_index(index.index)
        base = faiss.downcast_index(refined.base_index)
        if not isinstance(base, faiss.IndexPQFastScan):
            raise TypeError(f"a threaded scan needs PQ fast-scan codes, got {type(base).__name__}")
        self.threads = int(threads)
        self._owner = index
        self._base = base
        self._refine_index = refined.refine_index
        self._ids = faiss.vector_to_array(index.id_map).astype(np.int64)  # row position -> FAISS id
        self._slices = [self._slice(lo, hi) for lo, hi in self._bounds(int(base.ntotal))]
        self._shards = faiss.IndexShards(base.d, True, True)  # threaded, labels numbered across slices
        for part in self._slices:
            self._shards.add_shard(part)
        self._shards.syncWithSubIndexes()  # its row count and trained flag, from the slices
        self._lock = threading.Lock()  # one query at a time: each already uses every thread

    @property
    def ntotal(self) -> int:
        return int(self._shards.ntotal)

    def _bounds(self, rows: int) -> list[tuple[int, int]]:
        """Contiguous slices of about equal size, cut at block boundaries."""
        bbs = int(self._base.bbs)
        blocks = (rows + bbs - 1) // bbs
        cuts = [min(rows, round(blocks * i / self.threads) * bbs) for i in range(self.threads + 1)]
        cuts[-1] = rows
        return [(lo, hi) for lo, hi in zip(cuts, cuts[1:], strict=False) if hi > lo] or [(0, rows)]

    def _slice(self, lo: int, hi: int) -> Any:
        """A fast-scan index holding rows [lo, hi) of the base: its code blocks, copied."""
        import faiss

        base = self._base
        block = int(base.bbs) * int(base.M2) // 2  # bytes of one block of bbs rows
        codes = faiss.rev_swig_ptr(base.codes.get(), base.codes.size())
        part = _empty_like(base)
        first, count = lo // int(base.bbs), (hi - lo + int(base.bbs) - 1) // int(base.bbs)
        part.codes.resize(count * block)
        if count:
            faiss.rev_swig_ptr(part.codes.get(), part.codes.size())[:] = codes[first * block : (first + count) * block]
        part.ntotal = hi - lo
        part.ntotal2 = count * int(base.bbs)  # rows the scan loops over: whole blocks
        return part

    def append(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Rows just added to the index (``add_with_ids``): add them to the last slice too."""
        with self._lock:
            self._slices[-1].add(np.ascontiguousarray(vectors, dtype=np.float32))
            self._shards.syncWithSubIndexes()
            self._ids = np.concatenate([self._ids, np.asarray(ids, dtype=np.int64)])

    def search(self, queries: np.ndarray, k: int, k_factor: float) -> tuple[np.ndarray, np.ndarray]:
        """(scores, FAISS ids) of the best ``k`` rows, re-ranked exactly, as the index's own search."""
        import faiss

        with self._lock:
            refine = faiss.IndexRefine(self._shards, self._refine_index)
            params = faiss.IndexRefineSearchParameters(k_factor=float(k_factor))
            scores, rows = refine.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
            return scores, np.where(rows >= 0, self._ids[np.maximum(rows, 0)], -1)


def _empty_like(base: Any) -> Any:
    """A fast-scan index with ``base``'s trained codebook and no rows (without copying its codes),
    made as FAISS converts a trained ``IndexPQ`` into its fast-scan form."""
    import faiss

    plain = faiss.IndexPQ(base.d, base.M, base.nbits, base.metric_type)
    plain.pq = base.pq  # a copy of the trained codebook
    plain.is_trained = True
    part = faiss.IndexPQFastScan(plain, base.bbs)
    part.implem, part.qbs, part.skip = base.implem, base.qbs, base.skip
    return part
