"""The retriever on a real store: signals with reasons, budgets, filters, references with images."""

from __future__ import annotations

import numpy as np
import pytest

from memstore.errors import InvalidInputError
from retrieval import Retriever, ShotQuery

from .conftest import bag, image


@pytest.fixture
def cast(library):
    library.register(
        "Aria",
        "character",
        aliases=["the knight"],
        images=[image(1), image(2), image(3)],
        description="a young woman knight with a red cloak and a silver gorget",
    )
    library.register("Bram", "character", images=[image(4)], description="an old man, a blacksmith with a grey beard")
    library.register("Castle Keep", "location", images=[image(5)], description="a stone castle courtyard at dusk")
    library.register("Forge", "location", images=[image(6)], description="a smoky blacksmith workshop with an anvil")
    return library


def by_name(result):
    return {h.name: h for h in result.hits}


def test_name_mention_wins_with_reason_and_references_carry_images(cast):
    result = Retriever(cast).retrieve(ShotQuery("Aria's cloak flutters in the wind"))
    hits = by_name(result)
    assert "Aria" in hits and "name 'Aria' in prompt" in hits["Aria"].reasons
    assert "Bram" not in hits
    refs = hits["Aria"].references
    assert len(refs) == 2 and all(r.image is not None and len(r.image) > 0 for r in refs)


def test_alias_and_bm25_on_description(cast):
    result = Retriever(cast).retrieve(ShotQuery("The knight crosses the castle courtyard"))
    hits = by_name(result)
    assert "alias 'the knight' in prompt" in hits["Aria"].reasons
    assert any(r.startswith("BM25 on description") for r in hits["Castle Keep"].reasons)
    assert result.location.name == "Castle Keep"


def test_bm25_follows_description_updates(cast):
    retriever = Retriever(cast)
    assert "Forge" not in by_name(retriever.retrieve(ShotQuery("a glowing lava pool")))
    cast.update("Forge", description="a glowing lava pool beneath the mountain")
    assert "Forge" in by_name(retriever.retrieve(ShotQuery("a glowing lava pool")))


def test_unrelated_prompt_retrieves_nothing(cast):
    assert Retriever(cast).retrieve(ShotQuery("rain on a window")).hits == ()


def test_per_kind_budget_and_min_score(library):
    for i, name in enumerate(["Ann", "Ben", "Cid", "Dee"]):
        library.register(name, "character", images=[image(10 + i)])
    library.register("Harbor", "location", images=[image(20)])
    library.register("Market", "location", images=[image(21)])
    result = Retriever(library).retrieve(ShotQuery("Ann, Ben, Cid and Dee walk from the Harbor to the Market"))
    assert len(result.characters) == 3 and len(result.of_kind("location")) == 1
    assert any("budget" in n for n in result.notes)
    strict = Retriever(library, min_score=0.99).retrieve(ShotQuery("Ann waves"))
    assert strict.hits == ()


def test_explicit_cast_bypasses_inference_and_budget(cast):
    result = Retriever(cast).retrieve(ShotQuery("someone waits", cast=("Bram",), location="Forge"))
    assert set(result.names()) == {"Bram", "Forge"}
    assert all("cast" in " ".join(h.reasons) or "location" in " ".join(h.reasons) for h in result.hits)
    missing = Retriever(cast).retrieve(ShotQuery("someone waits", cast=("Nobody",)))
    assert any("Nobody" in n for n in missing.notes)


def test_filters_kind_tag_consent_and_library(store, library):
    library.register("Ivo", "character", images=[image(30)], tags=["hero"], rights={"consent": True})
    library.register("Uma", "character", images=[image(31)], rights={"consent": False})
    library.register("Ivo Street", "location", images=[image(32)])
    store.library("other").register("Uma", "character", images=[image(33)], rights={"consent": True})
    r = Retriever(library)
    assert set(r.retrieve(ShotQuery("Ivo and Uma on Ivo Street")).names()) == {"Ivo", "Uma", "Ivo Street"}
    assert r.retrieve(ShotQuery("Ivo and Uma on Ivo Street", kinds=("location",))).names() == ["Ivo Street"]
    assert r.retrieve(ShotQuery("Ivo and Uma on Ivo Street", tags=("hero",))).names() == ["Ivo"]
    consented = r.retrieve(ShotQuery("Ivo and Uma", require_consent=True))
    assert consented.names() == ["Ivo"] and any("Uma" in n for n in consented.notes)
    other = Retriever(store.library("other")).retrieve(ShotQuery("Ivo and Uma"))
    assert other.names() == ["Uma"] and other.hits[0].entity.library == "other"


