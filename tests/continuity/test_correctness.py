"""Day-one correctness of the story loop (issue 20): resume checks that the files are this story's,
typos fail before anything renders, outputs are readable by others, policies really differ."""

from __future__ import annotations

import os
import stat

import pytest

from continuity.runner import RunConfig, StoryRunner
from continuity.story import parse_story
from memstore.errors import ScriptError
from tests.continuity.test_runner import SMALL, run_story, story_data


def _other_story() -> dict:
    data = story_data(["Bram walks in the Forest.", "He stops.", "Aria waits at the Harbor.", "Aria sits."])
    return {**data, "id": "other-story"}


def test_resume_does_not_stitch_another_storys_shots(cast, tmp_path):
    out = tmp_path / "out"
    run_story(cast, out)  # test-story
    run_story(cast, out, data=_other_story())  # overwrites shots/shot_000.mp4 ... in the same folder
    _, again = run_story(cast, out)  # test-story again: its records match, the files do not
    assert not any(s.skipped for s in again.shots)
    from continuity.provenance import read_provenance

    assert {read_provenance(s.provenance).story_id for s in again.shots} == {"test-story"}
    _, resumed = run_story(cast, out)  # now the files are its own: a real resume
    assert all(s.skipped for s in resumed.shots)


def test_unknown_cast_and_location_fail_with_did_you_mean_before_rendering(cast, tmp_path):
    data = story_data()
    data["scenes"][0]["location"] = "Harbour"
    data["scenes"][1]["shots"][0]["cast"] = ["Bramm"]
    before = len(cast.list())
    with pytest.raises(ScriptError) as info:
        run_story(cast, tmp_path / "out", data=data)
    message = str(info.value)
    assert "'Harbour'" in message and "did you mean 'Harbor'" in message
    assert "'Bramm'" in message and "did you mean 'Bram'" in message
    assert not (tmp_path / "out").exists() and len(cast.list()) == before


def test_cast_member_without_images_is_not_registered_empty(cast, tmp_path):
    data = {**story_data(), "cast": [{"name": "Stranger", "kind": "character"}]}
    with pytest.raises(ScriptError, match="'Stranger' is not in library 'default' and the script gives no images"):
        run_story(cast, tmp_path / "out", data=data)
    assert cast.find("Stranger") is None


def test_misspelt_key_is_named_with_a_suggestion():
    data = story_data()
    shot = data["scenes"][0]["shots"][0]
    shot["promt"] = shot.pop("prompt")
    with pytest.raises(ScriptError, match=r"'promt' is not a known field \(did you mean 'prompt'\?\)"):
        parse_story(data)
    with pytest.raises(ScriptError, match=r"'scense' is not a known field \(did you mean 'scenes'\?\)"):
        parse_story({**story_data(), "scense": []})


def test_outputs_follow_the_umask(cast, tmp_path):
    old = os.umask(0o022)
    try:
        _, run = run_story(cast, tmp_path / "out")
    finally:
        os.umask(old)
    files = [run.video, run.report, *(s.video for s in run.shots), *(s.provenance for s in run.shots)]
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    assert set(modes.values()) == {0o644}, modes


def test_memory_policies_choose_different_frames(cast, tmp_path):
    picks = {}
    for policy in ("relevant", "sink_recent"):
        _, run = run_story(
            cast, tmp_path / policy, data={**story_data(), "id": f"p-{policy}"}, memory_policy=policy, memory_budget=1
        )
        picks[policy] = [[(f.shot, why.split()[0]) for f, why in s.memory] for s in run.shots]
    assert picks["relevant"] != picks["sink_recent"]
    assert all(len(m) <= 1 for m in picks["relevant"] + picks["sink_recent"])


def test_write_back_can_be_turned_off(cast, tmp_path):
    runner = StoryRunner(cast, tmp_path / "out", RunConfig(**SMALL, write_back=False))
    runner.run(parse_story(story_data()))
    assert cast.keyframes("test-story") == []
