"""The hot index's in-memory sidecar (key -> kind, entity) stays in step through append, delete,
rename and reopen; factory choice by size; the cheap version watch sees every commit."""

from __future__ import annotations

import pytest

from memstore.index import choose_factory
from memstore.store import Store, VersionWatch

from .conftest import image

COL = "color_histogram_rgb8"


def truth(store, library="default"):
    lib = store.library(library)
    return {r.key: r.entity_id for r in lib.references(with_vectors=False)}


def sidecar(index):
    return dict(zip(index.keys.tolist(), index.entity_of(index.keys), strict=False))


def test_sidecar_in_step_after_append_delete_and_reopen(tmp_path):
    store = Store.init(tmp_path / "db")
    lib = store.library("default")
    lib.register("Aria", "character", images=[image(1), image(2)])
    lib.register("Bram", "character", images=[image(3)])
    index = store.index("default", COL)
    assert sidecar(index) == truth(store)
    lib.add_images("Aria", [image(4)])
    lib.register("Cara", "location", images=[image(5)])
    index = store.index("default", COL)
    assert index.appends >= 1 and sidecar(index) == truth(store)
    lib.remove("Bram")
    index = store.index("default", COL)
    assert sidecar(index) == truth(store)
    assert index.entity_of([-1, 12345]) == [None, None]
    reopened = Store.open(tmp_path / "db").index("default", COL)
    assert reopened.rebuilds == 0 and sidecar(reopened) == truth(store)
    # a search maps straight to entities without reading Lance
    ref = lib.references("Cara")[0]
    _, ids = reopened.search(ref.vectors[COL], 1)
    assert reopened.entity_of(ids[0]) == [lib.get("Cara").id]


def test_missing_or_mismatched_sidecar_is_rebuilt(tmp_path):
    store = Store.init(tmp_path / "db")
    store.library("default").register("Aria", "character", images=[image(1), image(2)])
    index = store.index("default", COL)
    index.keys_path.unlink()  # e.g. files of an older version
    fresh = Store.open(tmp_path / "db").index("default", COL)
    assert fresh.rebuilds == 1 and sidecar(fresh) == truth(store)
    # a sidecar from another save (same count, other keys) must not be paired with this FAISS file
    from memstore.index import _save_sidecar

    _save_sidecar(str(fresh.keys_path), {**fresh._sidecar(), "keys": fresh.keys[::-1] + 1})
    again = Store.open(tmp_path / "db").index("default", COL)
    assert again.rebuilds == 1 and sidecar(again) == truth(store)


@pytest.mark.parametrize(
    "count, expected",
    [
        (10, "Flat"),
        (50_000, "Flat"),
        (100_000, "PQ128x4fs,RFlat"),
        (1_000_000, "PQ128x4fs,RFlat"),
        (2_000_000, "PQ128x4fs,RFlat"),
        (2_000_001, "IVF2048,Flat"),
        (4_000_000, "IVF4096,Flat"),
    ],
)
def test_auto_factory_by_size(count, expected):
    assert choose_factory("auto", count, 512) == expected
    assert choose_factory("HNSW16,Flat", count, 512) == "HNSW16,Flat"


def test_auto_quantizes_by_the_dimension_and_falls_back_to_hnsw():
    assert choose_factory("auto", 100_000, 128) == "PQ32x4fs,RFlat"  # dlib's face vectors
    assert choose_factory("auto", 100_000, 130) == "HNSW32,Flat"  # no whole d/4 sub-vectors


def test_ivf_index_from_library_config(store):
    lib = store.library("default")
    lib.configure(index_factory="IVF2,Flat")
    lib.register("Aria", "character", images=[image(i) for i in range(1, 9)])
    lib.register("Bram", "character", images=[image(i) for i in range(20, 28)])
    index = store.index("default", COL)
    assert index.built_factory == "IVF2,Flat" and index.ntotal == 16
    ref = lib.references("Bram")[3]
    _, ids = index.search(ref.vectors[COL], 1)
    assert ids[0][0] == ref.key  # nprobe covers both lists
    _, ids = index.search(ref.vectors[COL], 16, kind="location")
    assert (ids[0] == -1).all()


def test_version_watch_sees_every_commit(store):
    watch = VersionWatch(store, "references")
    lib = store.library("default")
    seen = [watch.version()]
    for i in range(5):  # commits in quick succession: the mtime shortcut must not hide any
        lib.register(f"E{i}", "prop", images=[image(40 + i)])
        seen.append(watch.version())
        assert seen[-1] == store.references.version
    assert seen == sorted(set(seen))
