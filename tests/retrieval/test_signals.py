"""The retriever's signals: each built-in one yields terms with reasons, a new one is a module plus an
entry in the retriever's signal list, and retrieval reads tables only through the Library API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memstore.validation import KINDS
from retrieval import Retriever, ShotQuery, Signal, SignalInput, StoryContext, Term, default_signals
from retrieval.catalog import EntityCatalog, allowed_ids
from retrieval.fusion import DEFAULT_BUDGETS
from retrieval.signals import Bm25, ClipDense, DenseIndex, ExplicitCast, NameMentions, StoryContextSignal

from .conftest import bag, image

RETRIEVAL = Path(__file__).resolve().parents[2] / "retrieval"


class HouseStyle:
    """A signal of a user's own: every shot of this production is in the house style."""

    weights = {"house_style": 0.8}

    def __init__(self, style: str):
        self.style = style

    def terms(self, given: SignalInput) -> Iterator[Term]:
        for eid, entity in given.entities.items():
            if entity.name == self.style:
                yield Term(eid, "house_style", 1.0, "the production's house style")


@pytest.fixture
def tiny(library):
    library.register(
        "Aria",
        "character",
        aliases=["the knight"],
        images=[image(1)],
        description="a young woman knight with a red cloak",
    )
    library.register("Bram", "character", images=[image(2)], description="an old blacksmith")
    library.register("Castle Keep", "location", images=[image(3)], description="a stone courtyard at dusk")
    library.register("Ink Wash", "style", images=[image(4)], description="monochrome ink wash painting")
    return library


def signal_input(library, query: ShotQuery, context: StoryContext | None = None, embedder=None):
    """What :meth:`Retriever.retrieve` hands its signals, built the same way."""
    snap = EntityCatalog(library).get()
    allowed, notes = allowed_ids(query, snap.by_id)
    return SignalInput(
        query=query,
        context=context,
        library=library,
        entities=snap.by_id,
        allowed=allowed,
        matcher=snap.matcher,
        version=snap.version,
        text_embedder=embedder,
        notes=notes,
    )


def names_of(library, terms: list[Term]) -> dict[str, list[Term]]:
    out: dict[str, list[Term]] = {}
    for t in terms:
        out.setdefault(library.get(t.entity_id).name, []).append(t)
    return out


def test_a_custom_signal_in_the_list_changes_the_result(tiny):
    query = ShotQuery("Aria waits at the gate")
    retriever = Retriever(tiny)
    assert "Ink Wash" not in retriever.retrieve(query).names()
    retriever.signals.append(HouseStyle("Ink Wash"))
    hit = {h.name: h for h in retriever.retrieve(query).hits}["Ink Wash"]
    assert hit.reasons == ("the production's house style",)
    assert hit.score == pytest.approx(0.8)  # the weight the signal declared
    # a list given whole works the same, and the retriever's weights override the signal's
    signals = [*default_signals(), HouseStyle("Ink Wash")]
    quiet = Retriever(tiny, signals=signals, weights={"house_style": 0.1})
    assert "Ink Wash" not in quiet.retrieve(query).names()


def test_a_custom_signal_cannot_surface_an_entity_the_query_filters_out(tiny):
    retriever = Retriever(tiny, signals=[*default_signals(), HouseStyle("Ink Wash")])
    assert "Ink Wash" not in retriever.retrieve(ShotQuery("Aria waits", kinds=("character",))).names()


def test_builtin_signals_follow_the_protocol_and_lexical_false_drops_bm25(tiny, bow):
    retriever = Retriever(tiny)
    assert all(isinstance(s, Signal) for s in retriever.signals)
    kinds = [type(s) for s in retriever.signals]
    assert kinds == [ExplicitCast, NameMentions, StoryContextSignal, Bm25, ClipDense]
    assert Bm25 not in [type(s) for s in Retriever(tiny, lexical=False).signals]


def test_explicit_cast_terms_are_pinned_and_unknown_names_become_notes(tiny):
    given = signal_input(tiny, ShotQuery("someone waits", cast=("Bram", "Nobody"), location="castle keep"))
    terms = names_of(tiny, list(ExplicitCast().terms(given)))
    assert [t.reason for t in terms["Bram"]] == ["in the shot's cast"]
    assert [t.reason for t in terms["Castle Keep"]] == ["the shot's location"]
    assert all(t.pinned and t.signal == "cast" for ts in terms.values() for t in ts)
    assert any("'Nobody' is not in library" in n for n in given.notes)


def test_name_terms_for_names_and_aliases(tiny):
    given = signal_input(tiny, ShotQuery("The knight and Bram cross the yard"))
    terms = names_of(tiny, list(NameMentions().terms(given)))
    assert [(t.signal, t.reason) for t in terms["Aria"]] == [("alias", "alias 'the knight' in prompt")]
    assert [(t.signal, t.reason) for t in terms["Bram"]] == [("name", "name 'Bram' in prompt")]


def test_story_context_terms_carry_and_resolve_pronouns(tiny):
    context = StoryContext(
        on_screen=[tiny.get("Aria").id], recent=[tiny.get("Aria").id], location=tiny.get("Castle Keep").id
    )
    given = signal_input(tiny, ShotQuery("she raises her sword", cut=False), context)
    terms = names_of(tiny, list(StoryContextSignal().terms(given)))
    assert {t.signal for t in terms["Aria"]} == {"carried", "pronoun"}
    assert any("resolved to Aria" in t.reason for t in terms["Aria"])
    assert [t.reason for t in terms["Castle Keep"]] == ["carried from previous shot (no cut)"]
    assert list(StoryContextSignal().terms(signal_input(tiny, ShotQuery("she waits")))) == []


def test_bm25_terms_read_the_library_text_search(tiny):
    given = signal_input(tiny, ShotQuery("a stone courtyard at dusk"))
    terms = names_of(tiny, list(Bm25().terms(given)))
    (term,) = terms["Castle Keep"]
    assert term.signal == "bm25" and term.reason.startswith("BM25 on description") and term.raw > 0
    assert 0 < term.evidence <= 1


def test_dense_terms_text_to_image_and_text_to_text(library, bow):
    library.register(
        "Orb",
        "prop",
        images=[image(9)],
        description="a glowing crystal sphere",
        vectors={"bow": bag("glowing crystal sphere")[None, :]},
    )
    given = signal_input(library, ShotQuery("a glowing crystal sphere"), embedder=bow)
    signal = ClipDense(DenseIndex(library, bow), ranges={"clip_image": (0.45, 0.7), "clip_text": (0.3, 0.95)})
    terms = {t.signal: t for t in signal.terms(given)}
    assert terms["clip_image"].reason.startswith("CLIP text->image") and terms["clip_image"].evidence > 0
    assert terms["clip_text"].reason.startswith("CLIP text->text") and terms["clip_text"].evidence > 0
    cosine = float(bag("glowing crystal sphere") @ given.prompt_vector)
    assert np.isclose(terms["clip_image"].raw, cosine, atol=1e-4)


def test_default_budgets_cover_exactly_the_store_kinds():
    assert tuple(DEFAULT_BUDGETS) == KINDS


def test_retrieval_reads_tables_only_through_the_library_api():
    forbidden = re.compile(r"sql_str|sql_in|\.store\.(references|entities|tokens|shots)\b")
    offenders = [
        f"{p.relative_to(RETRIEVAL)}:{i}"
        for p in RETRIEVAL.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert offenders == []
