"""Library: register, read, update, rename, remove; isolation; dedup; bad input leaves the store as it was."""

from __future__ import annotations

import numpy as np
import pytest

from memstore.errors import (
    ContinuityError,
    DuplicateEntityError,
    EntityNotFoundError,
    FilterError,
    InvalidInputError,
    InvalidNameError,
    NotAStoreError,
    StoreError,
    VectorError,
)
from memstore.store import Store
from tests.conftest import solid


def snapshot(store: Store) -> dict:
    """Everything a failed call must leave unchanged."""
    return {
        name: (store.table(name).version, store.table(name).count_rows())
        for name in ("entities", "references", "tokens", "config")
    }


def test_register_and_get_by_name_alias_and_id(library, photos):
    aria = library.register(
        "Aria",
        "character",
        images=[photos["astronaut"]],
        aliases=["the knight"],
        description="a red-haired knight",
        tags=["hero"],
        rights={"owner": "Studio", "consent": True},
    )
    assert library.get("aria").id == aria.id
    assert library.get("The Knight").id == aria.id
    assert library.get(aria.id).name == "Aria"
    assert library.get("Aria").rights.owner == "Studio"
    refs = library.references("Aria", with_images=True)
    assert len(refs) == 1 and refs[0].width == 512 and refs[0].height == 512
    assert refs[0].pil().size == (512, 512)
    assert "color_histogram_rgb8" in refs[0].vectors


def test_accepts_path_bytes_pil_and_array(library, tmp_path, photos):
    from PIL import Image

    path = tmp_path / "cat.png"
    Image.fromarray(photos["chelsea"]).save(path)
    library.register(
        "Cat", "character", images=[str(path), path.read_bytes(), Image.fromarray(photos["coffee"]), photos["rocket"]]
    )
    refs = library.references("Cat")
    # the path and the bytes are the same file: stored once
    assert len(refs) == 3
    assert len({r.sha256 for r in refs}) == 3


def test_file_bytes_are_kept_byte_identical(library, tmp_path, photos):
    from PIL import Image

    path = tmp_path / "a.jpg"
    Image.fromarray(photos["astronaut"]).save(path, quality=90)
    library.register("Astro", "character", images=[path])
    ref = library.references("Astro", with_images=True)[0]
    assert ref.image == path.read_bytes()
    assert ref.image_format == "jpeg"


def test_same_bytes_for_same_entity_stored_once(library, photos):
    library.register("Aria", "character", images=[photos["astronaut"]])
    again = library.add_images("Aria", [photos["astronaut"], photos["astronaut"]])
    assert len(library.references("Aria")) == 1
    assert again[0].id == again[1].id == library.references("Aria")[0].id
    # ...but another entity may hold the same picture
    library.register("Double", "character", images=[photos["astronaut"]])
    assert len(library.references("Double")) == 1


def test_list_filters_by_kind_and_tag(library):
    library.register("Aria", "character", tags=["hero"])
    library.register("Bram", "character", tags=["villain"])
    library.register("Castle", "location", tags=["hero"])
    assert [e.name for e in library.list(kind="character")] == ["Aria", "Bram"]
    assert [e.name for e in library.list(tag="hero")] == ["Aria", "Castle"]
    assert [e.name for e in library.list(kind="location", tag="hero")] == ["Castle"]


def test_update_and_rename_keep_old_name_as_alias(library):
    library.register("Aria", "character", description="old")
    library.update("Aria", description="new", tags=["x"], attributes={"hair": "red"})
    e = library.get("Aria")
    assert (e.description, e.tags, e.attributes) == ("new", ["x"], {"hair": "red"})
    renamed = library.rename("Aria", "Aria Vance")
    assert renamed.name == "Aria Vance" and "Aria" in renamed.aliases
    assert library.get("Aria").id == e.id  # old scripts still resolve
    with pytest.raises(InvalidInputError):
        library.update("Aria", name="nope")


def test_remove_deletes_references_and_tokens(library, store, photos):
    aria = library.register("Aria", "character", images=[photos["astronaut"], photos["rocket"]])
    ref = library.references(aria)[0]
    store.tokens.add(
        [
            {
                "reference_id": ref.id,
                "library": "default",
                "entity_id": aria.id,
                "spec": "s",
                "ref_sha256": ref.sha256,
                "dtype": "float16",
                "shape": [2],
                "data": b"\0\0\0\0",
                "created": None,
            }
        ]
    )
    library.remove("Aria")
    assert library.find("Aria") is None
    assert store.references.count_rows() == 0
    assert store.tokens.count_rows() == 0
    with pytest.raises(EntityNotFoundError):
        library.remove("Aria")


