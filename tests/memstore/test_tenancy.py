"""Libraries are tenants: randomized stores where several libraries share names and even identical
images, and every read of one library (list, get, find, references, entities_by_id, vector search,
its FAISS index, export) returns only that library's rows; removing in one touches no other."""

from __future__ import annotations

import random

import numpy as np
import pytest

from memstore.archive import read_archive
from memstore.errors import EntityNotFoundError
from memstore.store import Store
from memstore.validation import KINDS
from tests.memstore.workers.common import tiny_png

LIBRARIES = ["default", "studio-a", "Brand.B"]
NAMES = ["Aria", "Bram", "Castle", "Sword", "Noir", "Mira", "Tower", "Lamp"]
COLUMN = "color_histogram_rgb8"


def build(tmp_path, seed: int):
    """A store where each library holds a random subset of the shared names, some with images
    that another library holds too."""
    rng = random.Random(seed)
    store = Store.init(tmp_path / f"db{seed}")
    shared_images = [tiny_png(rng) for _ in range(4)]
    truth: dict[str, dict[str, str]] = {}  # library -> name -> entity id
    for lib_name in LIBRARIES:
        lib = store.library(lib_name)
        truth[lib_name] = {}
        for name in rng.sample(NAMES, rng.randint(3, len(NAMES))):
            images = [tiny_png(rng) for _ in range(rng.randint(0, 2))] + rng.sample(shared_images, rng.randint(0, 2))
            ent = lib.register(name, rng.choice(KINDS), images=images, tags=[rng.choice(["a", "b"])])
            truth[lib_name][name] = ent.id
    return store, truth, rng


def all_refs(store: Store) -> list[dict]:
    return store.references.to_lance().to_table(columns=["id", "key", "library", "entity_id", COLUMN]).to_pylist()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reads_never_cross_libraries(tmp_path, seed):
    store, truth, _ = build(tmp_path, seed)
    refs = all_refs(store)
    every_entity_id = [i for names in truth.values() for i in names.values()]
    every_ref_id = [r["id"] for r in refs]
    for lib_name, names in truth.items():
        lib = store.library(lib_name)
        mine = set(names.values())
        my_refs = {r["id"] for r in refs if r["library"] == lib_name}
        assert {e.id for e in lib.list()} == mine
        for kind in KINDS:
            assert {e.id for e in lib.list(kind=kind)} <= mine
        for tag in ("a", "b"):
            assert all(e.library == lib_name for e in lib.list(tag=tag))
        for name in NAMES:
            if name in names:
                assert lib.get(name).id == names[name]
                assert {r.entity_id for r in lib.references(name)} <= {names[name]}
            else:
                assert lib.find(name) is None
                with pytest.raises(EntityNotFoundError):
                    lib.get(name)
        for other_id in set(every_entity_id) - mine:
            assert lib.find(other_id) is None
        assert set(lib.entities_by_id(every_entity_id)) == mine
        assert {r.id for r in lib.references()} == my_refs
        assert {r.id for r in lib.references(ids=every_ref_id)} == my_refs
        assert lib.count() == {"entities": len(mine), "references": len(my_refs)}
        if my_refs:
            index = store.index(lib_name, COLUMN)
            assert set(index.live_keys().tolist()) == {r["key"] for r in refs if r["library"] == lib_name}
        # vector search: a random query and every reference's own vector (also other libraries')
        queries = [np.random.default_rng(seed).random(512)]
        queries += [np.asarray(r[COLUMN], np.float32) for r in refs if r[COLUMN] is not None]
        for n, query in enumerate(queries):  # every vector unfiltered; the kind filters on three
            for kind in (None, *KINDS) if n < 3 else (None,):
                hits = lib.search(query, COLUMN, k=len(refs) + 5, kind=kind)
                assert {ref.id for _, ref in hits} <= my_refs
                assert all(ref.library == lib_name for _, ref in hits)
                if kind is None:
                    assert len(hits) == len(my_refs)


@pytest.mark.parametrize("seed", [4, 5])
def test_export_holds_only_its_library_and_imports_alone(tmp_path, seed):
    store, truth, _ = build(tmp_path, seed)
    refs = all_refs(store)
    for lib_name, names in truth.items():
        path = tmp_path / f"{lib_name}.zip"
        store.library(lib_name).export(path)
        manifest, tables = read_archive(path)
        assert manifest["library"] == lib_name
        assert set(tables["entities"].column("id").to_pylist()) == set(names.values())
        assert set(tables["references"].column("id").to_pylist()) == {r["id"] for r in refs if r["library"] == lib_name}
        for table in tables.values():
            assert set(table.column("library").to_pylist()) <= {lib_name}
        fresh = Store.init(tmp_path / f"fresh-{lib_name}")
        from memstore.archive import import_library

        import_library(fresh, path)
        assert fresh.libraries() == [lib_name]
        assert {e.name for e in fresh.library(lib_name).list()} == set(names)


@pytest.mark.parametrize("seed", [6, 7])
def test_writes_in_one_library_leave_the_others_alone(tmp_path, seed):
    store, truth, rng = build(tmp_path, seed)

    def content(lib_name):
        lib = store.library(lib_name)
        return (sorted((e.id, e.name, tuple(e.aliases)) for e in lib.list()), sorted(r.id for r in lib.references()))

    target = rng.choice(LIBRARIES)
    others = {name: content(name) for name in LIBRARIES if name != target}
    lib = store.library(target)
    for name in list(truth[target])[:2]:
        lib.remove(name)
    survivor = next(iter(list(truth[target])[2:]), None)
    if survivor:
        lib.update(survivor, aliases=[n for n in NAMES if n not in truth[target]][:2], description="changed")
        lib.add_images(survivor, [tiny_png(rng)])
    lib.register("Only here", "prop", images=[tiny_png(rng)])
    # a name that another library holds may be registered here, and is not seen there
    store.repair()
    assert {name: content(name) for name in LIBRARIES if name != target} == others
    for other in others:
        assert store.library(other).find("Only here") is None
