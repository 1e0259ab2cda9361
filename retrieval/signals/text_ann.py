"""Approximate search over a large library's entity text vectors (the text->text signal).

Below :data:`APPROXIMATE_ABOVE` entities the prompt is compared to every entity's text vector (a
matrix-vector product: 4,096 x 512 is 8 MB, ~0.15 ms on one core). Above it that scan grows with
the library (20,000 entities: ~5 ms on one core, measured; 50,000: a 100 MB pass, ~48 ms measured
at 1M references, and OpenBLAS's threads make it worse on a busy machine) while the FAISS search of
the references beside it costs 1-6 ms, so the vectors go into a FAISS ``IndexIVFScalarQuantizer``
(8-bit codes, inner product; nlist ~ sqrt(entities), a power of two; ``nprobe`` = nlist / 8 and at
least 16: an eighth of the entities scanned). The candidates (:data:`RERANK_FACTOR` per hit wanted)
are scored again on the exact vectors, so the scores are the exact cosines.

Why 8-bit codes: at 1M references (50k entities) an ``IndexIVFFlat`` read 12.5 MB of float vectors
per query out of 100 MB, and that traffic pushed the reference index's 64 MB of PQ codes out of the
CPU cache: with the text search off, the reference search inside ``retrieve()`` took 2.7-3.0 ms
instead of 3.4-4.0 ms (``benchmarks/bench_retrieval_scale.py``'s 1M store, measured). The codes are
a quarter of that. IVF rather than HNSW because it is kept in step cheaply: an entity whose text
changed or that is gone is removed by id and a new one added, with no rebuild (HNSW can remove
nothing); it is trained again only when the library has doubled."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

#: entities above which the text->text signal searches an IVF index instead of scanning every vector
APPROXIMATE_ABOVE = 4096
#: the share of lists searched (1 / PROBE_SHARE of them), and never fewer than MIN_PROBES
PROBE_SHARE = 8
MIN_PROBES = 16
#: candidates fetched per hit wanted, then scored on the exact vectors (8-bit codes may swap near-ties)
RERANK_FACTOR = 2
#: k-means sample per list (FAISS asks for at least 39; 64 as the reference index does)
TRAIN_PER_LIST = 64


def list_count(entities: int) -> int:
    """nlist for this many entities: ~sqrt(entities) as a power of two, at least 16."""
    return max(16, 1 << int(round(np.log2(max(np.sqrt(entities), 1.0)))))


class EntityTextIndex:
    """An IVF index of entity text vectors, by entity id, brought in step by :meth:`sync`."""

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.index: Any = None  # faiss.IndexIVFScalarQuantizer (FAISS has no type stubs)
        self._quantizer: Any = None
        self.trained_for = 0  # entities when last trained: trained again once the library doubled
        self.code_of: dict[str, int] = {}  # entity id -> FAISS id
        self.id_of: dict[int, str] = {}  # FAISS id -> entity id
        self._next_code = 0
        self.rebuilds = 0  # tests and benchmarks read them
        self.updates = 0
        self._exact = np.zeros((0, self.dim), np.float32)  # the vectors of the last sync (held, not copied)
        self._row_of_code = np.zeros(0, np.int64)  # FAISS id -> its row of ``_exact``

    def sync(self, ids: Sequence[str], matrix: np.ndarray, changed: Collection[str]) -> None:
        """Make the index hold exactly ``ids`` (rows of ``matrix``); ``changed``: ids whose vector
        was made again since the last sync (their text changed)."""
        if self.index is None or len(ids) > 2 * self.trained_for:
            self._rebuild(ids, matrix)
        else:
            self._update(ids, matrix, changed)
        rows = np.full(self._next_code, -1, np.int64)
        rows[np.fromiter((self.code_of[eid] for eid in ids), np.int64, len(ids))] = np.arange(len(ids))
        self._exact, self._row_of_code = matrix, rows

    def _update(self, ids: Sequence[str], matrix: np.ndarray, changed: Collection[str]) -> None:
        current = set(ids)
        gone = [eid for eid in self.code_of if eid not in current or eid in changed]
        new = [i for i, eid in enumerate(ids) if eid not in self.code_of or eid in changed]
        if gone:
            import faiss

            codes = np.array([self.code_of.pop(eid) for eid in gone], dtype=np.int64)
            self.index.remove_ids(faiss.IDSelectorBatch(codes))
            for code in codes.tolist():
                del self.id_of[code]
        if new:
            self._add([ids[i] for i in new], matrix[new])
        if gone or new:
            self.updates += 1

    def _rebuild(self, ids: Sequence[str], matrix: np.ndarray) -> None:
        import faiss

        nlist = list_count(len(ids))
        quantizer = faiss.IndexFlatIP(self.dim)
        eight_bit = faiss.ScalarQuantizer.QT_8bit
        index = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist, eight_bit, faiss.METRIC_INNER_PRODUCT)
        sample = matrix
        if len(matrix) > TRAIN_PER_LIST * nlist:
            pick = np.random.default_rng(0).choice(len(matrix), TRAIN_PER_LIST * nlist, replace=False)
            sample = matrix[np.sort(pick)]
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        index.nprobe = min(nlist, max(MIN_PROBES, nlist // PROBE_SHARE))
        self._quantizer = quantizer  # the IVF index does not own its quantizer: kept alive beside it
        self.index, self.trained_for = index, len(ids)
        self.code_of, self.id_of, self._next_code = {}, {}, 0
        self._add(list(ids), matrix)
        self.rebuilds += 1

    def _add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        codes = np.arange(self._next_code, self._next_code + len(ids), dtype=np.int64)
        self._next_code += len(ids)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), codes)
        for eid, code in zip(ids, codes.tolist(), strict=True):
            self.code_of[eid] = code
            self.id_of[code] = eid

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(entity id, exact cosine) of the ``k`` nearest entities found, best first."""
        if self.index is None or not self.code_of:
            return []
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        want = min(k, len(self.code_of))
        _, found = self.index.search(q, min(len(self.code_of), want * RERANK_FACTOR))
        codes = found[0][found[0] >= 0]
        sims = self._exact[self._row_of_code[codes]] @ q[0]
        order = np.argsort(-sims, kind="stable")[:want]  # ties keep FAISS's order
        return [(self.id_of[int(codes[i])], float(sims[i])) for i in order.tolist()]
