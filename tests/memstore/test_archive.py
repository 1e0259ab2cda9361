"""Export one library and import it elsewhere: nothing lost, nothing of other libraries carried."""

from __future__ import annotations

import datetime as dt
import zipfile

import numpy as np
import pytest

from memstore.archive import import_library, read_archive
from memstore.errors import ArchiveError, DuplicateEntityError, EmbedderMismatchError, InvalidInputError
from memstore.store import Store
from tests.memstore.test_library import snapshot
from tests.memstore.workers.archives import bomb, craft, set_values


def fill(store: Store, photos):
    lib = store.library("studio")
    lib.register(
        "Aria",
        "character",
        images=[photos["astronaut"], photos["rocket"]],
        aliases=["the knight"],
        description="red-haired knight",
        tags=["hero"],
        attributes={"hair": "red"},
        rights={"owner": "Studio", "license": "CC-BY", "consent": True, "expires": "2030-01-01T00:00:00Z"},
    )
    lib.add_images("Aria", [photos["coffee"]], era="armored")
    lib.register("Keep", "location", images=[photos["chelsea"]])
    ref = lib.references("Aria")[0]
    store.tokens.add(
        [
            {
                "reference_id": ref.id,
                "library": "studio",
                "entity_id": ref.entity_id,
                "spec": "x:y",
                "ref_sha256": ref.sha256,
                "dtype": "float16",
                "shape": [2, 2],
                "data": b"\1" * 8,
                "created": None,
            }
        ]
    )
    other = store.library("other")
    other.register("Secret", "character", images=[photos["chelsea"]])
    return lib


def test_round_trip_loses_nothing(tmp_path, photos):
    src = Store.init(tmp_path / "a")
    lib = fill(src, photos)
    out = tmp_path / "studio.continuity"
    counts = lib.export(out)
    assert counts == {"entities": 2, "references": 4, "tokens": 1}
    dst = Store.init(tmp_path / "b")
    import_library(dst, out)
    got = dst.library("studio")
    for name in ("Aria", "Keep"):
        a, b = lib.get(name), got.get(name)
        assert a.model_dump() == b.model_dump()
        ra = {r.id: r for r in lib.references(name, with_images=True)}
        rb = {r.id: r for r in got.references(name, with_images=True)}
        assert ra.keys() == rb.keys()
        for rid in ra:
            assert ra[rid].image == rb[rid].image
            assert ra[rid].model_dump(exclude={"vectors", "image"}) == rb[rid].model_dump(exclude={"vectors", "image"})
            for col, vec in ra[rid].vectors.items():
                assert np.array_equal(vec, rb[rid].vectors[col])
    assert dst.tokens.count_rows() == 1
    assert dst.vector_columns() == src.vector_columns()
    assert dst.library("other").list() == []


def test_export_holds_only_that_library(tmp_path, photos):
    src = Store.init(tmp_path / "a")
    lib = fill(src, photos)
    out = tmp_path / "x.zip"
    lib.export(out)
    manifest, tables = read_archive(out)
    for table in tables.values():
        assert set(table.column("library").to_pylist()) <= {"studio"}
    assert "Secret" not in tables["entities"].column("name").to_pylist()


def test_import_under_another_name_and_clashes_refused(tmp_path, photos):
    src = Store.init(tmp_path / "a")
    lib = fill(src, photos)
    out = tmp_path / "x.zip"
    lib.export(out)
    dst = Store.init(tmp_path / "b")
    import_library(dst, out, library="copy")
    assert [e.name for e in dst.library("copy").list()] == ["Aria", "Keep"]
    before = snapshot(dst)
    with pytest.raises(ArchiveError):  # same ids again
        import_library(dst, out, library="copy2")
    assert snapshot(dst) == before
    # names clash in the target library: refused whole
    dst.library("studio").register("Keep", "location")
    before = snapshot(dst)
    with pytest.raises((DuplicateEntityError, ArchiveError)):
        import_library(dst, out)
    assert snapshot(dst) == before


def test_corrupt_archives_refused(tmp_path, photos):
    dst = Store.init(tmp_path / "b")
    before = snapshot(dst)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ArchiveError):
        import_library(dst, bad)
    with zipfile.ZipFile(tmp_path / "partial.zip", "w") as zf:
        zf.writestr("manifest.json", "{}")
    with pytest.raises(ArchiveError):
        import_library(dst, tmp_path / "partial.zip")
    with pytest.raises(ArchiveError):
        import_library(dst, tmp_path / "missing.zip")
    assert snapshot(dst) == before


