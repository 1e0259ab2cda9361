"""A long run commits thousands of times: old table versions are pruned, so commits stay cheap,
and pruning never loses a row or a version a reader may still be on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from memstore import store as store_module
from memstore.store import Store


def _commit_many(store: Store, count: int) -> None:
    for i in range(count):
        store.set_config(f"k{i % 7}", {"i": i})
        store.maybe_compact("config")


def test_old_versions_are_pruned_and_no_value_is_lost(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "VERSION_GRACE", timedelta(0))
    monkeypatch.setattr(store_module, "VERSION_PRUNE_EVERY", 32)
    monkeypatch.setattr(store_module, "VERSIONS_KEPT", 8)
    store = Store.init(tmp_path / "db")
    _commit_many(store, 100)
    versions = store.table("config").list_versions()
    assert len(versions) <= 8 + 32 + 16, len(versions)  # kept + one prune interval + one look interval
    assert store.get_config("k0") == {"i": 98}  # the last write to k0 (98 % 7 == 0)
    assert Store.open(tmp_path / "db").get_config("k6") == {"i": 97}


def test_versions_younger_than_the_grace_are_kept(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "VERSION_GRACE", timedelta(hours=1))
    monkeypatch.setattr(store_module, "VERSION_PRUNE_EVERY", 32)
    monkeypatch.setattr(store_module, "VERSIONS_KEPT", 8)
    store = Store.init(tmp_path / "db")
    before = len(store.table("config").list_versions())
    _commit_many(store, 100)
    assert len(store.table("config").list_versions()) == before + 100


def test_a_big_references_table_gets_lookup_indexes_and_reads_stay_right(tmp_path, monkeypatch) -> None:
    import numpy as np

    monkeypatch.setattr(store_module, "LOOKUP_INDEX_ROWS", 10)
    store = Store.init(tmp_path / "db")
    library = store.library("default")
    rng = np.random.default_rng(0)
    ids = [
        library.register(f"E{i}", "prop", images=[rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)]).id
        for i in range(40)
    ]
    indexed = {c for index in store.references.list_indices() for c in index.columns}
    assert {"entity_id", "id"} <= indexed
    late = library.register("Late", "prop", images=[rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)])
    for entity_id in (ids[3], late.id):  # indexed rows and a row appended after the index
        refs = library.references(entity_ids=[entity_id], with_vectors=False)
        assert [r.entity_id for r in refs] == [entity_id]
        assert set(library.images([refs[0].id])) == {refs[0].id}


def test_a_big_tokens_table_gets_its_reference_id_index_and_reads_stay_right(tmp_path, monkeypatch) -> None:
    import numpy as np

    from memstore.tokens import TokenCache

    monkeypatch.setattr(store_module, "LOOKUP_INDEX_ROWS", 10)
    store = Store.init(tmp_path / "db")
    library = store.library("default")
    rng = np.random.default_rng(0)
    refs = library.add_images(
        library.register("E", "prop"), [rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) for _ in range(20)]
    )
    cache = TokenCache(library)
    for i, ref in enumerate(refs):  # 20 writes: the store looks at the table every 16th
        cache.put(ref, "test:tokens", np.full((2, 3), i, np.float32))
    indexed = {c for index in store.tokens.list_indices() for c in index.columns}
    assert "reference_id" in indexed
    assert [float(cache.get(r.id, "test:tokens")[0, 0]) for r in refs] == [float(i) for i in range(20)]
