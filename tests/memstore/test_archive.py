"""Export one library and import it elsewhere: nothing lost, nothing of other libraries carried."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from memstore.archive import import_library, read_archive
from memstore.errors import ArchiveError, DuplicateEntityError, EmbedderMismatchError
from memstore.store import Store
from tests.memstore.test_library import snapshot


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