def test_embedder_mismatch_refused(tmp_path, photos):
    src = Store.init(tmp_path / "a")
    lib = fill(src, photos)
    out = tmp_path / "x.zip"
    lib.export(out)
    dst = Store.init(tmp_path / "b")
    other = dst.library("default")
    other.configure(embedders=[{"type": "color-histogram", "bins": 4, "column": "color_histogram_rgb8"}])
    other.register("Z", "character", images=[photos["coffee"]])
    before = snapshot(dst)
    with pytest.raises(EmbedderMismatchError):
        import_library(dst, out)
    assert snapshot(dst) == before


# --- hostile archives: every rule of registration holds on import -------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One real export for every hostile variant below (never changed: each test crafts a copy)."""
    from skimage import data

    photos = {name: getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket")}
    folder = tmp_path_factory.mktemp("exported")
    lib = fill(Store.init(folder / "src"), photos)
    path = folder / "studio.continuity"
    lib.export(path)
    return path


def _refused(tmp_path, archive, error=ArchiveError, match=None):
    dst = Store.init(tmp_path / "dst") if not (tmp_path / "dst").exists() else Store.open(tmp_path / "dst")
    before = snapshot(dst)
    schema = dst.references.schema
    with pytest.raises(error, match=match) as info:
        import_library(dst, archive)
    assert "\n" not in str(info.value)
    assert snapshot(dst) == before and dst.references.schema == schema
    return dst


def _names(table):
    return table.column("name").to_pylist()


@pytest.mark.parametrize(
    ("name", "change", "match"),
    [
        ("duplicate id", lambda t: set_values("id", [t.column("id")[0].as_py()] * 2)(t), "used twice"),
        ("twin names", lambda t: set_values("name", ["Twin", "twin"])(t), "also used by 'Twin'"),
        ("alias equals a name", lambda t: set_values("aliases", [["keep"], []])(t), "also used by"),
        ("unknown kind", lambda t: set_values("kind", ["villain", "location"])(t), "kind"),
        ("NUL in a name", lambda t: set_values("name", ["A\x00B", "Keep"])(t), "control"),
        ("path in a name", lambda t: set_values("name", ["../etc", "Keep"])(t), "path separator"),
        ("bad id", lambda t: set_values("id", ["../x", t.column("id")[1].as_py()])(t), "entity id"),
        ("bad attributes", lambda t: set_values("attributes", ["[1]", "{}"])(t), "attributes"),
        ("poisoned expiry", lambda t: set_values("rights_expires", [dt.datetime(9500, 1, 1), None])(t), "1900-9000"),
    ],
)
def test_hostile_entity_rows_refused_whole(tmp_path, exported, name, change, match):
    archive = craft(exported, tmp_path / f"{name}.zip", entities=change)
    _refused(tmp_path, archive, match=match)


def test_forged_name_keys_are_recomputed(tmp_path, exported):
    """An archive's name_key column is never trusted: a forged key cannot smuggle in a twin."""
    dst = Store.init(tmp_path / "dst")
    dst.library("studio").register("keep", "prop")
    archive = craft(exported, tmp_path / "forged.zip", entities=set_values("name_key", ["x1", "x2"]))
    _refused(tmp_path, archive, DuplicateEntityError, match="'Keep' is already used by 'keep'")


def test_hostile_reference_rows_refused_whole(tmp_path, exported, photos):
    """(Tokens dropped: each change must be caught by the references' own checks.)"""
    other = Store.init(tmp_path / "dst").library("elsewhere")
    taken = other.register("Other", "prop", images=[photos["astronaut"]])
    taken_ref = other.references(taken)[0].id

    def reuse_id(t):
        return set_values("id", [taken_ref, *t.column("id").to_pylist()[1:]])(t)

    def orphan(t):
        return set_values("entity_id", ["f" * 32, *t.column("entity_id").to_pylist()[1:]])(t)

    def wrong_kind(t):
        return set_values("kind", ["prop", *t.column("kind").to_pylist()[1:]])(t)

    def twin_ref(t):
        ids = t.column("id").to_pylist()
        return set_values("id", [ids[0], ids[0][:16] + "0" * 16, *ids[2:]])(t)

    def bad_sha(t):
        return set_values("sha256", ["0" * 64, *t.column("sha256").to_pylist()[1:]])(t)

    def huge(t):
        return set_values("width", [10**6, *t.column("width").to_pylist()[1:]])(t)

    for change, match in [
        (reuse_id, "already exists in this store"),
        (orphan, "belongs to no entity"),
        (wrong_kind, "differs from its entity"),
        (twin_ref, "used twice"),
        (bad_sha, "sha256"),
        (huge, "pixels"),
    ]:
        archive = craft(
            exported, tmp_path / f"{change.__name__}.zip", references=change, tokens=lambda t: t.slice(0, 0)
        )
        _refused(tmp_path, archive, match=match)


def test_unconfigured_manifest_vector_column_is_not_added_to_the_store(tmp_path, exported):
    import pyarrow as pa

    def extra(t):
        vectors = pa.array([[0.5] * 4] * t.num_rows, pa.list_(pa.float32(), 4))
        return t.append_column("evil_vectors", vectors)

    def declare(meta):
        meta["vector_columns"]["evil_vectors"] = {"embedder": "evil", "spec": "evil:1", "dim": "4"}

    archive = craft(exported, tmp_path / "extra.zip", references=extra, manifest=declare)
    dst = Store.init(tmp_path / "dst")
    result = import_library(dst, archive)
    assert result["dropped_columns"] == ["evil_vectors"]
    assert "evil_vectors" not in dst.references.schema.names
    assert len(dst.library("studio").list()) == 2


def test_vector_column_must_match_its_arrow_field(tmp_path, exported):
    def lie(meta):
        meta["vector_columns"]["color_histogram_rgb8"]["dim"] = "8"

    _refused(tmp_path, craft(exported, tmp_path / "lie.zip", manifest=lie), match="the manifest says 8-d")


@pytest.mark.parametrize("factory", ["HNSW2000000000,Flat", "HNSW2,Flat", "IVF100000,Flat", "IDMap,Flat", "PQ8", ""])
def test_index_factory_outside_the_allowed_set_refused(tmp_path, exported, factory):
    def evil(meta):
        meta["config"]["index_factory"] = factory

    _refused(tmp_path, craft(exported, tmp_path / "factory.zip", manifest=evil), match="index factory")
    lib = Store.open(tmp_path / "dst").library("studio")
    with pytest.raises(InvalidInputError, match="not allowed"):
        lib.configure(index_factory=factory)


@pytest.mark.parametrize("factory", ["auto", "Flat", "HNSW4,Flat", "HNSW128,Flat", "IVF65536,Flat", "IVF2,Flat"])
def test_allowed_index_factories(library, factory):
    library.configure(index_factory=factory)
    assert library.config["index_factory"] == factory


def test_poisoned_index_factory_in_a_store_is_refused_before_faiss(library, photos):
    library.register("A", "prop", images=[photos["coffee"]])
    library.store.set_config("library:default", {**library.config, "index_factory": "HNSW2000000000,Flat"})
    library.store.forget_indexes()
    with pytest.raises(InvalidInputError, match="continuity configure"):
        library.search(np.ones(512, np.float32))


def test_zip_bomb_refused_by_its_header_before_inflating(tmp_path):
    import time

    archive = bomb(tmp_path / "bomb.zip", 64 << 20)
    assert archive.stat().st_size < (64 << 20) // 500
    started = time.perf_counter()
    dst = _refused(tmp_path, archive, match="zip bomb")
    assert time.perf_counter() - started < 1.0
    assert dst.entities.count_rows() == 0


def test_zip_bomb_lying_about_its_size_is_stopped_while_streaming(tmp_path):
    archive = bomb(tmp_path / "liar.zip", 64 << 20, declared=1000)
    _refused(tmp_path, archive, match="corrupt|limit")


def test_member_over_the_size_limit_refused(tmp_path, exported, monkeypatch):
    import memstore.archive as archive

    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 1000)
    _refused(tmp_path, exported, match="over the limit")


def test_hostile_token_rows_refused_whole(tmp_path, exported):
    for change, match in [
        (set_values("shape", [[1000, 1000]]), "data bytes"),
        (set_values("dtype", ["object"]), "dtype"),
        (set_values("reference_id", ["f" * 32]), "not an archive reference"),
    ]:
        _refused(tmp_path, craft(exported, tmp_path / "tokens.zip", tokens=change), match=match)
