"""`continuity story run` and `continuity demo` as a user runs them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from continuity.cli import app
from continuity.video import probe

runner = CliRunner()


def test_demo_writes_video_report_and_provenance(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert len(summary["shots"]) >= 8
    assert probe(out / "story.mp4")["frames"] > 8 * 10
    assert (out / "report.html").exists()
    provenance = sorted((out / "shots").glob("*.provenance.json"))
    assert len(provenance) == len(summary["shots"])
    names = {n for s in summary["shots"] for n in s["hits"]}
    assert {"Mara", "Theo", "Harbor", "Forest"} <= names
    # a second run resumes every shot
    again = json.loads(runner.invoke(app, ["demo", "--out", str(out), "--json"]).stdout)
    assert all(s["skipped"] for s in again["shots"])


def test_story_run_on_st_bench(shared_dir, tmp_path):
    script = shared_dir / "data" / "st-bench" / "cat.json"
    db = str(tmp_path / "db")
    result = runner.invoke(
        app,
        [
            "story",
            "run",
            str(script),
            "--out",
            str(tmp_path / "out"),
            "--shots",
            "3",
            "--width",
            "160",
            "--height",
            "96",
            "--fps",
            "4",
            "--db",
            db,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [s["index"] for s in summary["shots"]] == [0, 1, 2]
    assert probe(tmp_path / "out" / "story.mp4")["frames"] > 0


@pytest.mark.parametrize(
    "content, message",
    [
        ("scenes: []", "no scenes"),
        ("scenes:\n  - shots:\n      - prompt: ''\n", "scene 1, shot 1"),
    ],
)
def test_bad_scripts_fail_in_one_line(tmp_path, content, message):
    script = tmp_path / "bad.yaml"
    script.write_text(content)
    result = runner.invoke(
        app, ["story", "run", str(script), "--out", str(tmp_path / "out"), "--db", str(tmp_path / "db")]
    )
    assert result.exit_code == 1
    assert message in result.output and result.output.strip().count("\n") == 0
