"""The in-memory BM25 (memstore.fts) ranks exactly as LanceDB's FTS index does, on a real library:
the project's annotated ST-Bench entities (20 stories, one library each, in one store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memstore.fts import TextHit
from memstore.store import Store

ANNOTATIONS = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "st_bench_annotations.json"

#: words that exercise stemming, stop words (before and after stemming), case, accents and punctuation
EXTRA_PROMPTS = [
    "The astronauts were walking through the glowing corridors of the ship",
    "She doesn't know who's being watched; having painted, doing nothing",
    "Café Élodie, naïve façade: RED-haired knights' silver armour",
    "a a a the the of",
    "dog dog dog barking barks barked",
    "x" * 45 + " studio",
]


@pytest.fixture(scope="module")
def st_bench(tmp_path_factory) -> tuple[Store, dict[str, list[str]]]:
    data = json.loads(ANNOTATIONS.read_text())["stories"]
    store = Store.init(tmp_path_factory.mktemp("fts") / "db")
    prompts: dict[str, list[str]] = {}
    for story, body in data.items():
        library = store.library(story)
        library.set_embedders([])
        entities = body["entities"]
        library.commit(
            [
                library.prepare(
                    e["name"], e["kind"], aliases=e.get("aliases", []), description=e.get("description", "")
                )
                for e in entities
            ]
        )
        words = [e["description"] for e in entities if e.get("description")]
        words += [" ".join(e.get("aliases", [])) for e in entities if e.get("aliases")]
        prompts[story] = words + EXTRA_PROMPTS
    assert store.text_index().ensure()  # LanceDB's index, the reference (its build is a commit)
    return store, prompts


def _groups(hits: list[TextHit]) -> list[tuple[float, frozenset[str]]]:
    """Hits as (score, ids) per tie (scores within float32 noise): the order inside a tie is the engine's own."""
    groups: list[tuple[float, set[str]]] = []
    for h in hits:
        if groups and abs(groups[-1][0] - h.score) <= 1e-5 * max(1.0, abs(h.score)):
            groups[-1][1].add(h.entity_id)
        else:
            groups.append((h.score, {h.entity_id}))
    return [(s, frozenset(ids)) for s, ids in groups]


def _same(mine: list[TextHit], lance: list[TextHit]) -> bool:
    a, b = _groups(mine), _groups(lance)
    if len(a) != len(b):
        return False
    return all(abs(x[0] - y[0]) <= 1e-4 * max(1.0, x[0]) and x[1] == y[1] for x, y in zip(a, b, strict=True))


def test_memory_bm25_ranks_as_lance_fts_on_the_st_bench_library(st_bench):
    store, prompts = st_bench
    index = store.text_index()
    compared = matched = 0
    for story, queries in prompts.items():
        for prompt in queries:
            mine = index.search(story, prompt, k=50)
            lance = index.search_indexed(story, prompt, k=50)
            assert _same(mine, lance), (story, prompt, mine, lance)
            compared += 1
            matched += bool(lance)
    assert compared > 150 and matched > 120  # most queries hit something: the comparison is not vacuous
    assert index.builds == 1  # one in-memory build for every query of an unchanged table


def test_scores_agree_with_lance_by_kind_and_after_a_write(st_bench):
    store, _ = st_bench
    index = store.text_index()
    for kind in ("character", "location", "prop"):
        prompt = "the white cat in the garden"
        assert _same(index.search("cat", prompt, kind=kind), index.search_indexed("cat", prompt, kind=kind))
    library = store.library("cat")
    library.register("Moonlit Garden", "location", description="a garden of white roses under the moon")
    hits = index.search("cat", "white roses moon")
    assert hits and hits[0].entity_id == library.get("Moonlit Garden").id  # the new row, right away
    assert index.builds == 2
    library.remove("Moonlit Garden")
    assert all(h.entity_id != "Moonlit Garden" for h in index.search("cat", "white roses moon"))


def test_library_filter_and_empty_or_unknown_inputs(st_bench):
    store, _ = st_bench
    index = store.text_index()
    assert index.search("no-such-library", "cat") == []
    assert index.search("cat", "   ...   ") == []
    ids = {e.id for e in store.library("dog").list()}
    assert {h.entity_id for h in index.search("dog", "dog dog the brown dog")} <= ids
