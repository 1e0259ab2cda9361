"""C2PA content credentials on what a story run writes: signed with a throwaway certificate chain,
verified, tampering detected; ``continuity verify`` and its exit statuses; unsigned runs say so once."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from continuity.cli import app
from continuity.provenance import read_provenance
from continuity.provenance.credentials import (
    SHOT_ASSERTION,
    TRAINED_ALGORITHMIC_MEDIA,
    SigningIdentity,
    read_credentials,
    shot_assertion,
)
from continuity.provenance.devcert import write_test_identity
from continuity.provenance.manifest import ShotManifest
from continuity.runner import RunConfig, StoryRunner
from continuity.story import parse_story
from memstore.errors import InvalidInputError

from .test_runner import story_data

SIGNABLE = dict(width=320, height=208, fps=4)  # large enough to carry the watermark
cli = CliRunner()


@pytest.fixture
def identity(tmp_path, monkeypatch):
    cert, key = write_test_identity(tmp_path / "identity")
    monkeypatch.setenv("CONTINUITY_SIGN_CERT", str(cert))
    monkeypatch.setenv("CONTINUITY_SIGN_KEY", str(key))
    return cert, key


@pytest.fixture
def signed_run(cast, tmp_path, identity):
    out = tmp_path / "out"
    run = StoryRunner(cast, out, RunConfig(**SIGNABLE)).run(parse_story(story_data()))
    return cast, out, run


@pytest.mark.slow
def test_story_run_signs_shot_mp4s_keyframes_and_the_story(signed_run):
    library, out, run = signed_run
    manifest = read_provenance(out / "shots" / "shot_000.provenance.json")
    kinds = {o.kind for o in manifest.outputs}
    assert kinds == {"video", "keyframe"} and all(o.signed for o in manifest.outputs)
    assert manifest.watermark and len(manifest.watermark) == 8
    keyframe = out / "shots" / next(o.path for o in manifest.outputs if o.kind == "keyframe")
    assert keyframe.name.startswith("shot_000.keyframe_") and keyframe.suffix == ".jpg"
    for path in (out / "shots" / "shot_000.mp4", keyframe, out / "story.mp4"):
        check = read_credentials(path)
        assert check.state == "valid", (path, check.failures)
        actions = check.assertion("c2pa.actions.v2") or check.assertion("c2pa.actions")
        assert actions["actions"][0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
        assert check.signer["common_name"] == "continuity test signer"
    claim = read_credentials(out / "shots" / "shot_000.mp4").assertion(SHOT_ASSERTION)
    assert claim["story_id"] == "test-story" and claim["shot_index"] == 0
    assert claim["seed"] == manifest.seed and claim["prompt"] == manifest.prompt
    assert claim["watermark"] == manifest.watermark and claim["library"] == library.name
    aria = library.get("Aria")
    used = {b["entity_id"]: b for b in claim["blueprints"]}
    assert used[aria.id]["name"] == "Aria" and used[aria.id]["consent"] is None
    registered = {r.sha256 for r in library.references(aria, source="registered")}
    assert set(used[aria.id]["reference_sha256"]) <= registered and used[aria.id]["reference_sha256"]
    ingredients = read_credentials(out / "shots" / "shot_000.mp4").manifest["ingredients"]
    assert {i["metadata"]["org.continuity.sha256"] for i in ingredients} >= set(used[aria.id]["reference_sha256"])
    story = read_credentials(out / "story.mp4")
    assert [s["shot_index"] for s in story.assertion("org.continuity.story")["shots"]] == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_changed_byte_is_tampering_and_verify_says_so(signed_run, monkeypatch):
    library, out, _ = signed_run
    monkeypatch.setenv("CONTINUITY_DB", library.store.uri)
    video = out / "shots" / "shot_000.mp4"
    good = cli.invoke(app, ["verify", str(video), "--json"])
    assert good.exit_code == 0, good.output
    report = json.loads(good.stdout)
    manifest = read_provenance(out / "shots" / "shot_000.provenance.json")
    assert report["status"] == "valid" and manifest.watermark in report["watermarks"]
    shot = report["shots"][0]
    assert (shot["story_id"], shot["shot_index"], shot["library"]) == ("test-story", 0, library.name)
    assert "Aria" in {e["name"] for e in shot["entities"]}
    for path in (video, out / "shots" / next(o.path for o in manifest.outputs if o.kind == "keyframe")):
        data = bytearray(path.read_bytes())
        data[len(data) - 200] ^= 0xFF  # inside the media data, far from the manifest
        path.write_bytes(bytes(data))
        assert read_credentials(path).state == "tampered"
        bad = cli.invoke(app, ["verify", str(path)])
        assert bad.exit_code == 1 and "tampered" in bad.stdout


@pytest.mark.slow
def test_a_file_without_credentials_is_unknown_and_traced_by_its_watermark(signed_run, monkeypatch, tmp_path):
    library, out, _ = signed_run
    monkeypatch.setenv("CONTINUITY_DB", library.store.uri)
    from continuity.video import read_frames, write_mp4

    copy = write_mp4(tmp_path / "copy.mp4", read_frames(out / "shots" / "shot_002.mp4"), fps=4)  # credentials lost
    result = cli.invoke(app, ["verify", str(copy), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["status"] == "unknown" and report["credentials"]["state"] == "none"
    assert [(s["story_id"], s["shot_index"]) for s in report["shots"]] == [("test-story", 2)]


@pytest.mark.slow
def test_unsigned_run_says_once_and_still_writes_provenance(cast, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("CONTINUITY_SIGN_CERT", raising=False)
    monkeypatch.delenv("CONTINUITY_SIGN_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="continuity.provenance"):
        run = StoryRunner(cast, tmp_path / "out", RunConfig(**SIGNABLE)).run(parse_story(story_data()))
    said = [r for r in caplog.records if "not signed" in r.getMessage()]
    assert len(said) == 1
    manifest = read_provenance(run.shots[0].provenance)
    assert manifest.outputs and not any(o.signed for o in manifest.outputs)
    assert read_credentials(run.shots[0].video).state == "none"


def test_signing_identity_errors_are_clear(tmp_path):
    cert, _ = write_test_identity(tmp_path)
    with pytest.raises(InvalidInputError, match="CONTINUITY_SIGN_KEY is not set"):
        SigningIdentity.from_env({"CONTINUITY_SIGN_CERT": str(cert)})
    with pytest.raises(InvalidInputError, match="does not exist"):
        SigningIdentity.from_env({"CONTINUITY_SIGN_CERT": str(cert), "CONTINUITY_SIGN_KEY": str(tmp_path / "no.key")})
    with pytest.raises(InvalidInputError, match="algorithm"):
        SigningIdentity.from_files(cert, cert, alg="md5")
    assert SigningIdentity.from_env({}) is None


def test_guard_verdict_is_asserted_when_the_manifest_has_one():
    class GuardedManifest(ShotManifest):
        guard: dict | None = None

    manifest = GuardedManifest(
        story_id="s", shot_index=0, input_hash="h", prompt="p", generator="animatic", guard={"accepted": True}
    )
    assert shot_assertion(manifest, {}, {})["guard"] == {"accepted": True}
    assert "guard" not in shot_assertion(ShotManifest(**manifest.model_dump(exclude={"guard"})), {}, {})


@pytest.mark.slow
def test_http_verify_endpoint(signed_run, tmp_path):
    from fastapi.testclient import TestClient

    from continuity.server import create_app
    from continuity.server.routers import verify as verify_router

    library, out, _ = signed_run
    server = create_app(library.store.uri)
    server.include_router(verify_router.router)  # the one line app.py gets (the lead adds it there)
    client = TestClient(server, base_url="http://127.0.0.1")
    video = out / "shots" / "shot_001.mp4"
    body = client.post("/verify", files={"file": (video.name, video.read_bytes(), "video/mp4")})
    assert body.status_code == 200, body.text
    report = body.json()
    assert report["status"] == "valid" and report["exit_code"] == 0
    assert [(s["story_id"], s["shot_index"]) for s in report["shots"]] == [("test-story", 1)]
    refused = client.post("/verify", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert refused.status_code in (400, 422) and "MP4" in refused.text
