"""The shot journal: records written ahead of the ``shots`` table (memstore.journal)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from memstore import Store
from memstore.journal import FOLD_EVERY
from memstore.schema import ShotRecord
from memstore.shots import fold_journal, shots_with_watermark

ROOT = Path(__file__).resolve().parents[2]


def _record(index: int, story: str = "s1", library: str = "default", watermark: str = "0a1b2c3d") -> ShotRecord:
    return ShotRecord(
        story_id=story,
        shot_index=index,
        library=library,
        input_hash=f"h{index}",
        prompt=f"shot {index}",
        retrieved=["ent-a"] if index % 2 else ["ent-b"],
        provenance=f'{{\n  "watermark": "{watermark}"\n}}',
    )


def _table_rows(store: Store) -> int:
    return int(store.shots.count_rows())


def test_a_record_is_readable_at_once_without_a_table_commit(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "db")
    log = store.library("default").shots
    version = store.shots.version
    log.add(_record(0))
    log.add(_record(1))
    assert store.shots.version == version  # journalled: no Lance commit per shot
    assert log.hashes("s1") == {0: "h0", 1: "h1"}
    assert [r.shot_index for r in log.records("s1")] == [0, 1]
    got = log.get("s1", 1)
    assert got is not None and got.prompt == "shot 1"
    assert log.stories() == ["s1"]
    assert [r.shot_index for r in log.using("ent-a")] == [1]
    assert [r.shot_index for r in shots_with_watermark(store, "0a1b2c3d")] == [0, 1]
    assert log.find_watermark("ffffffff") == []
    other = Store.open(tmp_path / "db")  # another process's view: the journal is in the store folder
    assert other.library("default").shots.hashes("s1") == {0: "h0", 1: "h1"}


def test_records_fold_into_the_table_in_one_commit_every_fold_every(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "db")
    log = store.library("default").shots
    version = store.shots.version
    for i in range(FOLD_EVERY + 3):
        log.add(_record(i))
    assert _table_rows(store) == FOLD_EVERY  # the 64th record folded the journal
    assert store.shots.version - version <= 2  # one append (and at most a compaction check)
    assert len(store.shot_journal.records()) == 3  # type: ignore[union-attr]
    assert log.flush() == 3
    assert _table_rows(store) == FOLD_EVERY + 3 and store.shot_journal.records() == []  # type: ignore[union-attr]
    assert sorted(log.hashes("s1")) == list(range(FOLD_EVERY + 3))


def test_a_fold_that_crashed_after_its_commit_adds_nothing_twice(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "db")
    log = store.library("default").shots
    for i in range(3):
        log.add(_record(i))
    store.shots.add([r.model_dump() for r in store.shot_journal.records()])  # type: ignore[union-attr]
    assert [r.shot_index for r in log.records("s1")] == [0, 1, 2]  # both places hold them: read once
    fold_journal(store)
    assert _table_rows(store) == 3


def test_a_torn_last_line_is_skipped_and_the_next_record_is_whole(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "db")
    log = store.library("default").shots
    log.add(_record(0))
    journal = store.shot_journal
    assert journal is not None
    with open(journal.path, "ab") as handle:  # a writer killed halfway through its line
        handle.write(_record(1).model_dump_json().encode()[:40])
    assert log.hashes("s1") == {0: "h0"}
    log.add(_record(2))
    assert log.hashes("s1") == {0: "h0", 2: "h2"}


def test_forget_reaches_journalled_records(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "db")
    log = store.library("default").shots
    for i in range(4):
        log.add(_record(i))
    log.forget("s1", 2)
    assert log.hashes("s1") == {0: "h0", 1: "h1", 3: "h3"}
    log.forget("s1")
    assert log.hashes("s1") == {}


def test_libraries_and_stories_stay_apart_in_the_journal(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "db")
    store.library("other")
    store.library("default").shots.add(_record(0))
    store.library("other").shots.add(_record(5, story="s2", library="other"))
    assert store.library("default").shots.stories() == ["s1"]
    assert store.library("other").shots.hashes("s1") == {}
    assert store.library("other").shots.hashes("s2") == {5: "h5"}
    assert store.library("other").shots.find_watermark("0a1b2c3d")[0].library == "other"


def test_records_survive_kill_9_without_a_fold(tmp_path: Path) -> None:
    """A process killed between shots keeps every record it added (nothing folded it)."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from memstore import Store
        from memstore.schema import ShotRecord
        log = Store.init({str(tmp_path / "db")!r}).library("default").shots
        for i in range(3):
            log.add(ShotRecord(story_id="s1", shot_index=i, library="default", input_hash=f"h{{i}}"))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=120, capture_output=True)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    store = Store.open(tmp_path / "db")
    assert store.library("default").shots.hashes("s1") == {0: "h0", 1: "h1", 2: "h2"}
    assert _table_rows(store) == 0  # they were in the journal only, and it kept them


def test_a_reader_never_sees_a_record_twice_or_lose_one_while_folds_run(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "db")
    writer = store.library("default").shots
    reader = Store.open(tmp_path / "db").library("default").shots
    total = 2 * FOLD_EVERY + 10
    seen: list[list[int]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set() and len(seen) < 10_000:
            seen.append([r.shot_index for r in reader.records("s1")])

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(total):
            writer.add(_record(i))
            reads = len(seen)
            for _ in range(500):  # let the reader read between writes (a bounded wait)
                if len(seen) > reads or not thread.is_alive():
                    break
                stop.wait(0.005)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert len(seen) >= total // 2
    for indexes in seen:  # each read: the shots recorded so far, once each, none skipped
        assert indexes == list(range(len(indexes)))
    assert [r.shot_index for r in reader.records("s1")] == list(range(total))