def test_references_era_source_and_diversity(library):
    library.register("Aria", "character", images=[image(40)], era="young", vectors={})
    library.add_images("Aria", [image(41), image(42)], era="armored")
    library.add_images("Aria", [image(43)], era="armored", source="harvested", story="s", shot=0)
    r = Retriever(library)
    # the keyframe is offered to later shots of its own story (issue 20: never to story-less queries)
    in_story = dict(story_id="s", shot_index=1)
    hit = r.retrieve(ShotQuery("Aria", era="armored", references_per_entity=3, **in_story)).hits[0]
    assert [x.era for x in hit.references[:2]] == ["armored", "armored"]
    assert [x.source for x in hit.references] == ["registered", "registered", "harvested"]
    assert [
        x.source for x in r.retrieve(ShotQuery("Aria", era="armored", references_per_entity=3)).hits[0].references
    ] == [
        "registered",
        "registered",
    ]
    other = ShotQuery("Aria", era="armored", references_per_entity=3, story_id="t", shot_index=5)
    assert {x.source for x in r.retrieve(other).hits[0].references} == {"registered"}
    young = r.retrieve(ShotQuery("Aria", eras=(("Aria", "young"),), references_per_entity=1)).hits[0]
    assert [x.era for x in young.references] == ["young"]
    harvested_first = r.retrieve(
        ShotQuery("Aria", era="armored", sources=("harvested",), references_per_entity=2, **in_story)
    ).hits[0]
    assert [x.source for x in harvested_first.references] == ["harvested"]


def test_mmr_prefers_diverse_references(library, bow):
    base = bag("red cloak")
    near = base + 0.01 * np.eye(64, dtype=np.float32)[5]
    far = bag("blue armor helmet")
    library.register(
        "Aria", "character", images=[image(50), image(51), image(52)], vectors={"bow": np.stack([base, near, far])}
    )
    refs = Retriever(library, lexical=False).retrieve(ShotQuery("Aria", references_per_entity=2)).hits[0].references
    vecs = [r.vectors["bow"] for r in refs]
    assert float(vecs[0] @ vecs[1]) < 0.9  # not the two near-duplicates


def test_dense_text_to_image_finds_unnamed_entity(library, bow):
    library.register("Orb of Ages", "prop", images=[image(60)], vectors={"bow": bag("glowing crystal sphere")[None, :]})
    library.register("Old Boot", "prop", images=[image(61)], vectors={"bow": bag("muddy leather shoe")[None, :]})
    # hashed bags of words collide more than CLIP: calibrate the double's cosines like a user would
    ranges = {"clip_image": (0.45, 0.7), "clip_text": (0.6, 0.95)}
    result = Retriever(library, lexical=False, dense_ranges=ranges).retrieve(
        ShotQuery("a glowing crystal sphere on the table")
    )
    assert result.names()[0] == "Orb of Ages"
    assert any(r.startswith("CLIP text->image") for r in result.hits[0].reasons)
    assert "Old Boot" not in result.names()


def test_dense_index_follows_appends_and_deletes(library, bow):
    r = Retriever(library, lexical=False)
    library.register("Orb", "prop", images=[image(70)], vectors={"bow": bag("glowing crystal sphere")[None, :]})
    assert r.search_dense(bag("glowing crystal sphere"), k=3)[0].entity_id == library.get("Orb").id
    library.register("Lamp", "prop", images=[image(71)], vectors={"bow": bag("brass oil lamp")[None, :]})
    assert r.search_dense(bag("brass oil lamp"), k=3)[0].entity_id == library.get("Lamp").id
    library.remove("Lamp")
    assert {h.entity_id for h in r.search_dense(bag("brass oil lamp"), k=3)} == {library.get("Orb").id}


def test_text_embedder_without_text_tower_is_refused(library):
    from memstore.embedders.histogram import ColorHistogramEmbedder

    with pytest.raises(InvalidInputError, match="text tower"):
        Retriever(library, text_embedder=ColorHistogramEmbedder())


@pytest.mark.parametrize(
    "query",
    [
        ShotQuery(""),
        ShotQuery("x", k=0),
        ShotQuery("x", kinds=("monster",)),
        ShotQuery("x", sources=("found",)),
        "not a query",
    ],
)
def test_bad_queries_raise_typed_errors(library, query):
    with pytest.raises(InvalidInputError):
        Retriever(library).retrieve(query)


def test_retrieval_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, retrieval, retrieval.retriever; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_keyframes_of_this_or_later_shots_are_never_references(library):
    library.register("Aria", "character", images=[image(80)])
    library.add_images("Aria", [image(81)], source="harvested", story="s", shot=1, frames=[0])
    library.add_images("Aria", [image(82)], source="harvested", story="s", shot=3, frames=[0])
    r = Retriever(library)
    shots = {
        q: [
            x.shot
            for x in r.retrieve(ShotQuery("Aria", story_id="s", shot_index=q, references_per_entity=5))
            .hits[0]
            .references
        ]
        for q in (0, 1, 2, 4)
    }
    assert shots[0] == shots[1] == [None]
    assert shots[2] == [None, 1]  # registered first, then the earlier keyframe
    assert shots[4][0] is None and sorted(shots[4][1:]) == [1, 3]
