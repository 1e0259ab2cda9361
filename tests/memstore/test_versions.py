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
