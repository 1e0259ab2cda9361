"""`continuity story plan` and `story run --dry-run`: the whole story planned, every pre-flight
problem listed at once, nothing rendered or written."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from continuity.cli import app
from continuity.plan import plan_story
from continuity.preflight import preflight
from continuity.session import SessionConfig
from continuity.story import parse_story
from memstore.store import TABLES

cli = CliRunner()

CLEAN = """\
id: harbor-day
scenes:
  - index: 1
    location: Harbor
    shots:
      - {prompt: "Aria walks along the harbor at dusk.", cut: true, cast: [Aria]}
      - {prompt: "She meets the old blacksmith Bram.", cut: false}
  - index: 2
    location: Forest
    shots:
      - {prompt: "Aria rests in the forest clearing.", cast: [Aria]}
"""

# A typo (Arai), a refused entity (Bram: consent no), and, from the command line, missing weights.
BROKEN = """\
id: harbor-broken
scenes:
  - index: 1
    location: Harbor
    shots:
      - {prompt: "Arai walks along the harbor.", cast: [Arai]}
      - {prompt: "The old blacksmith Bram hammers at his forge.", cast: [Bram]}
"""


def _versions(library) -> dict[str, int]:
    """Every table's Lance version. Two derived things a read builds on first use are made here
    first, so that what is compared is what a plan could write: the BM25 index of the entities
    (memstore.fts, built by the first search, as `continuity query` builds it) and the empty shots
    table (memstore.store.Store.shots, created by the first read of a store made before it)."""
    from retrieval import Retriever, ShotQuery

    Retriever(library).retrieve(ShotQuery("warm up"))
    library.shots.hashes("warm-up")
    store = library.store
    return {name: store.table(name).version for name in (*TABLES, "shots")}


def _write(tmp_path, text: str):
    script = tmp_path / "story.yaml"
    script.write_text(text)
    return script


def _db(library) -> str:
    return str(library.store.uri)


def test_plan_lists_every_problem_and_renders_nothing(cast, tmp_path):
    cast.update("Bram", rights={"consent": False})
    before = _versions(cast)
    script = _write(tmp_path, BROKEN)
    args = ["story", "plan", str(script), "--db", _db(cast)]
    result = cli.invoke(app, [*args, "--generator", "ip-adapter", "--model", str(tmp_path / "nonexistent")])
    assert result.exit_code == 1, result.output
    problems = [line for line in result.output.splitlines() if line.startswith("problem:")]
    assert len(problems) == 3, result.output
    assert any("'Arai'" in p and "did you mean 'Aria'" in p for p in problems), problems
    assert any("'Bram'" in p and "consent is 'no'" in p and "shot 1 (scene 1, shot 2)" in p for p in problems)
    assert any("nonexistent" in p and "does not exist" in p for p in problems), problems
    assert "nothing was rendered" in result.output
    assert _versions(cast) == before
    assert not list(tmp_path.glob("**/*.mp4"))


def test_dry_run_of_story_run_is_the_plan(cast, tmp_path):
    cast.update("Bram", rights={"expires": datetime.now(timezone.utc) - timedelta(days=1)})
    before = _versions(cast)
    script = _write(tmp_path, BROKEN)
    out = tmp_path / "out"
    result = cli.invoke(app, ["story", "run", str(script), "--dry-run", "--out", str(out), "--db", _db(cast)])
    assert result.exit_code == 1, result.output
    assert "rights expired" in result.output and "'Arai'" in result.output
    assert not out.exists()
    assert _versions(cast) == before


def test_override_lets_a_refused_entity_through_the_plan(cast, tmp_path):
    cast.update("Bram", rights={"consent": False})
    script = _write(tmp_path, BROKEN.replace("Arai", "Aria"))
    base = ["story", "plan", str(script), "--db", _db(cast), "--json"]
    assert cli.invoke(app, base).exit_code == 1
    result = cli.invoke(app, [*base, "--override-consent", "bram"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [o["name"] for o in plan["shots"][1]["consent_overrides"]] == ["Bram"]
    assert plan["refused"] == []


def test_clean_plan_prints_every_shot_with_reasons(cast, tmp_path):
    before = _versions(cast)
    script = _write(tmp_path, CLEAN)
    result = cli.invoke(app, ["story", "plan", str(script), "--db", _db(cast)])
    assert result.exit_code == 0, result.output
    for header in ("shot 0 (scene 1, shot 1)", "shot 1 (scene 1, shot 2)", "shot 2 (scene 2, shot 1)"):
        assert header in result.output
    assert "Aria (character" in result.output and "Bram (character" in result.output
    assert "render" in result.output

    as_json = cli.invoke(app, ["story", "plan", str(script), "--db", _db(cast), "--json"])
    assert as_json.exit_code == 0, as_json.output
    plan = json.loads(as_json.stdout)
    assert [s["index"] for s in plan["shots"]] == [0, 1, 2]
    assert [s["scene"] for s in plan["shots"]] == [1, 1, 2]
    first, second, third = plan["shots"]
    assert {"Aria", "Harbor"} <= {h["name"] for h in first["hits"]}
    assert all(h["reasons"] for s in plan["shots"] for h in s["hits"])
    # the continuation keeps Aria on screen through the story context ("She")
    assert "Aria" in {h["name"] for h in second["hits"]}
    assert "Forest" in {h["name"] for h in third["hits"]}
    assert all(len(s["input_hash"]) == 64 for s in plan["shots"])
    assert len({s["input_hash"] for s in plan["shots"]}) == 3
    assert all(s["memory"] == [] for s in plan["shots"])  # nothing rendered yet: no memory to see
    assert _versions(cast) == before


def test_plan_hashes_are_the_runs(cast, tmp_path):
    """A dry run plans what the run makes. Its memory sees only keyframes already stored, so before
    the run only the first shot's hash is the run's (the second one's memory will hold the first's
    keyframes); after the run the plan is the run's for every shot and says 'resume'."""
    from continuity.runner import RunConfig, StoryRunner

    story = parse_story(
        {
            "id": "two",
            "scenes": [{"index": 1, "location": "Harbor", "shots": ["Aria on the pier.", "Aria waves."]}],
        }
    )
    config = RunConfig(width=96, height=64, fps=4)
    planned = plan_story(story, cast, config)
    StoryRunner(cast, tmp_path / "out", config).run(story)
    recorded = cast.shots.hashes("two")
    assert recorded[0] == planned.shots[0].input_hash and planned.shots[1].memory == []
    again = plan_story(story, cast, config)
    assert [recorded[p.index] for p in again.shots] == [p.input_hash for p in again.shots]
    assert all(again.would_resume(p) for p in again.shots)
    assert again.shots[1].memory  # keyframes of shot 0, already in the store


def test_preflight_names_missing_cast_images_and_refs(library, tmp_path):
    story = parse_story(
        {
            "id": "cast",
            "cast": [
                {"name": "Nell", "images": ["nell/missing.png"]},
                {"name": "Old Tom", "ref": "Tom"},
            ],
            "scenes": [{"index": 1, "shots": ["Nell meets Old Tom."]}],
        },
        base_dir=tmp_path,
    ).model_copy(update={"base_dir": str(tmp_path)})
    problems = preflight(story, library, SessionConfig())
    assert any("'Nell'" in p and "missing.png" in p for p in problems), problems
    assert any("'Old Tom' refers to 'Tom'" in p for p in problems), problems


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_plan_of_a_missing_store_fails_in_one_line(tmp_path, extra):
    script = _write(tmp_path, CLEAN)
    result = cli.invoke(app, ["story", "plan", str(script), "--db", str(tmp_path / "nowhere"), *extra])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0, result.output
    assert not (tmp_path / "nowhere").exists()
