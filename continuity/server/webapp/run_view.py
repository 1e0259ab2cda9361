"""A story run as the store holds it (shot records, their manifests, the story's keyframes, the
run's ``metrics.json``), turned into :class:`continuity.report.ShotReport` sections: the web app's
run view is :func:`continuity.report.render_run` over these, the same rendering as ``report.html``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from continuity.provenance import ShotManifest
from continuity.report import ReportImage, ServedMedia, ShotReport, render_run, shot_number
from memstore.errors import NotFoundError
from memstore.library import Library
from memstore.schema import Reference, ShotRecord

from ..shapes import image_url


@dataclass(frozen=True)
class RunStory:
    """What the run view's header shows of a story the store knows only by its id."""

    id: str
    title: str


def run_url(library: str, story_id: str) -> str:
    return f"/libraries/{library}/runs/{story_id}"


def manifest_of(record: ShotRecord) -> ShotManifest | None:
    """The shot's recorded manifest, or None for a record without a readable one."""
    try:
        return ShotManifest.model_validate(json.loads(record.provenance or ""))
    except (ValueError, ValidationError):
        return None


def video_of(record: ShotRecord) -> Path | None:
    """The shot's MP4 as recorded by the run, when it still exists (the only file served)."""
    if not record.output:
        return None
    path = Path(record.output)
    return path if path.suffix.lower() == ".mp4" and path.is_file() else None


def metrics_of(records: list[ShotRecord]) -> dict[str, Any] | None:
    """The run's ``metrics.json`` (written by ``story run`` beside its ``shots/`` folder), if any."""
    for record in records:
        video = video_of(record)
        if video is not None:
            path = video.parent.parent / "metrics.json"
            try:
                return dict(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                return None
    return None


def keyframe_caption(ref: Reference, with_shot: bool) -> str:
    where = f"shot {shot_number(ref.shot or 0)} " if with_shot else ""
    rejected = " (rejected by the guard)" if ref.source == "rejected" else ""
    return f"{where}frame {ref.frame}{rejected}"


class RunView:
    """One story run of a library: its records and everything the run view shows of each shot."""

    def __init__(self, library: Library, story_id: str):
        self.library = library
        self.story_id = story_id
        self.records = library.shots.records(story_id)
        if not self.records:
            raise NotFoundError(f"story {story_id!r} has no finished shots; see GET /libraries/{library.name}/runs")
        # every keyframe of the story, in one read: what each shot wrote and what later shots remembered
        self.keyframes = library.references(story=story_id, with_vectors=False)
        self.by_id = {r.id: r for r in self.keyframes}

    def record(self, index: int) -> ShotRecord:
        for record in self.records:
            if record.shot_index == index:
                return record
        raise NotFoundError(f"story {self.story_id!r} has no finished shot {index}")

    def _image(self, ref: Reference, with_shot: bool) -> ReportImage:
        return ReportImage(caption=keyframe_caption(ref, with_shot), url=image_url(self.library.name, ref.id))

    def shot(self, record: ShotRecord) -> ShotReport:
        index = record.shot_index
        written = [self._image(r, False) for r in self.keyframes if r.shot == index]
        memory = [self._image(self.by_id[i], True) for i in record.memory if i in self.by_id]
        manifest = manifest_of(record)
        shot = (
            ShotReport.from_manifest(manifest, keyframes=written, memory=memory, cut=manifest.cut is not False)
            if manifest is not None
            else ShotReport(index=index, prompt=record.prompt or "", seed=record.seed, keyframes=written, memory=memory)
        )
        shot.video = video_of(record)
        if shot.video is not None:
            base = f"{run_url(self.library.name, self.story_id)}/shots/{index}"
            shot.video_url, shot.poster_url = f"{base}/video", f"{base}/poster"
        return shot

    def shots(self) -> list[ShotReport]:
        return [self.shot(r) for r in self.records]

    def html(self) -> str:
        generator = next((r.generator for r in self.records if r.generator), None)
        story = RunStory(self.story_id, self.story_id)
        return render_run(story, self.shots(), ServedMedia(), metrics=metrics_of(self.records), generator=generator)

    def summary(self) -> dict[str, Any]:
        """The run as JSON: per shot its number, prompt, memory and keyframes, guard verdict, media URLs."""
        shots = []
        for record, shot in zip(self.records, self.shots(), strict=True):
            shots.append(
                {
                    "index": record.shot_index,
                    "number": shot_number(record.shot_index),
                    "prompt": record.prompt,
                    "generator": record.generator,
                    "seed": record.seed,
                    "memory": list(record.memory),
                    "keyframes": [r.id for r in self.keyframes if r.shot == record.shot_index],
                    "guard": dict(shot.guard) if shot.guard else None,
                    "video_url": shot.video_url,
                    "poster_url": shot.poster_url,
                }
            )
        return {"story_id": self.story_id, "shots": shots, "metrics": metrics_of(self.records)}
