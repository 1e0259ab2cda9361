"""What keeps ``Retriever.retrieve()`` at a few milliseconds: once warm, a shot reads no table (the
entities, their registered references and images are held per version), a changed entity is read
again on its own, and no signal costs a term per library entity."""

from __future__ import annotations

import time

import numpy as np
import pytest

from retrieval import Retriever, ShotQuery
from retrieval.catalog import EntityCatalog, allowed_ids
from retrieval.references import ReferenceCache
from retrieval.signals import PlaceReading, SignalInput, Term

from .conftest import image


@pytest.fixture
def cast(library):
    names = [f"Hero{i:02d}" for i in range(30)]
    prepared = [
        library.prepare(n, "character", images=[image(i)], description=f"hero number {i}") for i, n in enumerate(names)
    ]
    prepared += [library.prepare(f"Place{i}", "location", images=[image(100 + i)]) for i in range(5)]
    prepared += [
        library.prepare(f"Trinket{i}", "prop", description="a small silver trinket", images=[image(200 + i)])
        for i in range(20)
    ]
    library.commit(prepared)
    return library


class Calls:
    """Counts calls of a bound method (and passes them through)."""

    def __init__(self, monkeypatch, owner: object, name: str):
        self.inner = getattr(owner, name)
        self.args: list[tuple[tuple, dict]] = []
        monkeypatch.setattr(owner, name, self)

    def __call__(self, *args, **kwargs):
        self.args.append((args, kwargs))
        return self.inner(*args, **kwargs)


def test_a_warm_retrieve_reads_no_table(cast, monkeypatch):
    retriever = Retriever(cast)
    retriever.retrieve(ShotQuery("Hero00 waits"))  # warm: catalog, BM25 postings, references, images
    time.sleep(0.1)  # past VersionWatch's same-tick guard: versions are then read by a stat
    tables = Calls(monkeypatch, cast.store, "table")
    references = Calls(monkeypatch, cast, "references")
    images = Calls(monkeypatch, cast, "images")
    for i in range(1, 30, 3):
        result = retriever.retrieve(ShotQuery(f"Hero{i:02d} and Hero{i + 1:02d} walk past a silver trinket"))
        assert {f"Hero{i:02d}", f"Hero{i + 1:02d}"} <= {h.entity.name for h in result.hits}
        assert all(r.image for h in result.hits for r in h.references)
    assert (tables.args, references.args, images.args) == ([], [], [])


def test_a_changed_entity_is_read_again_alone(cast, monkeypatch):
    retriever = Retriever(cast)
    retriever.retrieve(ShotQuery("Hero03 waits"))
    (added,) = cast.add_images("Hero03", [image(999)])
    references = Calls(monkeypatch, cast, "references")
    result = retriever.retrieve(ShotQuery("Hero03 and Hero04 wait", references_per_entity=4))
    hero = next(h for h in result.hits if h.entity.name == "Hero03")
    assert added.id in {r.id for r in hero.references}
    assert [kw.get("entity_ids") for _, kw in references.args] == [[cast.get("Hero03").id]]


def test_a_large_library_is_read_entity_by_entity(cast):
    cache = ReferenceCache(cast, size=8, preload_entities=10)
    everyone = {e.id: e for e in cast.list()}
    cache.preload(everyone)  # 55 entities > 10: nothing read whole
    assert cache.reads == 0
    heroes = [e for e in everyone.values() if e.kind == "character"][:3]
    got = cache.registered(heroes)
    assert cache.reads == 1 and all(len(got[e.id]) == 1 for e in heroes)
    cache.registered(heroes)
    assert cache.reads == 1  # held
    cache.registered([e for e in everyone.values() if e.kind == "prop"][:10])
    assert len(cache._entries) == 10  # the bound: max(size, preload_entities)


def test_images_are_kept_within_their_byte_budget(cast):
    refs = cast.references(source="registered")[:4]
    sizes = {r.id: len(cast.images([r.id])[r.id]) for r in refs}
    cache = ReferenceCache(cast, image_bytes=sum(sizes[r.id] for r in refs[2:]))
    cache.images([r.id for r in refs])
    assert cache._image_total <= cache.image_bytes
    before = cache.reads
    assert cache.images([refs[3].id]) == {refs[3].id: cast.images([refs[3].id])[refs[3].id]}
    assert cache.reads == before  # the most recent one is held
    cache.images([refs[0].id])
    assert cache.reads == before + 1  # the oldest was let go


def _given(library, prompt: str) -> SignalInput:
    snap = EntityCatalog(library).get()
    allowed, notes = snap.allowed(ShotQuery(prompt))
    return SignalInput(
        query=ShotQuery(prompt),
        context=None,
        library=library,
        entities=snap.by_id,
        allowed=allowed,
        matcher=snap.matcher,
        version=snap.version,
        notes=notes,
        by_kind=snap.by_kind,
    )


def test_props_nothing_found_cost_no_damping_term(cast):
    given = _given(cast, "Hero01 looks at the silver sky")
    assert [t for t in PlaceReading().terms(given, ()) if t.signal == "unseen_prop"] == []
    trinket = cast.get("Trinket4").id
    found = (Term(trinket, "bm25", 0.6, "BM25 on description 1.20", 1.2),)
    damping = [t for t in PlaceReading().terms(given, found) if t.signal == "unseen_prop"]
    assert [t.entity_id for t in damping] == [trinket]  # a description word alone is no prop on screen


