"""Names and aliases in prompts: case, possessives, plurals, multi-word, hyphens, common-word guard."""

from __future__ import annotations

import pytest

from memstore.schema import Entity
from retrieval.mentions import NameMatcher, find_mentions


def ent(name, kind="character", aliases=()):
    return Entity(name=name, kind=kind, aliases=list(aliases))


ENTITIES = [
    ent("Aria", aliases=["the knight"]),
    ent("Mr. Bean"),
    ent("Jean-Luc"),
    ent("Hope"),
    ent("Will"),
    ent("Queen Mary"),
    ent("Mary"),
    ent("Rose"),
    ent("Kitchen", "location"),
    ent("James"),
]


def names(prompt, on_screen=()):
    by_id = {e.id: e for e in ENTITIES}
    return [
        (m.name, m.text, m.is_alias) for m in find_mentions(prompt, ENTITIES, on_screen=on_screen) if by_id[m.entity_id]
    ]


@pytest.mark.parametrize(
    "prompt, name",
    [
        ("aria rides", "Aria"),
        ("ARIA rides", "Aria"),
        ("Aria's sword", "Aria"),
        ("Aria’s sword", "Aria"),
        ("MR BEAN eats toast", "Mr. Bean"),
        ("Mr Bean’s tie", "Mr. Bean"),
        ("Jean Luc waves", "Jean-Luc"),
        ("jean-luc waves", "Jean-Luc"),
        ("James' hat", "James"),
        ("a bright kitchen", "Kitchen"),
    ],
)
def test_name_variants_match(prompt, name):
    assert [n for n, _, _ in names(prompt)] == [name]


def test_alias_and_plural():
    assert names("two of the knights ride") == [("the knight", "the knights", True)]


def test_word_boundaries_and_commas():
    assert names("Ariadne walks past Marys") == [("Mary", "Marys", False)]
    assert [n for n, _, _ in names("Aria, Bean walk")] == ["Aria"]  # "Bean" alone is not "Mr. Bean"


def test_longest_match_wins_and_both_counted():
    assert [n for n, _, _ in names("Queen Mary greets Mary")] == ["Queen Mary", "Mary"]


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("I hope so", []),
        ("a rose petal falls", []),
        ("they will go", []),
        ("Hope smiles at us", ["Hope"]),
        ("the garden where Rose stood", ["Rose"]),
        ("Will said no", ["Will"]),
        ("Will you come?", []),
        ("Rose's garden", ["Rose"]),
        ("Hope is lost", []),
    ],
)
def test_common_word_names_are_guarded(prompt, expected):
    assert [n for n, _, _ in names(prompt)] == expected


def test_on_screen_relaxes_sentence_start_guard():
    hope = next(e for e in ENTITIES if e.name == "Hope")
    assert names("Hope is lost.") == []
    assert [n for n, _, _ in names("Hope is lost.", on_screen=[hope.id])] == ["Hope"]


def test_matcher_scales_to_many_entities():
    many = [ent(f"Person {i}") for i in range(5000)] + [ent("Zed")]
    matcher = NameMatcher(many)
    found = matcher.find("Zed meets person 4321 and Person 17's dog")
    assert [m.name for m in found] == ["Zed", "Person 4321", "Person 17"]
