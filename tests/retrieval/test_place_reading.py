"""Reading a shot like an assistant director: the scene's place across cuts, movement, views, the
first-frame prompt, and props only when on screen. Every case here failed before the place reading."""

from __future__ import annotations

import pytest

from retrieval import Retriever, ShotQuery, StoryContext
from retrieval.places import read

from .conftest import image


def run(lib, shots):
    r, ctx, out = Retriever(lib), StoryContext(), []
    for q in shots:
        res = r.retrieve(q, ctx)
        ctx.update(res)
        out.append(res)
    return out


def of(result, name):
    return next(h for h in result.hits if h.name == name)


@pytest.fixture
def castle(library):
    library.register("Harry", "character", images=[image(1)], description="a young wizard, a boy with glasses")
    library.register("Hogwarts Library", "location", images=[image(2)], description="the castle's old library")
    library.register("Hogwarts Corridor", "location", images=[image(3)], description="a stone corridor of the castle")
    library.register("Spellbook", "prop", images=[image(4)], description="an old glowing book of spells")
    return library


def test_reading_tells_setting_view_and_source():
    roles = {p.noun: p.role for p in read("He exits the library, walking down the long corridor.").places}
    assert roles == {"library": "source", "corridor": "setting"}
    assert [p.role for p in read("She gazes through the window toward the moon.").places] == ["view"]
    assert [p.role for p in read("Jane stands by her window, looking out at the garden.").places] == ["view"]
    assert read("He looks ahead, remembering the fox and the rose.").absent[0][2] == "remembering"


def test_a_cut_inside_a_scene_keeps_the_place(castle):
    first, close, other_scene = run(
        castle,
        [
            ShotQuery("Harry enters the library.", scene=1),
            ShotQuery("Close-up of Harry's hand on a shelf.", cut=True, scene=1),
            ShotQuery("Harry sits and reads.", cut=True, scene=2),
        ],
    )
    assert first.location.name == "Hogwarts Library"
    assert close.location.name == "Hogwarts Library"
    assert any("this scene's earlier shots" in r for r in close.location.reasons)
    # a new scene that names no place: the last place shown, weakly, and said so
    assert other_scene.location.name == "Hogwarts Library"
    assert any("no place named in a new scene" in r for r in other_scene.location.reasons)


def test_movement_leaves_the_carried_place(castle):
    _, out = run(
        castle,
        [
            ShotQuery("Harry reads in the library.", scene=1),
            ShotQuery("He exits the library, walking down the long corridor.", cut=False, scene=1),
        ],
    )
    assert out.location.name == "Hogwarts Corridor"
    assert any("'down the long corridor'" in r for r in out.location.reasons)
    assert any(n.startswith("left out Hogwarts Library") for n in out.notes)


def test_first_frame_prompt_gives_the_place(castle):
    result = Retriever(castle).retrieve(
        ShotQuery("Harry looks around, curious.", first_frame_prompt="Harry stepping into the library with a lantern.")
    )
    assert result.location.name == "Hogwarts Library"
    assert any(r.startswith("first frame:") for r in result.location.reasons)


def test_place_noun_of_a_name_sets_the_shot(library):
    library.register("Thornfield Garden", "location", images=[image(5)], description="the gardens of the manor")
    library.register("Lowood School", "location", images=[image(6)], description="a strict school for girls")
    result = Retriever(library).retrieve(ShotQuery("Jane and Edward walk together in the garden."))
    assert result.names() == ["Thornfield Garden"]


def test_a_place_only_seen_is_not_the_shot_place(library):
    library.register("Spacecraft Cabin", "location", images=[image(7)], description="inside his small spacecraft")
    library.register("Lunar Surface", "location", images=[image(8)], aliases=["the Moon"], description="grey dust")
    first, second = run(
        library,
        [
            ShotQuery("Inside the spacecraft cabin, the astronaut floats.", scene=1),
            ShotQuery("He gazes through the window toward the Moon.", cut=False, scene=1),
        ],
    )
    assert second.location.name == "Spacecraft Cabin"
    assert any("Lunar Surface is seen, not the shot's place" in n for n in second.notes)


def test_a_place_already_shown_is_not_a_new_one_of_its_kind(library):
    library.register(
        "Asteroid B-612",
        "location",
        images=[image(9)],
        aliases=["his planet"],
        description="the prince's tiny home planet, where a rose grows",
    )
    first, landing = run(
        library,
        [
            ShotQuery("The prince waters his rose on his planet.", scene=1),
            ShotQuery("The prince lands on a planet where a king sits; a small rocky planet glows.", scene=2),
        ],
    )
    assert first.location.name == "Asteroid B-612"
    assert landing.location is None


def test_a_prop_needs_a_word_of_its_own_not_a_similar_one(library):
    library.register("Santa", "character", images=[image(10)], description="an old man with a white beard")
    library.register("Sleigh", "prop", images=[image(11)], description="a red sleigh pulled by the lead reindeer")
    r = Retriever(library)
    assert (
        "Sleigh" not in r.retrieve(ShotQuery("Santa feeds a carrot to the lead reindeer, a red ribbon on it.")).names()
    )
    found = r.retrieve(ShotQuery("Santa climbs into his sleigh."))
    assert "Sleigh" in found.names()


def test_a_prop_named_but_absent_is_not_on_screen(library):
    library.register("Forrest", "character", images=[image(12)], description="a skinny boy")
    library.register("Leg Braces", "prop", images=[image(13)], aliases=["braces"], description="metal leg braces")
    r = Retriever(library)
    assert "Leg Braces" in r.retrieve(ShotQuery("Forrest runs, his braces clanging.")).names()
    without = r.retrieve(ShotQuery("Forrest sits on the porch, now without the braces."))
    assert "Leg Braces" not in without.names()
    assert any("named, not on screen" in n for n in without.notes)


def test_remembered_characters_are_not_on_screen(library):
    library.register("Little Prince", "character", images=[image(14)], description="a small boy with golden hair")
    library.register("The Fox", "character", images=[image(15)], description="a curious desert fox")
    result = Retriever(library).retrieve(ShotQuery("The Little Prince stands alone, remembering the fox."))
    assert result.names() == ["Little Prince"]


def test_the_vehicle_the_shot_is_inside_is_not_a_prop_on_screen(library):
    library.register("Spacecraft Cabin", "location", images=[image(16)], description="inside the small craft")
    library.register("Spacecraft", "prop", images=[image(17)], description="his small lunar lander from outside")
    library.register("Lunar Surface", "location", images=[image(18)], aliases=["the Moon"], description="grey dust")
    r = Retriever(library)
    inside = r.retrieve(ShotQuery("In the spacecraft cabin, lights flicker as the spacecraft nears the Moon."))
    assert "Spacecraft" not in inside.names()
    outside = r.retrieve(ShotQuery("The spacecraft touches down on the Moon."))
    assert "Spacecraft" in outside.names()
