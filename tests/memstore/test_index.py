"""The FAISS hot index stays in step with the Lance table through appends, deletes and reopens."""

from __future__ import annotations

import numpy as np
import pytest

from memstore.errors import VectorError
from memstore.store import Store

COL = "color_histogram_rgb8"


def rand_vecs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 512)).astype(np.float32)


def table_keys(store: Store, library: str) -> set[int]:
    return {r.key for r in store.library(library).references(with_vectors=False)}


def add_entity(lib, name: str, kind: str, vecs: np.ndarray, seed: int):
    imgs = [np.random.default_rng(seed + i).integers(0, 255, (8, 8, 3), dtype=np.uint8) for i in range(len(vecs))]
    lib.register(name, kind)
    return lib.add_images(name, imgs, vectors={COL: vecs})


def test_search_returns_exact_neighbour_and_respects_kind(library, store):
    vecs = rand_vecs(6, 1)
    refs = add_entity(library, "Aria", "character", vecs[:3], 10) + add_entity(
        library, "Keep", "location", vecs[3:], 20
    )
    index = store.index("default", COL)
    scores, ids = index.search(vecs[4], k=3)
    assert ids[0][0] == refs[4].key and scores[0][0] == pytest.approx(1.0, abs=1e-5)
    _, ids = index.search(vecs[4], k=3, kind="character")
    assert set(ids[0]) <= {r.key for r in refs[:3]}
    hits = library.search(vecs[0], k=2, kind="location")
    assert all(r.kind == "location" for _, r in hits)


def test_append_extends_without_rebuild(library, store):
    add_entity(library, "Aria", "character", rand_vecs(3, 1), 10)
    index = store.index("default", COL)
    rebuilds = index.rebuilds
    new = add_entity(library, "Bram", "character", rand_vecs(2, 2), 30)
    index = store.index("default", COL)
    assert index.rebuilds == rebuilds and index.appends >= 1
    assert set(index.live_keys().tolist()) == table_keys(store, "default")
    _, ids = index.search(new[1].vectors[COL] if new[1].vectors else rand_vecs(2, 2)[1], k=1)
    assert ids[0][0] == new[1].key


def test_delete_rebuilds(library, store):
    add_entity(library, "Aria", "character", rand_vecs(3, 1), 10)
    add_entity(library, "Bram", "character", rand_vecs(3, 2), 30)
    index = store.index("default", COL)
    rebuilds = index.rebuilds
    library.remove("Aria")
    index = store.index("default", COL)
    assert index.rebuilds == rebuilds + 1
    assert set(index.live_keys().tolist()) == table_keys(store, "default")
    assert index.ntotal == 3


def test_reopen_loads_saved_index_and_reconciles_foreign_writes(tmp_path):
    path = tmp_path / "db"
    store = Store.init(path)
    add_entity(store.library("default"), "Aria", "character", rand_vecs(4, 1), 10)
    store.index("default", COL)
    meta = path / "_faiss" / "default" / f"{COL}.json"
    assert meta.exists()
    # another process (here: another Store object) writes while ours holds a stale index
    other = Store.open(path)
    add_entity(other.library("default"), "Bram", "character", rand_vecs(2, 2), 30)
    fresh = Store.open(path).index("default", COL)
    assert fresh.rebuilds == 0  # loaded from disk, then extended
    assert set(fresh.live_keys().tolist()) == table_keys(other, "default")
    stale = store.index("default", COL)
    assert set(stale.live_keys().tolist()) == table_keys(other, "default")


def test_corrupt_index_file_is_rebuilt(tmp_path):
    path = tmp_path / "db"
    store = Store.init(path)
    add_entity(store.library("default"), "Aria", "character", rand_vecs(4, 1), 10)
    store.index("default", COL)
    (path / "_faiss" / "default" / f"{COL}.faiss").write_bytes(b"garbage")
    index = Store.open(path).index("default", COL)
    assert index.rebuilds == 1 and index.ntotal == 4


def test_index_per_library(store):
    a, b = store.library("a"), store.library("b")
    add_entity(a, "Aria", "character", rand_vecs(3, 1), 10)
    add_entity(b, "Bram", "character", rand_vecs(5, 2), 30)
    assert store.index("a", COL).ntotal == 3
    assert store.index("b", COL).ntotal == 5


def test_factory_from_config(store):
    lib = store.library("big")
    lib.configure(index_factory="HNSW32,Flat")
    add_entity(lib, "Aria", "character", rand_vecs(50, 1), 10)
    index = store.index("big", COL)
    assert index.built_factory == "HNSW32,Flat"
    vecs = rand_vecs(50, 1)
    _, ids = index.search(vecs[7], k=1)
    found = {r.key: r for r in lib.references("Aria")}[int(ids[0][0])]
    assert np.allclose(found.vectors[COL], vecs[7] / np.linalg.norm(vecs[7]), atol=1e-6)


def test_bad_queries(library, store):
    add_entity(library, "Aria", "character", rand_vecs(2, 1), 10)
    index = store.index("default", COL)
    with pytest.raises(VectorError):
        index.search(np.ones(10), k=1)
    with pytest.raises(VectorError):
        index.search(np.full(512, np.nan), k=1)


def test_removing_one_entity_of_many_marks_its_rows_removed_instead_of_rebuilding(library, store):
    vecs = rand_vecs(120, 7)
    refs = [r for i in range(30) for r in add_entity(library, f"E{i}", "character", vecs[4 * i : 4 * i + 4], 100 + i)]
    index = store.index("default", COL)
    rebuilds = index.rebuilds
    library.remove("E3")  # 4 of 120 rows
    index = store.index("default", COL)
    gone = {r.key for r in refs[12:16]}
    assert index.rebuilds == rebuilds and set(index.removed.tolist()) == gone and index.ntotal == 116
    _, ids = index.search(vecs[13], k=5)
    assert len(ids[0]) == 5 and gone.isdisjoint(ids[0].tolist())
    assert refs[12].entity_id not in {r.entity_id for _, r in library.search(vecs[13], k=5)}