def test_libraries_are_isolated(store, photos):
    a, b = store.library("studio-a"), store.library("studio-b")
    a.register("Aria", "character", images=[photos["astronaut"]])
    b.register("Aria", "character", images=[photos["chelsea"]])  # same name, other tenant: allowed
    b.register("Bram", "character")
    assert [e.name for e in a.list()] == ["Aria"]
    assert a.get("Aria").id != b.get("Aria").id
    assert a.find("Bram") is None
    assert all(r.library == "studio-a" for r in a.references())
    vec = b.references("Aria")[0].vectors["color_histogram_rgb8"]
    hits = a.search(vec, k=10)
    assert hits and all(r.library == "studio-a" for _, r in hits)


def test_duplicate_names_and_aliases_refused(library, store):
    library.register("Aria", "character", aliases=["the knight"])
    before = snapshot(store)
    for name, aliases in [("aria", []), ("ARIA ", []), ("Bram", ["The Knight"]), ("the knight", [])]:
        with pytest.raises(DuplicateEntityError):
            library.register(name, "character", aliases=aliases)
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "name", ["a/b", "a\\b", "bad\x00name", "tab\tname", "", "   ", "..", "x" * 201, "zero\u200bwidth"]
)
def test_bad_names_refused(library, store, name):
    before = snapshot(store)
    with pytest.raises(InvalidNameError):
        library.register(name, "character")
    assert snapshot(store) == before


def test_injection_in_names_and_filters_is_literal(library, store):
    library.register("Aria", "character", tags=["hero"])
    evil = "x' OR '1'='1"
    assert library.find(evil) is None
    with pytest.raises(EntityNotFoundError):
        library.get(evil)
    with pytest.raises(FilterError):
        library.list(kind=evil)
    with pytest.raises(FilterError):
        library.list(tag="hero' OR '1'='1")
    # as a stored name it is just text
    library.register(evil, "prop")
    assert library.get(evil).name == evil
    assert {e.name for e in library.list()} == {"Aria", evil}
    with pytest.raises(InvalidNameError):
        store.library("a' OR '1'='1")


def test_bad_kind_and_era_refused(library, store, photos):
    before = snapshot(store)
    with pytest.raises(FilterError):
        library.register("Aria", "monster")
    with pytest.raises(InvalidNameError):
        library.register("Aria", "character", images=[photos["astronaut"]], era="a'; drop")
    assert snapshot(store) == before


def test_bad_vectors_refused(library, store, photos):
    library.register("Aria", "character")
    before = snapshot(store)
    col = "color_histogram_rgb8"
    for bad in (np.full(512, np.nan), np.full(512, np.inf), np.ones(511), np.zeros(512)):
        with pytest.raises(VectorError):
            library.add_images("Aria", [photos["astronaut"]], vectors={col: bad})
    with pytest.raises(VectorError):
        library.add_images("Aria", [photos["astronaut"]], vectors={"nope": np.ones(3)})
    assert snapshot(store) == before
    # a good precomputed vector is stored as given (normalised)
    vec = np.random.default_rng(0).random(512)
    ref = library.add_images("Aria", [photos["astronaut"]], vectors={col: vec})[0]
    stored = library.references("Aria")[0].vectors[col]
    assert np.allclose(stored, vec / np.linalg.norm(vec), atol=1e-6) and ref.id


def test_failure_mid_batch_leaves_no_half_entity(library, store, tmp_path, photos):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray(photos["chelsea"]).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:200])
    before = snapshot(store)
    with pytest.raises(Exception) as info:
        library.register("Cat", "character", images=[good, good.read_bytes() + b"", bad])
    assert "truncated" in str(info.value) or "corrupt" in str(info.value)
    assert snapshot(store) == before
    # a batch of several entities where the second is bad: nothing written
    first = library.prepare("One", "character", images=[good])
    with pytest.raises(ContinuityError):
        library.commit([first, library.prepare("Two", "character", images=[bad])])
    assert snapshot(store) == before


