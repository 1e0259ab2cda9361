"""Consent that can be withdrawn: evidence kept append-only, revocation blocks generation at once,
``continuity audit`` finds every use of the entity; watermark lookups in the shot log."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from continuity.cli import app
from continuity.consent import check_rights
from continuity.provenance import read_provenance
from continuity.runner import RunConfig, StoryRunner
from continuity.story import parse_story
from memstore.consent_log import ConsentLog
from memstore.errors import ConsentError, InvalidInputError

from .test_runner import SMALL, story_data

cli = CliRunner()


def test_events_keep_evidence_and_set_the_rights(cast):
    log = ConsentLog(cast)
    granted = log.record("Aria", True, "Aria's agent", document_sha256="ab" * 32)
    assert cast.get("Aria").rights.consent is True
    revoked = log.record("Aria", False, "Aria herself")
    assert cast.get("Aria").rights.consent is False
    events = log.events("Aria")
    assert [(e.granted, e.by) for e in events] == [(True, "Aria's agent"), (False, "Aria herself")]
    assert events[0].document_sha256 == "ab" * 32 and events[0].id == granted.id
    assert revoked.at >= granted.at and events[1].entity_name == "Aria"
    assert log.events("Bram") == [] and len(log.events()) == 2
    with pytest.raises(ConsentError, match="Aria"):  # new generation is refused at once
        check_rights([cast.get("Aria")])


def test_bad_events_are_refused_and_change_nothing(cast):
    log = ConsentLog(cast)
    with pytest.raises(InvalidInputError, match="64 hex"):
        log.record("Aria", False, "desk", document_sha256="not-a-hash")
    with pytest.raises(InvalidInputError, match="who recorded"):
        log.record("Aria", False, "   ")
    with pytest.raises(InvalidInputError, match="True or False"):
        log.record("Aria", "no", "desk")  # type: ignore[arg-type]
    assert cast.get("Aria").rights.consent is None and log.events() == []


@pytest.mark.slow
def test_revoke_and_audit_find_every_use(cast, tmp_path, monkeypatch):
    monkeypatch.setenv("CONTINUITY_DB", cast.store.uri)
    out = tmp_path / "out"
    run = StoryRunner(cast, out, RunConfig(**SMALL)).run(parse_story(story_data()))
    aria = cast.get("Aria")
    used = {s.index for s in run.shots if aria.id in {h.entity.id for h in s.result.hits}}
    assert used and used != {s.index for s in run.shots}  # some shots, not all

    release = tmp_path / "withdrawal.pdf"
    release.write_bytes(b"I withdraw my consent.")
    result = cli.invoke(app, ["consent", "revoke", "Aria", "--by", "Aria herself", "--document", str(release)])
    assert result.exit_code == 0, result.output
    assert cast.get("Aria").rights.consent is False
    with pytest.raises(ConsentError):
        StoryRunner(cast, tmp_path / "again", RunConfig(**SMALL)).run(parse_story(story_data()))

    report = json.loads(cli.invoke(app, ["audit", "Aria", "--json"]).stdout)
    assert report["consent"] is False
    assert report["consent_events"][-1]["document_sha256"] == hashlib.sha256(release.read_bytes()).hexdigest()
    assert {s["shot_index"] for s in report["shots"]} == used
    expected_files = {
        str(out / "shots" / o.path) for i in used for o in read_provenance(run.shots[i].provenance).outputs
    }
    assert set(report["files"]) == expected_files and all(f.endswith((".mp4", ".jpg")) for f in report["files"])
    text = cli.invoke(app, ["audit", "Aria"])
    assert text.exit_code == 0 and "withdrawn by Aria herself" in text.stdout


def test_consent_cli_errors_are_one_line(cast, monkeypatch, tmp_path):
    monkeypatch.setenv("CONTINUITY_DB", cast.store.uri)
    missing = cli.invoke(app, ["consent", "grant", "Nobody", "--by", "desk"])
    assert missing.exit_code == 1 and "Nobody" in missing.output
    no_doc = cli.invoke(app, ["consent", "grant", "Aria", "--by", "desk", "--document", str(tmp_path / "x.pdf")])
    assert no_doc.exit_code == 1 and "does not exist" in no_doc.output
    assert ConsentLog(cast).events() == []


def test_shot_log_finds_shots_by_watermark(cast, tmp_path):
    from memstore.schema import ShotRecord
    from memstore.shots import shots_with_watermark

    for index, mark in enumerate(["0badcafe", "12345678"]):
        cast.shots.add(
            ShotRecord(
                story_id="s",
                shot_index=index,
                library=cast.name,
                input_hash=f"h{index}",
                provenance=json.dumps({"watermark": mark}, indent=2),
            )
        )
    assert [r.shot_index for r in cast.shots.find_watermark("12345678")] == [1]
    assert [r.shot_index for r in shots_with_watermark(cast.store, "0BADCAFE")] == [0]
    assert cast.shots.find_watermark("ffffffff") == []
    with pytest.raises(InvalidInputError, match="8 hex"):
        cast.shots.find_watermark("x' OR 1=1 --")
