"""Story context: continuation shots, pronouns, definite descriptions, explicit cast."""

from __future__ import annotations

import pytest

from retrieval import Retriever, ShotQuery, StoryContext

from .conftest import image


@pytest.fixture
def story_lib(library):
    library.register("Aria", "character", images=[image(1)], description="a young woman, a knight with a red cloak")
    library.register("Bram", "character", images=[image(2)], description="an old man, the village blacksmith")
    library.register(
        "Elsa", "character", images=[image(3)], aliases=["the queen"], description="the queen of the north"
    )
    library.register("Castle Keep", "location", images=[image(4)], description="stone castle courtyard")
    library.register("Forge", "location", images=[image(5)], description="smoky workshop with an anvil")
    return library


def run(lib, shots):
    r, ctx, out = Retriever(lib), StoryContext(), []
    for q in shots:
        res = r.retrieve(q, ctx)
        ctx.update(res)
        out.append(res)
    return out


def test_continuation_carries_location_and_cast_but_cut_does_not(story_lib):
    _, cont, cut = run(
        story_lib,
        [
            ShotQuery("Aria and Bram meet in the Castle Keep"),
            ShotQuery("A close-up of hands shaking", cut=False),
            ShotQuery("A close-up of hands shaking", cut=True),
        ],
    )
    assert set(cont.names()) == {"Aria", "Bram", "Castle Keep"}
    assert all("carried from previous shot (no cut)" in h.reasons for h in cont.hits)
    assert cut.hits == ()


def test_pronouns_resolve_by_gender_and_recency(story_lib):
    results = run(
        story_lib,
        [
            ShotQuery("Bram hammers at the anvil"),
            ShotQuery("Aria enters the Forge"),
            ShotQuery("He looks up."),
            ShotQuery("She smiles."),
        ],
    )
    assert "Bram" in results[2].names() and "Aria" not in results[2].names()
    assert "Aria" in results[3].names() and "Bram" not in results[3].names()
    assert any("'she' resolved to Aria" in r for r in by(results[3], "Aria").reasons)


def test_pronoun_of_a_named_character_adds_no_one(story_lib):
    results = run(story_lib, [ShotQuery("Aria and Bram talk"), ShotQuery("Aria draws her sword")])
    assert results[1].names() == ["Aria"]


def test_definite_descriptions(story_lib):
    results = run(story_lib, [ShotQuery("Aria waits"), ShotQuery("The old man arrives"), ShotQuery("The queen frowns")])
    assert "Bram" in results[1].names()
    assert "Elsa" in results[2].names()


def test_explicit_cast_overrides_context(story_lib):
    results = run(
        story_lib,
        [
            ShotQuery("Aria and Bram in the Castle Keep"),
            ShotQuery("He nods", cut=False, cast=("Elsa",), location="Forge"),
        ],
    )
    assert set(results[1].names()) == {"Elsa", "Forge"}


def test_update_tracks_recency(story_lib):
    ctx = StoryContext()
    assert ctx.on_screen == [] and ctx.location is None
    retriever = Retriever(story_lib)
    ids = {e.name: e.id for e in story_lib.list()}
    for prompt, scene in [("Aria in the Castle Keep", 1), ("Bram at the Forge", 2), ("Elsa alone", 3)]:
        ctx.update(retriever.retrieve(ShotQuery(prompt, scene=scene), ctx))
    assert ctx.recent == [ids["Elsa"], ids["Bram"], ids["Aria"]]  # most recently seen first
    assert ctx.on_screen == [ids["Elsa"]] and ctx.shots == 3
    # no place named in a new scene: the retriever carries the last place shown, and update records it
    assert ctx.location == ctx.last_location == ids["Forge"]
    assert ctx.shown_locations == {ids["Castle Keep"], ids["Forge"]}
    ctx.update(retriever.retrieve(ShotQuery("Aria returns", scene=3), ctx))
    assert ctx.recent == [ids["Aria"], ids["Elsa"], ids["Bram"]]  # moved to the front, not duplicated


def by(result, name):
    return next(h for h in result.hits if h.name == name)
