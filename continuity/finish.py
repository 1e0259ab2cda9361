"""The story's finish, after its last shot: the story MP4, the consistency metrics
(``metrics.json``) and the HTML report, all read from what the shots wrote."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memstore.embedders import Embedder
from memstore.library import Library
from memstore.schema import Entity, Reference

from .keyframes import detect_faces, face_embedder, frame_embed, image_embedder
from .metrics import ConsistencyReport, ShotFaces, consistency, face_embed_with
from .report import ReportImage, shot_number
from .thresholds import face_threshold

if TYPE_CHECKING:
    from .runner import ShotRun, StoryRun

#: entity name -> shot index -> that shot's keyframes of the entity
Appearances = dict[str, dict[int, list[np.ndarray]]]


def finish_story(run: StoryRun, library: Library, *, fps: int, generator: str) -> None:
    """Write the story MP4, ``metrics.json`` and ``report.html`` of a run into its folder."""
    from .video import concat_mp4

    run.video = Path(concat_mp4(run.out_dir / "story.mp4", [s.video for s in run.shots], fps=fps))
    _sign_story(run, generator)
    appearances, entities = _appearances(run, library)
    report = _metrics(run.shots, library, appearances, entities, generator)
    run.metrics = {**report.to_json(), "guard": guard_figures(run.shots)}
    (run.out_dir / "metrics.json").write_text(json.dumps(run.metrics, indent=2))
    run.report = _report(run, library, appearances, report, generator)


def _sign_story(run: StoryRun, generator: str) -> None:
    """Sign the story MP4 with the run's identity, each shot MP4 an ingredient (unsigned without one)."""
    from .provenance import read_provenance
    from .provenance.publish import Publisher

    assert run.video is not None
    shots = [(s.video, read_provenance(s.provenance)) for s in run.shots]
    Publisher.from_env(run.out_dir).sign_story(run.video, run.story.id, generator, shots)


def guard_figures(shots: Sequence[ShotRun]) -> dict[str, Any]:
    """Attempts per shot and the share of made shots that passed the continuity guard."""
    made = [s for s in shots if not s.skipped]
    checked = [s for s in made if s.verdict is not None]
    return {
        "shots_made": len(made),
        "attempts_per_shot": round(sum(s.attempts for s in made) / len(made), 3) if made else None,
        "pass_rate": round(sum(1 for s in checked if s.verdict.passed) / len(checked), 4) if checked else None,
        "failed_shots": [s.index for s in checked if not s.verdict.passed],
    }


def keep_finished(run: StoryRun) -> bool:
    """A rerun that made nothing keeps the story MP4, metrics and report it finds, when they are
    newer than every shot (a 10,000-shot story is not re-encoded and re-reported to change nothing)."""
    outputs = [run.out_dir / "story.mp4", run.out_dir / "metrics.json", run.out_dir / "report.html"]
    if not all(p.exists() for p in outputs):
        return False
    oldest = min(p.stat().st_mtime for p in outputs)
    if any(s.video.exists() and s.video.stat().st_mtime > oldest for s in run.shots):
        return False
    run.video, _, run.report = outputs
    try:
        run.metrics = json.loads(outputs[1].read_text())
    except ValueError:
        return False
    return True


def _appearances(run: StoryRun, library: Library) -> tuple[Appearances, dict[str, Entity]]:
    shot_indexes = {s.index for s in run.shots}
    harvested = [
        r for r in library.keyframes(run.story.id, with_images=True, with_vectors=False) if r.shot in shot_indexes
    ]
    entities = library.entities_by_id(
        {r.entity_id for r in harvested} | {h.entity.id for s in run.shots for h in s.result.hits}
    )
    appearances: Appearances = {}
    for ref in harvested:
        name = entities[ref.entity_id].name if ref.entity_id in entities else ref.entity_id
        appearances.setdefault(name, {}).setdefault(int(ref.shot or 0), []).append(np.asarray(ref.pil()))
    return appearances, entities


def _metrics(
    shots: Sequence[ShotRun], library: Library, appearances: Appearances, entities: dict[str, Entity], generator: str
) -> ConsistencyReport:
    characters = [e for e in entities.values() if e.kind == "character"]
    face = face_embedder(library)
    references: dict[str, list[np.ndarray]] = {}
    faces: dict[int, ShotFaces] | None = None
    if face is not None:
        for entity in characters:
            references[entity.name] = [
                np.asarray(r.pil()) for r in library.references(entity, source="registered", with_images=True)
            ]
        if getattr(face, "detect_faces", None) is not None:
            faces = _shot_faces(shots, library, face)
    return consistency(
        appearances,
        embed=frame_embed(library),
        face_embed=face_embed_with(face) if face is not None else None,
        references=references,
        face_entities=[e.name for e in characters],
        image_embedder=image.spec if (image := image_embedder(library)) is not None else None,
        generator=generator,
        shot_faces=faces,
    )