def test_snapshot_filters_are_shared_and_consent_is_checked_every_time(cast):
    snap = EntityCatalog(cast).get()
    assert snap.allowed(ShotQuery("x"))[0] is snap.everyone
    props = ShotQuery("x", kinds=("prop",))
    assert snap.allowed(props)[0] == allowed_ids(props, snap.by_id)[0]
    assert snap.allowed(props)[0] is snap.allowed(props)[0]  # kept per (kinds, tags)
    assert len(snap.by_kind["prop"]) == 20 and len(snap.by_kind["character"]) == 30
    consent = ShotQuery("x", require_consent=True)
    allowed, notes = snap.allowed(consent)
    assert allowed == frozenset() and notes and "require_consent" in notes[0]
    assert snap.allowed(consent)[1] is not notes  # computed afresh: rights expire with the clock


def test_text_vectors_top_k_by_partition_match_a_full_sort(bow, library):
    from retrieval.signals import EntityTextVectors

    for i in range(40):
        library.register(f"Name{i}", "prop", description=" ".join(["gold", "ring", "cup", "hat"][: 1 + i % 4]))
    vectors = EntityTextVectors(bow)
    entities = {e.id: e for e in library.list()}
    query = np.asarray(bow.embed_texts(["a gold ring"])[0], np.float32)
    hits = vectors.search(library.name, 1, entities.values(), query, k=7)
    ids, matrix = vectors.vectors(library.name, 1, entities.values())
    sims = matrix @ query
    assert [h.score for h in hits] == sorted(sims.tolist(), reverse=True)[:7]


def test_name_index_finds_what_the_scan_finds(library):
    from retrieval.catalog import NameIndex, find_entity

    library.register("Aria Vale", "character", aliases=["the knight", "Ari"])
    library.register("Bram", "character", aliases=["the smith"])
    by_id = {e.id: e for e in library.list()}
    index = NameIndex(by_id)
    for name in ["aria vale", "ARI", "The Smith", "bram", "nobody", next(iter(by_id))]:
        assert find_entity(name, by_id, index) == find_entity(name, by_id)
    assert index.find("nobody") is None and index.find("the KNIGHT").name == "Aria Vale"


def test_place_words_are_looked_up_not_scanned_and_follow_new_locations(library, monkeypatch):
    import retrieval.signals.place as place

    prepared = [library.prepare(f"Ward{i:03d}", "location", images=[image(300 + i)]) for i in range(150)]
    library.commit([*prepared, library.prepare("Mira", "character", images=[image(1)])])
    retriever = Retriever(library)
    retriever.retrieve(ShotQuery("Mira climbs the tower"))  # warm: the place nouns of this version
    calls = Calls(monkeypatch, place, "nouns_of")
    result = retriever.retrieve(ShotQuery("Mira waits inside the harbor, then climbs the tower"))
    assert len(calls.args) == 0  # per place word a dict lookup, not one call per location (150)
    assert "Mira" in result.names()
    library.register("Old Harbor", "location", images=[image(2)])
    found = retriever.retrieve(ShotQuery("Mira waits inside the harbor"))
    assert found.location is not None and found.location.name == "Old Harbor"  # the new version's index


def test_a_recurring_entitys_vector_matrix_is_kept_and_follows_an_added_reference(cast):
    cache = ReferenceCache(cast, size=8, preload_entities=0)  # a large library: entity by entity
    hero = cast.get("Hero05")
    column = cache.vector_columns()[0]
    refs = cache.registered([hero])[hero.id]
    matrix, _ = cache.stacked(refs, column)
    assert cache.stacked(list(refs), column)[0] is matrix  # the same references: the kept matrix
    (added,) = cast.add_images("Hero05", [image(777)])
    again = cache.registered([cast.get("Hero05")])[hero.id]  # the entity changed: read again
    fresh, similarity = cache.stacked(again, column)
    assert fresh is not matrix and len(fresh) == 2 and similarity.shape == (2, 2)
    row = [r.id for r in again].index(added.id)
    np.testing.assert_array_equal(fresh[row], cast.references(ids=[added.id])[0].vectors[column])


def test_a_large_catalog_reads_again_only_the_entities_that_changed(cast, monkeypatch):
    import retrieval.catalog
    from memstore.schema import Rights

    monkeypatch.setattr(retrieval.catalog, "INCREMENTAL_ABOVE", 10)
    catalog = EntityCatalog(cast)
    first = catalog.get()
    everyone = len(first.by_id)
    assert catalog.reads == everyone > 10
    cast.update("Hero01", rights=Rights(consent=True))  # consent given: must be seen at once
    cast.rename("Hero02", "Captain")
    cast.remove("Hero03")
    cast.register("Newcomer", "character", description="just arrived")
    snap = catalog.get()
    assert catalog.reads == everyone + 3  # the two changed and the new one, not all of them again
    names = [e.name for e in snap.by_id.values()]
    assert "Captain" in names and "Newcomer" in names and "Hero02" not in names and "Hero03" not in names
    assert names == [e.name for e in cast.list()]  # the same entities in the same order as a full read
    allowed, _ = snap.allowed(ShotQuery("x", require_consent=True))
    assert {snap.by_id[eid].name for eid in allowed} == {"Hero01"}
    assert snap.matcher.find("Captain walks in") and snap.version != first.version
