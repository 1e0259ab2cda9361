"""Resuming a finished story from its shot records, without planning it again (issue 12)."""

from __future__ import annotations

import numpy as np

from continuity.runner import RunConfig, StoryRunner
from continuity.story import parse_story
from tests.continuity.test_runner import SMALL, story_data


class CountingRetriever:
    def __init__(self, library):
        from retrieval import Retriever

        self.inner, self.calls = Retriever(library), 0

    def retrieve(self, *args, **kwargs):
        self.calls += 1
        return self.inner.retrieve(*args, **kwargs)


def rerun(library, out, data=None):
    retriever = CountingRetriever(library)
    runner = StoryRunner(library, out, RunConfig(**SMALL), retriever=retriever)
    return runner.run(parse_story(data or story_data())), retriever.calls


def test_a_finished_story_resumes_without_retrieving(cast, tmp_path):
    first, calls = rerun(cast, tmp_path / "out")
    assert calls == 4 and not any(s.skipped for s in first.shots)
    report = (tmp_path / "out" / "report.html").stat().st_mtime_ns
    again, calls = rerun(cast, tmp_path / "out")
    assert calls == 0 and all(s.skipped for s in again.shots)
    assert [s.input_hash for s in again.shots] == [s.input_hash for s in first.shots]
    assert [h.entity.name for h in again.shots[3].result.hits] == [h.entity.name for h in first.shots[3].result.hits]
    assert (tmp_path / "out" / "report.html").stat().st_mtime_ns == report  # nothing changed, nothing redone


def test_a_changed_shot_replans_from_there_with_the_same_hashes_before(cast, tmp_path):
    first, _ = rerun(cast, tmp_path / "out")
    changed = story_data()
    changed["scenes"][1]["shots"][0]["prompt"] = "Bram sharpens a blade in the Forest."
    again, calls = rerun(cast, tmp_path / "out", changed)
    assert [s.skipped for s in again.shots] == [True, True, False, False] and calls == 2
    assert [s.input_hash for s in again.shots[:2]] == [s.input_hash for s in first.shots[:2]]


def test_a_library_change_replans_every_shot(cast, tmp_path):
    first, _ = rerun(cast, tmp_path / "out")
    cast.add_images("Aria", [np.full((40, 30, 3), 200, np.uint8)])  # a new blueprint of Aria
    again, calls = rerun(cast, tmp_path / "out")
    assert calls == 4  # planned again: what is retrieved may differ now
    assert [s.skipped for s in again.shots] == [
        s.input_hash == f.input_hash for s, f in zip(again.shots, first.shots, strict=True)
    ]
