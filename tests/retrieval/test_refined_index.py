"""A re-ranked product-quantizer index (``PQ<m>x4fs,RFlat``: fast-scan codes, exact re-rank) searches,
filters by kind and appends like the other FAISS families."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from memstore.index import VectorIndex

DIM = 32


class Rows:
    """A RowSource over arrays: key, kind, entity and vector of every row."""

    column, dim, spec = "vec", DIM, "test:rows"

    def __init__(self, vectors: np.ndarray, kinds: list[str]):
        self.vectors, self.kinds, self.at = vectors, kinds, 1

    def version(self) -> int:
        return self.at

    def key_table(self) -> pa.Table:
        return pa.table({"key": np.arange(len(self.kinds), dtype=np.int64) + 100, "kind": self.kinds})

    def row_keys(self) -> np.ndarray:
        return self.key_table().column("key").to_numpy()

    def vector_table(self, keys: np.ndarray | None) -> pa.Table:
        rows = np.arange(len(self.kinds)) if keys is None else np.asarray(keys) - 100
        flat = pa.array(self.vectors[rows].ravel(), pa.float32())
        return pa.table(
            {
                "key": rows.astype(np.int64) + 100,
                "kind": [self.kinds[i] for i in rows],
                "entity_id": [f"e{i // 4}" for i in rows],
                "vec": pa.FixedSizeListArray.from_arrays(flat, DIM),
            }
        )


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_refined_pq_index_finds_neighbours_filters_kinds_and_appends(tmp_path):
    vectors = unit(600, 1)
    kinds = ["character" if i % 3 else "location" for i in range(600)]
    source = Rows(vectors[:500], kinds[:500])
    index = VectorIndex(source, tmp_path, factory="PQ8x4fs,RFlat", params={"k_factor": 16})
    index.sync()
    assert index.built_factory == "PQ8x4fs,RFlat"
    for i in (0, 7, 333):
        scores, ids = index.search(vectors[i], k=3)
        assert ids[0][0] == 100 + i and abs(float(scores[0][0]) - 1.0) < 1e-5  # the exact re-rank
    _, ids = index.search(vectors[7], k=5, kind="location")
    assert len(ids[0]) == 5 and all(kinds[int(x) - 100] == "location" for x in ids[0])
    source.vectors, source.kinds, source.at = vectors, kinds, 2  # 100 rows appended
    index.sync()
    assert index.appends == 1 and index.rebuilds == 1 and index.ntotal == 600
    _, ids = index.search(vectors[555], k=1)
    assert ids[0][0] == 655 and index.entity_of(ids[0]) == ["e138"]


def test_a_pq_factory_that_does_not_fit_fails_in_one_typed_line(tmp_path):
    import pytest

    from memstore.errors import InvalidInputError
    from memstore.validation import clean_index_factory

    assert clean_index_factory("PQ8x4fs,RFlat") == "PQ8x4fs,RFlat"
    with pytest.raises(InvalidInputError, match="not allowed"):
        clean_index_factory("PQ8x4fs,RFlat;rm")
    with pytest.raises(InvalidInputError, match=r"multiple of 7; use auto or PQ8x4fs,RFlat"):
        VectorIndex(Rows(unit(40, 2), ["character"] * 40), tmp_path / "a", factory="PQ7x4fs,RFlat").sync()
    with pytest.raises(InvalidInputError, match="at least 16 vectors and the column has 5"):
        VectorIndex(Rows(unit(5, 3), ["character"] * 5), tmp_path / "b", factory="PQ8x4fs,RFlat").sync()


def test_threaded_scan_returns_the_one_thread_results_and_follows_appends(tmp_path, monkeypatch):
    """One query scanned on three threads (slices of the codes) finds what the one-thread search
    finds, keeps finding appended rows without copying the codes again, and is dropped on rebuild.
    (PQ16 on 32-d: codes fine enough that no two candidates tie at the re-rank cut.)"""
    import memstore.scan

    monkeypatch.setattr(memstore.scan, "ROWS_PER_THREAD", 500)
    vectors = unit(3200, 3)
    kinds = ["character" if i % 3 else "location" for i in range(3200)]
    source = Rows(vectors[:3000], kinds[:3000])
    index = VectorIndex(source, tmp_path, factory="PQ16x4fs,RFlat", params={"k_factor": 8})
    index.search_threads = 3
    index.sync()
    queries = unit(20, 4)

    def one_thread(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return index.index.search(q[None, :], k, params=index._params(None, k))

    def agrees(q: np.ndarray, k: int = 10) -> bool:
        scores, ids = index.search(q, k=k)
        ref_scores, ref_ids = one_thread(q, k)
        return np.allclose(scores, ref_scores, atol=1e-5) and np.array_equal(ids, ref_ids)

    assert all(agrees(q) for q in queries)
    scan = index._scan
    assert scan is not None and scan.threads == index.scan_threads == 3 and len(scan._slices) == 3
    assert sum(int(s.ntotal) for s in scan._slices) == 3000
    source.vectors, source.kinds, source.at = vectors, kinds, 2  # 200 rows appended
    index.sync()
    assert index._scan is scan and scan.ntotal == 3200  # appended to the last slice, not copied again
    assert all(agrees(q) for q in queries)
    scores, ids = index.search(vectors[3111], k=1)
    assert ids[0][0] == 100 + 3111 and abs(float(scores[0][0]) - 1.0) < 1e-5
    _, ids = index.search(vectors[3111], k=5, kind="location")
    assert len(ids[0]) == 5 and all(kinds[int(x) - 100] == "location" for x in ids[0])
    source.vectors, source.kinds, source.at = vectors[:2000], kinds[:2000], 3  # rows gone: a rebuild
    index.sync()
    assert index.rebuilds == 2 and index._scan is None
    assert agrees(queries[0]) and index._scan is not None and index._scan.ntotal == 2000
    index.search_threads = 1  # a library that asks for one thread gets the one-thread search at once
    assert index._threaded_scan() is None and index.scan_threads == 1 and agrees(queries[0])


def test_small_or_single_thread_indexes_scan_on_one_thread(tmp_path):
    vectors = unit(3000, 5)
    index = VectorIndex(Rows(vectors, ["character"] * 3000), tmp_path, factory="PQ8x4fs,RFlat")
    index.sync()
    index.search(vectors[0], k=3)
    assert index._scan is None  # 3,000 rows: below the rows one more thread needs
    index.search_threads = 1
    assert index._threaded_scan() is None


class Shrinking(Rows):
    """Rows whose table loses some: ``gone`` row numbers are no longer in it."""

    def __init__(self, vectors: np.ndarray, kinds: list[str]):
        super().__init__(vectors, kinds)
        self.gone: set[int] = set()

    def _kept(self) -> np.ndarray:
        return np.array([i for i in range(len(self.kinds)) if i not in self.gone], dtype=np.int64)

    def key_table(self) -> pa.Table:
        kept = self._kept()
        return pa.table({"key": kept + 100, "kind": [self.kinds[i] for i in kept]})

    def vector_table(self, keys: np.ndarray | None) -> pa.Table:
        return super().vector_table(self._kept() + 100 if keys is None else keys)


def test_removed_rows_leave_every_search_without_a_rebuild_and_stay_removed_on_reload(tmp_path, monkeypatch):
    import memstore.scan

    monkeypatch.setattr(memstore.scan, "ROWS_PER_THREAD", 500)  # the threaded scan too
    vectors = unit(2000, 3)
    kinds = ["character" if i % 3 else "location" for i in range(2000)]
    source = Shrinking(vectors, kinds)
    index = VectorIndex(source, tmp_path, factory="PQ8x4fs,RFlat", params={"k_factor": 16})
    index.sync()
    assert index.scan_threads == 2
    written = (index.path.stat().st_ino, index.path.stat().st_mtime_ns)
    source.gone, source.at = set(range(0, 80)), 2  # 4% of the rows: under the share that rebuilds
    index.sync()
    assert index.rebuilds == 1 and index.ntotal == 1920 and len(index.removed) == 80
    assert (
        index.path.stat().st_ino,
        index.path.stat().st_mtime_ns,
    ) == written  # same FAISS rows: only the sidecar and meta are written
    for i in (0, 5, 79):
        scores, ids = index.search(vectors[i], k=10)
        assert len(ids[0]) == 10 and (ids[0] >= 180).all()  # ten live rows, the removed one (score 1) not among them
        assert float(scores[0][0]) < 0.999
        _, ids = index.search(vectors[i], k=10, kind="location")
        assert (ids[0] >= 180).all() and all(kinds[int(x) - 100] == "location" for x in ids[0])
    _, ids = index.search(vectors[1], k=5000)  # more than it holds: every live row, once
    assert sorted(ids[0].tolist()) == list(range(180, 2100))
    reloaded = VectorIndex(source, tmp_path, factory="PQ8x4fs,RFlat", params={"k_factor": 16})
    reloaded.sync()
    assert reloaded.rebuilds == 0 and reloaded.ntotal == 1920
    assert (reloaded.search(vectors[5], k=10)[1][0] >= 180).all()
    source.gone, source.at = set(range(0, 120)), 3  # 6%: rebuilt without them
    index.sync()
    assert index.rebuilds == 2 and len(index.removed) == 0 and index.ntotal == 1880


class PartlyEmbedded(Rows):
    """Rows of which some have no vector yet (``bare``): in the table's keys, not in its vectors."""

    def __init__(self, vectors: np.ndarray, kinds: list[str], bare: set[int]):
        super().__init__(vectors, kinds)
        self.bare = bare

    def _with_vector(self) -> np.ndarray:
        return np.array([i for i in range(len(self.kinds)) if i not in self.bare], dtype=np.int64)

    def key_table(self) -> pa.Table:
        rows = self._with_vector()
        return pa.table({"key": rows + 100, "kind": [self.kinds[i] for i in rows]})

    def row_keys(self) -> np.ndarray:
        return np.arange(len(self.kinds), dtype=np.int64) + 100

    def vector_table(self, keys: np.ndarray | None) -> pa.Table:
        rows = self._with_vector() + 100
        return super().vector_table(rows if keys is None else np.intersect1d(rows, keys))


@pytest.mark.parametrize("check_each_below", [20_000, 3])  # new rows checked one by one, or all rows' vectors read
def test_rows_without_a_vector_are_not_indexed_until_they_have_one(tmp_path, monkeypatch, check_each_below):
    import memstore.index

    monkeypatch.setattr(memstore.index, "CHECK_EACH_BELOW", check_each_below)
    vectors = unit(300, 5)
    source = PartlyEmbedded(vectors[:200], ["prop"] * 200, bare=set())
    index = VectorIndex(source, tmp_path, factory="Flat")
    index.sync()
    source.vectors, source.kinds, source.bare, source.at = vectors, ["prop"] * 300, set(range(200, 290)), 2
    index.sync()  # 100 new rows, 90 of them without a vector yet
    assert (
        index.ntotal == 210
        and index.rebuilds == 1
        and set(index.live_keys().tolist()) == set(range(100, 400)) - {k + 100 for k in range(200, 290)}
    )
    source.bare, source.at = set(), 3  # the rest embedded
    index.sync()
    assert index.ntotal == 300 and index.rebuilds == 1
    assert index.search(vectors[250], k=1)[1][0][0] == 350