def test_commit_rolls_back_references_when_entity_write_fails(library, store, photos, monkeypatch):
    prepared = library.prepare("Aria", "character", images=[photos["astronaut"]])
    before_refs = store.references.count_rows()
    real_table = type(store).entities.fget

    class Exploding:
        def __init__(self, table):
            self._t = table

        def add(self, rows):
            raise OSError("disk full")

        def __getattr__(self, name):
            return getattr(self._t, name)

    monkeypatch.setattr(type(store), "entities", property(lambda s: Exploding(real_table(s))))
    with pytest.raises(OSError):
        library.commit([prepared])
    monkeypatch.undo()
    assert store.references.count_rows() == before_refs
    assert library.find("Aria") is None


def test_open_refuses_non_stores(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hi")
    with pytest.raises(NotAStoreError):
        Store.open(tmp_path / "notes")
    with pytest.raises(NotAStoreError):
        Store.init(tmp_path / "notes")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotAStoreError):
        Store.open(tmp_path / "file")
    with pytest.raises(StoreError):
        Store.open(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_reopen_sees_everything(tmp_path, photos):
    store = Store.init(tmp_path / "db")
    store.library("default").register("Aria", "character", images=[photos["astronaut"]])
    again = Store.open(tmp_path / "db").library("default")
    assert again.get("Aria").name == "Aria"
    assert len(again.references("Aria")) == 1


def test_repair_removes_orphans(library, store, photos):
    prepared = library.prepare("Ghost", "character", images=[photos["astronaut"]])
    library._ensure_columns(prepared.references)
    store.references.add([r.to_row() for r in prepared.references])  # as if a crash hit before the entity row
    assert library.find("Ghost") is None
    assert store.repair()["references"] == 1
    assert store.references.count_rows() == 0


def test_solid_helper_is_an_image(library):
    library.register("Red", "style", images=[solid((255, 0, 0))])
    ref = library.references("Red", with_images=True)[0]
    assert ref.pil().getpixel((0, 0)) == (255, 0, 0)


def test_embedder_mismatch_on_column(store, photos):
    from memstore.errors import EmbedderMismatchError

    store.library("a").register("Aria", "character", images=[photos["astronaut"]])
    before = snapshot(store)
    with pytest.raises(EmbedderMismatchError) as info:
        store.library("b").configure(
            embedders=[{"type": "color-histogram", "bins": 4, "column": "color_histogram_rgb8"}]
        )
    assert "color-histogram:rgb8" in str(info.value) and "rgb4" in str(info.value)
    assert snapshot(store) == before


def test_init_recreates_a_table_a_crash_left_without_a_version(tmp_path):
    """A kill inside create_table can leave `<name>.lance/` with a transaction but no manifest:
    listed, yet unopenable. init must re-create it; a table with data is never touched."""
    import shutil

    path = tmp_path / "db"
    store = Store.init(path)
    store.library("default").register("Keep", "prop")
    folder = path / "tokens.lance"
    shutil.rmtree(folder / "_versions")
    (folder / "_versions").mkdir()
    fixed = Store.init(path)
    assert fixed.tokens.count_rows() == 0
    assert fixed.library("default").get("Keep").name == "Keep"
    shots = path / "shots.lance" / "_versions"
    shots.mkdir(parents=True)  # a half-made shots table
    assert Store.open(path).shots.count_rows() == 0


def test_open_repairs_a_half_made_table_and_refuses_a_broken_one(tmp_path):
    import shutil

    from memstore.errors import StoreError

    path = tmp_path / "db"
    Store.init(path).library("default").register("Keep", "prop")
    shutil.rmtree(path / "tokens.lance" / "_versions")
    (path / "tokens.lance" / "_versions").mkdir()
    assert Store.open(path).tokens.count_rows() == 0  # re-created: it never held anything
    for manifest in (path / "entities.lance" / "_versions").glob("*.manifest"):
        manifest.write_bytes(b"garbage")  # committed data that no longer reads
    with pytest.raises(StoreError):
        Store.open(path)


def test_interrupted_init_is_finished_by_open_with_create(tmp_path):
    import shutil

    path = tmp_path / "db"
    path.mkdir()
    (path / ".write.lock").touch()  # all a kill right at the start of init leaves
    assert Store.open(path, create=True).library("default").register("A", "prop").name == "A"
    shutil.rmtree(path / "tokens.lance")  # a kill before the last table was created
    with pytest.raises(NotAStoreError):
        Store.open(path)
    assert Store.open(path, create=True).tokens.count_rows() == 0
    other = tmp_path / "notes"
    other.mkdir()
    (other / ".write.lock").touch()
    (other / "diary.txt").write_text("mine")  # someone else's folder stays refused
    with pytest.raises(NotAStoreError):
        Store.open(other, create=True)
