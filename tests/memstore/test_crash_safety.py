"""Crash safety: a writer killed with SIGKILL at points spread over its run leaves a store that opens, holds
every entity it reported committed, never an entity without all its references, hides the orphan
references a kill can leave and removes them on repair, and whose FAISS index matches the table."""

from __future__ import annotations

import random

import numpy as np
import pytest

from memstore.errors import EntityNotFoundError
from memstore.store import Store
from memstore.upgrade import FORMAT_VERSION
from tests.conftest import long_tests
from tests.memstore.workers.common import sha, tiny_png
from tests.memstore.workers.harness import check_crashed, crash_init_trial, crash_trial

CLEAN = {
    "half_written": 0,
    "lost": 0,
    "resurrected": 0,
    "orphans_left": 0,
    "orphans_visible": 0,
    "orphans_searched": 0,
    "torn": 0,
    "index_mismatch": 0,
}


class SpreadDelays(random.Random):
    """The kill delays ``crash_trial`` draws (its one ``uniform(0, max_delay)`` a trial), spread:
    each of n trials dies at a random point of its own n-th of the range, in shuffled order. So a few
    trials still kill early (the first registration, the vector column being added) and late (a
    bigger store: index syncs, compactions, repairs), on a young store and on one many kills old,
    instead of bunching by chance as independent draws of a handful of trials do."""

    def __init__(self, seed: int, trials: int) -> None:
        super().__init__(seed)
        self._slots = self.sample(range(trials), trials)
        self._trials = trials

    def uniform(self, a: float, b: float) -> float:
        slot = self._slots.pop() if self._slots else self.randrange(self._trials)
        return a + (b - a) * (slot + self.random()) / self._trials


def _trials(db, count: int, seed: int, max_delay: float = 0.8) -> list[dict]:
    rng = SpreadDelays(seed, count)
    reports = []
    for trial in range(count):
        info = crash_trial(db, seed * 100 + trial, rng, max_delay=max_delay)
        report = check_crashed(db, info["committed"], info["removed"])
        assert {k: report[k] for k in CLEAN} == CLEAN, (trial, report)
        reports.append(report)
    return reports


def test_spread_delays_put_one_kill_in_each_stratum():
    rng = SpreadDelays(4, 5)
    delays = [rng.uniform(0.0, 1.0) for _ in range(5)]
    assert sorted(int(d * 5) for d in delays) == [0, 1, 2, 3, 4]
    assert delays != sorted(delays)  # shuffled: an early kill can hit an old store too


def test_kill_minus_nine_during_writes(tmp_path):
    reports = _trials(tmp_path / "db", 5, seed=1)
    assert reports[-1]["entities"] > 0  # the kills landed after writes had started


@pytest.mark.slow
def test_kill_minus_nine_many_trials(tmp_path):
    """By default 5 more kills, up to 1.6 s in: the later windows of a grown store (index syncs,
    compactions, repairs; a trial reaches 3 to 15 writes by then). CONTINUITY_LONG_TESTS=1 runs 20
    up to 0.8 s as before."""
    count, max_delay = (20, 0.8) if long_tests() else (5, 1.6)
    reports = _trials(tmp_path / "db", count, seed=2, max_delay=max_delay)
    assert reports[-1]["entities"] > 0


def test_orphans_left_between_references_and_entity_are_invisible_and_repaired(store, library, tmp_path):
    """The exact state a kill between the two appends of a registration leaves."""
    library.register("Kept", "prop", images=[tiny_png(random.Random(0))])
    rng = random.Random(1)
    prepared = library.prepare("Ghost", "prop", images=[tiny_png(rng), tiny_png(rng)])
    library._ensure_columns(prepared.references)
    store.references.add([r.to_row() for r in prepared.references])  # references, no entity row
    ghost_ids = {r.id for r in prepared.references}

    assert library.find("Ghost") is None
    with pytest.raises(EntityNotFoundError):
        library.get("Ghost")
    assert not ghost_ids & {r.id for r in library.references()}
    assert library.references(ids=list(ghost_ids)) == []
    hits = library.search(np.ones(512, np.float32), k=10)
    assert len(hits) == 1 and hits[0][1].entity_id == library.get("Kept").id
    assert library.list()[0].name == "Kept" and len(library.list()) == 1

    archive = library.export(tmp_path / "out.zip")
    assert archive["references"] == 1  # orphans are not exported

    assert store.repair()["references"] == 1  # one orphaned entity id
    assert store.references.count_rows() == 1
    assert set(store.index("default", "color_histogram_rgb8").live_keys().tolist()) == {library.references()[0].key}
    # the name is free: the interrupted registration can simply be run again
    again = library.register("Ghost", "prop", images=[tiny_png(random.Random(1))])
    assert {r.sha256 for r in library.references(again)} == {sha(tiny_png(random.Random(1)))}


def test_store_created_up_to_its_config_table_is_finished_by_init(tmp_path):
    """A kill between creating the config table and writing the format row."""
    import lancedb

    from memstore.schema import CONFIG_SCHEMA

    path = tmp_path / "db"
    path.mkdir()
    lancedb.connect(str(path)).create_table("config", schema=CONFIG_SCHEMA)
    store = Store.init(path)
    assert Store.open(path).get_config("format") == {"version": FORMAT_VERSION}
    store.library().register("After", "prop")
    assert Store.open(path).library().get("After").name == "After"


def test_kill_minus_nine_during_store_creation(tmp_path):
    rng = random.Random(5)
    folders = []
    for trial in range(2):
        folders += crash_init_trial(tmp_path / str(trial), rng, max_delay=1.2)
    assert folders
    for folder in folders:
        Store.init(folder)  # finishes whatever the kill interrupted
        Store.open(folder).library().register("x", "prop")


def test_import_interrupted_before_its_entity_rows_can_be_run_again(library, tmp_path):
    """A kill during import leaves the archive's references without entities; importing again
    must not duplicate them (same ids) and the result must equal a clean import."""
    from memstore.archive import import_library, read_archive

    rng = random.Random(3)
    library.register("Aria", "character", images=[tiny_png(rng), tiny_png(rng)])
    library.register("Bram", "character", images=[tiny_png(rng)])
    path = tmp_path / "lib.zip"
    library.export(path)
    target = Store.init(tmp_path / "target")
    _, tables = read_archive(path)
    from memstore.embedders import get_embedder

    target.ensure_vector_column(get_embedder("color-histogram"))
    target.references.add(tables["references"])  # the state a kill after the first append leaves
    import_library(target, path)
    refs = target.references.to_lance().to_table(columns=["id"]).column("id").to_pylist()
    assert sorted(refs) == sorted(tables["references"].column("id").to_pylist())
    hits = target.library().search(np.ones(512, np.float32), k=10)
    assert len(hits) == 3 == len({ref.id for _, ref in hits})
