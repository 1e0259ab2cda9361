"""The retriever keeps chosen entities' registered references between shots, and sees every change
to them, made in this process or through another handle of the store."""

from __future__ import annotations

import numpy as np

from memstore.store import Store
from retrieval import Retriever, ShotQuery


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_cached_references_follow_additions_and_removals(tmp_path):
    library = Store.init(tmp_path / "db").library("default")
    library.register("Aria", "character", images=[image(1)])
    retriever = Retriever(library)
    query = ShotQuery("Aria", references_per_entity=4)
    assert len(retriever.retrieve(query).hits[0].references) == 1
    other = Store.open(tmp_path / "db").library("default")  # another writer, e.g. another process
    (added,) = other.add_images("Aria", [image(2)])
    refs = retriever.retrieve(query).hits[0].references
    assert {r.id for r in refs} >= {added.id} and all(r.image is not None for r in refs)
    other.remove_references([added.id])
    assert [r.id for r in retriever.retrieve(query).hits[0].references] != [added.id]
    assert added.id not in {r.id for r in retriever.retrieve(query).hits[0].references}


def test_harvested_keyframes_do_not_invalidate_and_are_offered_to_their_story(tmp_path):
    library = Store.init(tmp_path / "db").library("default")
    aria = library.register("Aria", "character", images=[image(1)])
    retriever = Retriever(library)
    retriever.retrieve(ShotQuery("Aria"))
    library.add_images("Aria", [image(9)], source="harvested", story="s", shot=0, frames=[0])
    assert library.get("Aria").updated == aria.updated  # keyframes are memory, not blueprints
    later = retriever.retrieve(ShotQuery("Aria", story_id="s", shot_index=1, references_per_entity=3))
    assert [r.source for r in later.hits[0].references] == ["registered", "harvested"]
