"""Per-shot provenance manifests: round trip, atomic write, retrieval results, errors."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from continuity.provenance import (
    BlueprintUse,
    ConsentOverride,
    ShotManifest,
    output_file,
    read_provenance,
    uses_from_retrieval,
    write_provenance,
)
from memstore.errors import InvalidInputError
from memstore.schema import Entity, Reference
from retrieval.query import Hit, RetrievalResult, ShotQuery


def _result() -> RetrievalResult:
    knight = Entity(kind="character", name="Sir Aldric")
    ref = Reference(entity_id=knight.id, kind="character", era="armored", width=8, height=8, sha256="a" * 64)
    mem = Reference(
        entity_id=knight.id,
        kind="character",
        source="harvested",
        width=8,
        height=8,
        sha256="b" * 64,
        story="knight",
        shot=2,
        frame=40,
    )
    hit = Hit(entity=knight, score=0.83, reasons=("named in prompt", "dense 0.41"), references=(ref,))
    return RetrievalResult(
        query=ShotQuery(prompt="Sir Aldric rides"), hits=(hit,), memory=(mem,), memory_reasons=("sink",)
    )


def _manifest(tmp_path, **extra) -> ShotManifest:
    video = tmp_path / "run" / "shot_003.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    video.write_bytes(b"not really a video")
    return ShotManifest(
        story_id="knight",
        shot_index=3,
        scene_index=2,
        shot_in_scene=1,
        input_hash="c" * 64,
        prompt="Sir Aldric <rides> home",
        enriched_prompt="Sir Aldric (scarred knight, silver gorget) rides home",
        generator="animatic",
        model_id=None,
        seed=7,
        **uses_from_retrieval(_result()),
        consent_overrides=[
            ConsentOverride(entity_id="e1", name="Sir Aldric", reason="consent 'no' overridden by --allow")
        ],
        outputs=[output_file(video, base_dir=tmp_path / "run")],
        timings={"retrieve": 0.012, "generate": 1.5},
        **extra,
    )


def test_round_trip(tmp_path):
    m = _manifest(tmp_path)
    path = write_provenance(tmp_path / "run" / "shot_003.json", m)
    back = read_provenance(path)
    assert back == m
    assert back.blueprints == [
        BlueprintUse(
            entity_id=m.blueprints[0].entity_id,
            name="Sir Aldric",
            kind="character",
            score=0.83,
            reasons=["named in prompt", "dense 0.41"],
        )
    ]
    assert back.references[0].era == "armored" and back.references[0].sha256 == "a" * 64
    assert (back.memory[0].story, back.memory[0].shot, back.memory[0].frame, back.memory[0].reason) == (
        "knight",
        2,
        40,
        "sink",
    )
    out = back.outputs[0]
    assert out.path == "shot_003.mp4" and out.bytes == 18
    assert out.sha256 == hashlib.sha256(b"not really a video").hexdigest()
    assert "python" in back.software and "numpy" in back.software
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 1 and raw["prompt"] == "Sir Aldric <rides> home"


def test_atomic_write_leaves_no_temp_and_keeps_old_on_failure(tmp_path, monkeypatch):
    m = _manifest(tmp_path)
    path = write_provenance(tmp_path / "run" / "p.json", m)
    before = path.read_text()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_provenance(path, m.model_copy(update={"seed": 8}))
    monkeypatch.undo()
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["p.json", "shot_003.mp4"]


def test_read_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_provenance(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{half")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        read_provenance(bad)
    bad.write_text(json.dumps({"story_id": "x"}))
    with pytest.raises(InvalidInputError, match="'shot_index'"):
        read_provenance(bad)
    m = _manifest(tmp_path)
    data = json.loads(m.model_dump_json())
    data["schema_version"] = 99
    bad.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match="schema version 99"):
        read_provenance(bad)
    with pytest.raises(InvalidInputError, match="does not exist"):
        output_file(tmp_path / "missing.mp4")


def test_output_outside_base_keeps_its_path(tmp_path):
    f = tmp_path / "elsewhere.png"
    f.write_bytes(b"x")
    out = output_file(f, base_dir=tmp_path / "run", kind="keyframe")
    assert out.path == str(f) and out.kind == "keyframe"


def test_a_rerender_replaces_every_keyframe_image_of_the_shot_and_no_other(tmp_path):
    import numpy as np

    from continuity.provenance.publish import write_keyframe_images

    video = tmp_path / "shot_007.mp4"
    frames = np.zeros((6, 8, 8, 3), dtype=np.uint8)
    assert len(write_keyframe_images(video, frames, [0, 2, 4])) == 3
    neighbour = tmp_path / "shot_0070.keyframe_0.jpg"  # another shot whose name starts alike
    neighbour.write_bytes(b"kept")
    written = write_keyframe_images(video, frames, [1, 5])
    assert sorted(p.name for p, _ in written) == ["shot_007.keyframe_0.jpg", "shot_007.keyframe_1.jpg"]
    assert sorted(p.name for p in tmp_path.glob("shot_007.keyframe_*.jpg")) == [p.name for p, _ in written]
    assert neighbour.read_bytes() == b"kept"
