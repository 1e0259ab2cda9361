"""Above its threshold the text->text signal searches an IVF index of entity text vectors instead of
scanning them all, finds what the scan finds, and follows the entities as they are added, changed
and removed (without training again)."""

from __future__ import annotations

import numpy as np

from memstore.schema import Entity
from retrieval.signals import EntityTextVectors

from .conftest import BagOfWords

WORDS = "gold ring cup hat sword cloak boat lamp key map crown mask book coat harp drum".split()


def entities(n: int) -> list[Entity]:
    # distinct word pairs: bag-of-words vectors well apart, so the nearest entity is unambiguous
    pairs = [(a, b) for i, a in enumerate(WORDS) for b in WORDS[i + 1 :]]
    return [Entity(id=f"e{i:03d}", kind="prop", name=f"P{i}", description=" ".join(pairs[i])) for i in range(n)]


def hits(
    vectors: EntityTextVectors, version: int, found: list[Entity], text: str, k: int = 3
) -> list[tuple[str, float]]:
    query = np.asarray(vectors.embedder.embed_texts([text])[0], np.float32)
    return [(h.entity_id, h.score) for h in vectors.search("lib", version, found, query, k=k)]


def nearest(vectors: EntityTextVectors, version: int, found: list[Entity], text: str, k: int = 3) -> list[str]:
    return [eid for eid, _ in hits(vectors, version, found, text, k)]


def test_above_the_threshold_an_ivf_index_finds_what_the_scan_finds():
    found = entities(100)
    exact = EntityTextVectors(BagOfWords(column="bow"), approximate_above=1000)
    approximate = EntityTextVectors(BagOfWords(column="bow"), approximate_above=50)
    for text in ("gold sword", "cup harp", "crown mask"):
        got, want = hits(approximate, 1, found, text, k=5), hits(exact, 1, found, text, k=5)
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-6)  # the same scores (ties aside)
        if want[0][1] > want[1][1] + 1e-6:
            assert got[0][0] == want[0][0]
    assert nearest(approximate, 1, found, "gold sword")[0] == "e003"  # its own two words
    assert exact.approximate("lib") is None
    ann = approximate.approximate("lib")
    assert ann is not None and ann.rebuilds == 1 and ann.index.ntotal == 100


def test_the_index_follows_added_changed_and_removed_entities():
    found = entities(100)
    vectors = EntityTextVectors(BagOfWords(column="bow"), approximate_above=50)
    assert nearest(vectors, 1, found, "gold ring")[0] == "e000"
    found[0] = found[0].model_copy(update={"description": "drum harp"})  # its text changed
    found.append(Entity(id="new", kind="prop", name="Q", description="gold ring"))  # one added
    del found[1]  # one removed
    top = nearest(vectors, 2, found, "gold ring", k=100)
    assert top[0] == "new" and "e001" not in top
    assert nearest(vectors, 2, found, "drum harp")[0] == "e000"
    ann = vectors.approximate("lib")
    assert ann is not None and (ann.rebuilds, ann.updates) == (1, 1) and ann.index.ntotal == 100