def _shot_faces(shots: Sequence[ShotRun], library: Library, face: Embedder) -> dict[int, ShotFaces]:
    """Shot index -> what OCCM counts (metrics.OCCM_DEFINITION): every face of each keyframe, the
    characters whose registered references hold a face vector, and the faces of the shot's location
    references (people in a location photo are scenery, not cast)."""
    column, out = face.column_name, {}
    scenery: dict[str, list[np.ndarray]] = {}  # a location's faces, detected once per run
    for shot in shots:
        frames = [np.asarray(k.pil()) for k in library.references(ids=[k.id for k in shot.keyframes], with_images=True)]
        if not frames:
            continue
        people = [h.entity for h in shot.result.hits if h.entity.kind == "character"]
        places = [h.entity for h in shot.result.hits if h.entity.kind == "location"]
        out[shot.index] = ShotFaces(
            keyframe_faces=[[f.vector for f in detect_faces(face, fr) if f.face_box is not None] for fr in frames],
            expected=sum(1 for e in people if _has_face(library, e, column)),
            location_faces=[v for entity in places for v in _location_faces(library, face, entity, scenery)],
            same_face=face_threshold(face),
        )
    return out


def _location_faces(
    library: Library, face: Embedder, entity: Entity, cache: dict[str, list[np.ndarray]]
) -> list[np.ndarray]:
    if entity.id not in cache:
        cache[entity.id] = [
            f.vector
            for r in library.references(entity, source="registered", with_images=True)
            for f in detect_faces(face, np.asarray(r.pil()))
            if f.vector is not None
        ]
    return cache[entity.id]


def _has_face(library: Library, entity: Entity, column: str) -> bool:
    refs = library.references(entity, source="registered")
    return any(column in r.vectors and bool(np.all(np.isfinite(r.vectors[column]))) for r in refs)


#: shots whose images one store read fetches while the report is built: bounded memory for a long
#: story, a few reads instead of two a shot (10,000 shots spent more in reads than in the report)
REPORT_CHUNK = 64


def _chunk_images(library: Library, shots: Sequence[ShotRun], shown: set[str]) -> dict[str, bytes]:
    """Encoded images of these shots' keyframes and of the memory frames not shown yet, one read."""
    wanted = {k.id for s in shots for k in s.keyframes if k.image is None}
    wanted |= {f.reference.id for s in shots for f, _ in s.memory if f.reference.image is None}
    return library.images(wanted - shown) if wanted - shown else {}


def _shot_images(
    shot: ShotRun, images: dict[str, bytes], shown: set[str]
) -> tuple[list[ReportImage], list[ReportImage]]:
    """The report's images of one shot: its keyframes and the memory it used (a memory frame shown
    before keeps its key and no pixels: the report reuses the file it wrote then)."""

    def image(ref: Reference, caption: str) -> ReportImage | None:
        if ref.id in shown:
            return ReportImage(None, caption, key=ref.id)
        data = ref.image if ref.image is not None else images.get(ref.id)
        if data is None:  # removed from the store since the shot: the report goes on without it
            return None
        shown.add(ref.id)
        return ReportImage(np.asarray(ref.model_copy(update={"image": data}).pil()), caption, key=ref.id)

    unique = {(k.shot, k.frame): k for k in shot.keyframes}
    keyframes = [image(k, f"frame {k.frame}") for k in unique.values()]
    memory = [image(f.reference, f"shot {shot_number(f.shot)} frame {f.frame}: {why}") for f, why in shot.memory]
    return [i for i in keyframes if i is not None], [i for i in memory if i is not None]


def _report(
    run: StoryRun, library: Library, appearances: Appearances, metrics: ConsistencyReport, generator: str
) -> Path:
    from .provenance import read_provenance
    from .report import ShotReport, write_report

    shots = []
    cuts = {index: shot.cut for index, _, shot in run.story.iter_shots()}
    shown: set[str] = set()  # memory frames already in the report: written once, by key
    for start in range(0, len(run.shots), REPORT_CHUNK):
        chunk = run.shots[start : start + REPORT_CHUNK]
        images = _chunk_images(library, chunk, shown)
        for s in chunk:
            keyframes, memory = _shot_images(s, images, shown)
            manifest = read_provenance(s.provenance)
            shots.append(
                ShotReport.from_manifest(
                    manifest, s.provenance.parent, keyframes=keyframes, memory=memory, cut=cuts.get(s.index, True)
                )
            )
    return Path(write_report(run.out_dir, run.story, shots, metrics, entity_sheets=appearances, generator=generator))
