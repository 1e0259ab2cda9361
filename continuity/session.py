"""StorySession: one story, shot by shot, for any pipeline.

``plan`` a shot (retrieval with reasons, consent, episodic memory, the input hash, and, with an
adapter attached, its conditioning and the keyword arguments a loaded pipeline takes), render it
however you like, then ``commit`` its frames or MP4 (keyframes extracted and written back, the MP4
and provenance written, the shot recorded). The story context (who is on screen, where, who was
seen last) lives in the session and is rebuilt from the store's shot log when a session reopens,
so a pipeline on another machine, a ComfyUI graph or the HTTP API picks the story up where it was.
:class:`continuity.runner.StoryRunner` is a loop over a session.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from generators import Conditioning, GeneratorAdapter, ShotSpec
from memstore.errors import EntityNotFoundError, InvalidInputError
from memstore.library import Library
from memstore.schema import Reference, ShotRecord
from memstore.validation import clean_text, name_key
from retrieval.context import StoryContext
from retrieval.memory import MemoryFrame, group_frames, select_memory
from retrieval.query import Hit, RetrievalResult, ShotQuery

from .consent import ConsentOverride, check_rights
from .guard import GuardVerdict
from .keyframes import KeyframeBank, KeyframeWriter
from .preflight import keyed_names
from .story import Shot, ShotOptions, describe_validation, shot_input_hash
from .suggest import did_you_mean


@dataclass
class SessionConfig:
    """What decides a shot besides its script entry. Everything here enters each shot's input hash
    (except ``write_back`` and ``face_match_threshold``, which decide what is stored, not the shot)."""

    generator: str = "animatic"
    generator_options: dict[str, Any] = field(default_factory=dict)
    model: str | None = None  # local weights for diffusers generators (continuity.generator_setup)
    adapter: str | None = None  # IP-Adapter weights, or a LoRA for wan-m2v
    memory_policy: str = "relevant"
    memory_budget: int = 10
    width: int = 640
    height: int = 360
    fps: int = 12
    seed: int = 0
    consent_overrides: tuple[str, ...] = ()
    require_consent: bool = False
    # store each shot's keyframes as harvested references (the episodic memory of later shots)
    write_back: bool = True
    # cosine between a keyframe's face and a character's reference faces to attribute it
    face_match_threshold: float | None = None  # None: the face embedder's own (continuity.thresholds)


@dataclass
class ShotPlan:
    """Everything a shot will be made from, decided before anything is generated."""

    index: int  # global, 0-based
    scene_index: int
    shot: Shot
    location: str | None
    result: RetrievalResult  # with the chosen memory keyframes (images loaded)
    memory: list[tuple[MemoryFrame, str]]
    overrides: list[ConsentOverride]
    seed: int
    input_hash: str
    spec: ShotSpec
    plan_key: str | None = None  # set by a scripted run (continuity.resume)
    conditioning: Conditioning | None = None  # when the session has an adapter
    call_arguments: dict[str, Any] = field(default_factory=dict)  # for the user's loaded pipeline

    @property
    def memory_frames(self) -> list[np.ndarray]:
        """The memory keyframes as RGB uint8 arrays, in story order (for memory-to-video, VACE, ...)."""
        return [np.asarray(f.reference.pil()) for f, _ in self.memory]

    @property
    def reference_images(self) -> dict[str, list[Any]]:
        """Entity name -> its chosen reference images (PIL), best first."""
        return {h.entity.name: [r.pil() for r in h.references if r.image is not None] for h in self.result.hits}


@dataclass
class CommittedShot:
    """What committing a shot wrote."""

    index: int
    input_hash: str
    keyframes: list[Reference]
    record: ShotRecord
    video: Path | None = None
    provenance: Path | None = None


class StorySession:
    """One story of one library, planned and committed shot by shot."""

    def __init__(
        self,
        library: Library,
        story_id: str,
        config: SessionConfig | None = None,
        *,
        retriever: Any = None,
        adapter: GeneratorAdapter | None = None,
        out_dir: str | os.PathLike[str] | None = None,
        resume: bool = True,
    ):
        self.library = library
        self.story_id = clean_text(story_id, "story id")
        self.config = config or SessionConfig()
        self.adapter = adapter
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._retriever = retriever
        self._writer: KeyframeWriter | None = None
        self._bank: KeyframeBank | None = None
        self._recorded: set[int] = set(library.shots.hashes(self.story_id))  # shots with a record
        self._known_names: set[str] = set()  # names a shot used that resolved (checked once each)
        self.context = StoryContext()
        self.previous_hash = ""
        self.next_index = 0
        if resume:
            self._replay(library.shots.records(self.story_id))

    # --- state ----------------------------------------------------------------------------------
    @property
    def retriever(self) -> Any:
        if self._retriever is None:
            from retrieval import Retriever

            self._retriever = Retriever(self.library)
        return self._retriever

    @property
    def writer(self) -> KeyframeWriter:
        if self._writer is None:
            self._writer = KeyframeWriter(
                self.library, face_match_threshold=self.config.face_match_threshold, bank=self.bank
            )
        return self._writer

    @property
    def bank(self) -> KeyframeBank:
        """The story's keyframes, read once and kept in step by commits (see KeyframeBank)."""
        if self._bank is None:
            self._bank = KeyframeBank(self.library, self.story_id)
        return self._bank

    def _replay(self, records: Sequence[ShotRecord]) -> None:
        """Rebuild the story context and the hash chain from the shot log: what each finished
        shot retrieved, whether it was a cut, in shot order."""
        entities = self.library.entities_by_id({eid for r in records for eid in r.retrieved})
        for record in records:
            cut = bool(_manifest_field(record, "cut", True))
            hits = tuple(
                Hit(entity=entities[eid], score=1.0, reasons=("from the shot log",))
                for eid in record.retrieved
                if eid in entities
            )
            self.context.update(RetrievalResult(ShotQuery(record.prompt or "-", cut=cut), hits=hits))
            self.previous_hash = record.input_hash
            self.next_index = record.shot_index + 1

    def shots(self) -> list[ShotRecord]:
        """The finished shots of this story, in order."""
        return self.library.shots.records(self.story_id)

    def provenance(self, index: int) -> dict[str, Any]:
        """The provenance manifest recorded for a finished shot."""
        record = self.library.shots.get(self.story_id, index)
        if record is None or not record.provenance:
            raise InvalidInputError(f"story {self.story_id!r} has no finished shot {index}; see session.shots()")
        return dict(json.loads(record.provenance))

    def reset(self, from_index: int = 0) -> int:
        """Forget shots ``from_index`` onward (records and keyframes), so they are planned anew;
        returns how many shot records were dropped."""
        dropped = [r for r in self.shots() if r.shot_index >= from_index]
        leftovers = {s for s in self.bank.by_shot if s >= from_index}  # a crashed take's keyframes too
        for index in {r.shot_index for r in dropped} | leftovers:
            self._forget(index)
        self.context, self.previous_hash, self.next_index = StoryContext(), "", 0
        self._replay([r for r in self.shots() if r.shot_index < from_index])
        return len(dropped)

    def _forget(self, index: int) -> None:
        """Remove what an earlier (crashed or changed) take left for this shot; nothing to do (and
        no store round trip) for a shot never made, the common case of a long run."""
        stale = self.bank.drop(index)
        if stale:
            self.library.remove_references([r.id for r in stale])
        if index in self._recorded:
            self.library.shots.forget(self.story_id, index)
            self._recorded.discard(index)

    # --- planning -------------------------------------------------------------------------------
    def plan(
        self,
        prompt: str,
        *,
        cut: bool = True,
        cast: Sequence[str] | None = None,
        location: str | None = None,
        seed: int | None = None,
        duration: float = 2.0,
        scene_index: int = 1,
        first_frame_prompt: str | None = None,
        negative_prompt: str | None = None,
        era: str | Mapping[str, str] | None = None,
        regions: Mapping[str, Sequence[float]] | None = None,
        frames: int | None = None,
        options: ShotOptions | Mapping[str, Any] | None = None,
    ) -> ShotPlan:
        """Plan the next shot of the story from its prompt (and what the script knows of it).

        The keywords are the story script's shot fields (docs/story-script.md): ``era`` one era for
        every entity or a map of name -> era, ``regions`` name -> [x0, y0, x1, y1] in 0..1,
        ``frames`` overrides ``duration`` x fps, ``options`` {steps, guidance, scales}."""
        fields: dict[str, Any] = {
            "index": self.next_index + 1,
            "prompt": prompt,
            "cut": cut,
            "cast": list(cast) if cast is not None else None,
            "location": location,
            "duration": duration,
            "seed": seed,
            "first_frame_prompt": first_frame_prompt,
            "negative_prompt": negative_prompt,
            "era": dict(era) if isinstance(era, Mapping) else era,
            "regions": {k: tuple(v) for k, v in regions.items()} if regions else None,
            "frames": frames,
            "options": options,
        }
        try:
            shot = Shot.model_validate(fields)
        except ValidationError as exc:
            raise InvalidInputError(f"bad shot: {describe_validation(exc)}") from None
        return self.plan_shot(shot, index=self.next_index, scene_index=scene_index, location=location)

    def plan_shot(
        self, shot: Shot, *, index: int, scene_index: int, location: str | None, check_names: bool = True
    ) -> ShotPlan:
        """Retrieve, check rights, choose memory, hash the inputs and prepare the conditioning.
        ``check_names`` False plans past unknown names (a story's dry run lists them itself)."""
        if check_names:
            self._check_names(shot, location)
        era, eras = shot.eras()
        query = ShotQuery(
            prompt=shot.prompt,
            story_id=self.story_id,
            shot_index=index,
            cut=shot.cut,
            cast=tuple(shot.cast) if shot.cast else None,
            location=location,
            require_consent=self.config.require_consent,
            scene=scene_index,
            first_frame_prompt=shot.first_frame_prompt,
            era=era,
            eras=eras,
        )
        result = self.retriever.retrieve(query, self.context, keyframes=self.bank.recent(index))
        overrides = check_rights(
            [h.entity for h in result.hits],
            overrides=set(self.config.consent_overrides),
            require_consent=self.config.require_consent,
        )
        memory = self._select_memory(index, result)
        result = dataclasses.replace(
            result, memory=tuple(f.reference for f, _ in memory), memory_reasons=tuple(why for _, why in memory)
        )
        seed = shot.seed if shot.seed is not None else self.config.seed + index
        extra = self._hash_inputs(index, location, seed, result, overrides)
        plan = ShotPlan(
            index,
            scene_index,
            shot,
            location,
            result,
            memory,
            overrides,
            seed,
            shot_input_hash(shot, extra),
            self._spec(shot, index, seed),
        )
        if self.adapter is not None:
            plan.conditioning = self.adapter.prepare(plan.spec, plan.result)
            plan.call_arguments = self.adapter.call_arguments(plan.spec, plan.conditioning)
        return plan

    def _check_names(self, shot: Shot, location: str | None) -> None:
        """A name the shot keys anything by (cast, location, eras, regions, scales) must be an
        entity: a typo fails here, with a did-you-mean, instead of quietly conditioning nobody."""
        for what, name in [("location", location), *(("cast", n) for n in shot.cast or ()), *keyed_names(shot)]:
            if name is None or name_key(name) in self._known_names:
                continue
            if self.library.find(name) is None:
                spelled = [n for e in self.library.list() for n in e.names]
                raise EntityNotFoundError(
                    f"{what} {name!r} is not in library {self.library.name!r}{did_you_mean(name, spelled)}"
                )
            self._known_names.add(name_key(name))

    def _spec(self, shot: Shot, index: int, seed: int) -> ShotSpec:
        options = shot.options
        return ShotSpec(
            prompt=shot.prompt,
            negative_prompt=shot.negative_prompt or "",
            num_frames=shot.frames or max(1, int(round(shot.duration * self.config.fps))),
            width=self.config.width,
            height=self.config.height,
            fps=self.config.fps,
            seed=seed,
            shot_index=index,
            story_id=self.story_id,
            regions=dict(shot.regions) if shot.regions else None,
            steps=options.steps if options else None,
            guidance=options.guidance if options else None,
            scales=dict(options.scales) if options and options.scales else None,
        )

    def _hash_inputs(
        self,
        index: int,
        location: str | None,
        seed: int,
        result: RetrievalResult,
        overrides: Sequence[ConsentOverride],
    ) -> dict[str, Any]:
        """What, besides the script entry, determines a shot (and so enters its input hash)."""
        cfg = self.config
        return {
            "previous": self.previous_hash,
            "story": self.story_id,
            "index": index,
            "location": location,
            "generator": cfg.generator,
            "generator_options": cfg.generator_options,
            # other weights make other shots; absent without weights so earlier hashes still hold
            **({"weights": [cfg.model, cfg.adapter]} if cfg.model or cfg.adapter else {}),
            "size": [cfg.width, cfg.height, cfg.fps],
            "seed": seed,
            "retrieved": [(h.entity.id, [r.id for r in h.references]) for h in result.hits],
            "memory": [r.id for r in result.memory],
            "overrides": [o.entity_id for o in overrides],
        }

    def _select_memory(self, index: int, result: RetrievalResult) -> list[tuple[MemoryFrame, str]]:
        # Choose on metadata, then read images for the chosen frames only: a long story has
        # thousands of keyframes and each shot needs at most `memory_budget` of them.
        refs = self.bank.before(index)
        location = result.location
        chosen = select_memory(
            self.config.memory_policy,
            group_frames(refs),
            entity_ids=[h.entity.id for h in result.hits],
            location_id=location.entity.id if location else None,
            names={h.entity.id: h.entity.name for h in result.hits},
            budget=self.config.memory_budget,
        )
        loaded = {r.id: r for r in self.bank.with_images([f.reference for f, _ in chosen])}
        return [
            (dataclasses.replace(f, references=(loaded[f.reference.id], *f.references[1:])), why)
            for f, why in chosen
            if f.reference.id in loaded
        ]

    # --- committing -----------------------------------------------------------------------------
    def advance(self, plan: ShotPlan) -> None:
        """Move past a shot that is already made (a resumed run): context and hash chain only."""
        self.advance_recorded(plan.result, plan.input_hash, plan.index)

    def advance_recorded(self, result: RetrievalResult, input_hash: str, index: int) -> None:
        """Move past a finished shot known from its record, without planning it."""
        self.context.update(result)
        self.previous_hash = input_hash
        self.next_index = index + 1

    def commit(
        self,
        plan: ShotPlan,
        frames: np.ndarray | str | os.PathLike[str],
        *,
        fps: float | None = None,
        model_id: str | None = None,
        timings: dict[str, float] | None = None,
        seed: int | None = None,
        verdict: GuardVerdict | None = None,
        attempts: list[dict[str, Any]] | None = None,
    ) -> CommittedShot:
        """Store a rendered shot: frames (T x H x W x 3 uint8) or an MP4 file. Writes the MP4 and
        provenance into ``out_dir`` when the session has one, the keyframes as memory, and the
        shot record last (the shot's commit marker). ``seed`` is the seed the committed frames were
        made with when a retry changed it; ``verdict`` and ``attempts`` are the continuity guard's.

        Published files carry the shot's provenance themselves: the frames get an invisible
        watermark id before the MP4 is encoded, keyframe JPEGs are written beside the MP4, and
        with a signing identity (``CONTINUITY_SIGN_CERT`` / ``CONTINUITY_SIGN_KEY``) each file is
        signed with C2PA content credentials (see :mod:`continuity.provenance`)."""
        started = time.perf_counter()
        self._forget(plan.index)
        video_frames, fps = _read_frames(frames, fps or plan.spec.fps)
        video, provenance = self.paths(plan.index) if self.out_dir is not None else (None, None)
        mark = None
        stages = dict(timings or {})
        if video is not None:
            from .provenance.publish import watermarked
            from .video import write_mp4

            t = time.perf_counter()
            mark, video_frames = watermarked(
                video_frames, self.library.name, self.story_id, plan.index, plan.input_hash
            )
            stages["watermark"] = time.perf_counter() - t
            write_mp4(video, video_frames, fps)  # atomic: a temp file renamed into place
        keyframes = self._remember(plan, video_frames, verdict)
        manifest = self._manifest(
            plan, keyframes, video, model_id, stages, watermark=mark, seed=seed, verdict=verdict, attempts=attempts
        )
        if video is not None and self.out_dir is not None:
            from .provenance.publish import Publisher, reference_ingredients, write_keyframe_images

            t = time.perf_counter()
            files = [(video, "video"), *write_keyframe_images(video, video_frames, [k.frame for k in keyframes])]
            manifest.outputs = Publisher.from_env(self.out_dir).sign_shot(
                manifest,
                files,
                consent={h.entity.id: h.entity.rights.consent for h in plan.result.hits},
                where={"store": str(self.library.store.uri), "library": self.library.name},
                ingredients=reference_ingredients(plan.result.hits),
            )
            manifest.timings["sign"] = round(time.perf_counter() - t, 4)
        manifest.timings["commit"] = round(time.perf_counter() - started, 4)
        if provenance is not None:
            from .provenance import write_provenance

            write_provenance(provenance, manifest)
        record = self._record(plan, video, manifest.model_dump_json(indent=2))
        self.advance(plan)
        return CommittedShot(plan.index, plan.input_hash, keyframes, record, video, provenance)

    def _remember(self, plan: ShotPlan, frames: np.ndarray, verdict: GuardVerdict | None) -> list[Reference]:
        """Write the shot's keyframes back as memory, unless write-back is off; a shot the
        continuity guard failed keeps its keyframes as ``rejected`` references (visible in the
        report and audit, never offered as memory: they would teach later shots the drift), and
        entities the guard rejected in a passing shot get none."""
        if not self.config.write_back:
            return []
        if verdict is not None and not verdict.passed:  # stored to be seen, never remembered
            return self.writer.write_back(self.story_id, plan.index, frames, plan.result, source="rejected")
        rejected = frozenset(verdict.rejected_ids) if verdict is not None else frozenset()
        return self.writer.write_back(self.story_id, plan.index, frames, plan.result, exclude=rejected)

    def paths(self, index: int) -> tuple[Path, Path]:
        """Where a shot's MP4 and provenance go in ``out_dir``."""
        if self.out_dir is None:
            raise InvalidInputError("this session has no out_dir; open it with out_dir=FOLDER to write files")
        shots = self.out_dir / "shots"
        return shots / f"shot_{index:03d}.mp4", shots / f"shot_{index:03d}.provenance.json"

    def _manifest(
        self,
        plan: ShotPlan,
        keyframes: list[Reference],
        video: Path | None,
        model_id: str | None,
        timings: dict[str, float],
        *,
        watermark: str | None = None,
        seed: int | None = None,
        verdict: Any = None,
        attempts: list[dict[str, Any]] | None = None,
    ) -> Any:
        from .provenance import ConsentOverride as ManifestOverride
        from .provenance import ShotManifest, uses_from_retrieval
        from .provenance.manifest import guard_fields

        notes = []
        if keyframes:
            shown = ", ".join(sorted({k.entity_id[:8] for k in keyframes}))
            notes.append(f"{len(keyframes)} keyframe reference(s) written back: {shown}")
        conditioning = plan.conditioning
        return ShotManifest(
            story_id=self.story_id,
            shot_index=plan.index,
            scene_index=plan.scene_index,
            shot_in_scene=plan.shot.index,
            cut=plan.shot.cut,
            input_hash=plan.input_hash,
            prompt=plan.shot.prompt,
            enriched_prompt=conditioning.prompt if conditioning is not None else None,
            generator=self.config.generator,
            model_id=model_id or (self.adapter.model_id if self.adapter is not None else None),
            seed=seed if seed is not None else plan.seed,
            **uses_from_retrieval(plan.result),
            consent_overrides=[
                ManifestOverride(
                    entity_id=o.entity_id,
                    name=o.name,
                    reason=f"{o.reason}; overridden by the run at {o.overridden_at.isoformat()}",
                )
                for o in plan.overrides
            ],
            # the published files (signed where an identity is set) are described by commit
            outputs=[],
            timings={k: round(v, 4) for k, v in timings.items()},
            notes=notes,
            plan_key=plan.plan_key,
            watermark=watermark,
            **guard_fields(verdict, attempts),
        )

    def _record(self, plan: ShotPlan, video: Path | None, provenance: str) -> ShotRecord:
        record = ShotRecord(
            story_id=self.story_id,
            shot_index=plan.index,
            library=self.library.name,
            input_hash=plan.input_hash,
            prompt=plan.shot.prompt,
            generator=self.config.generator,
            seed=plan.seed,
            retrieved=[h.entity.id for h in plan.result.hits],
            memory=[r.id for r in plan.result.memory],
            output=str(video) if video is not None else None,
            provenance=provenance,
        )
        self.library.shots.add(record)
        self._recorded.add(plan.index)
        return record


def _read_frames(frames: np.ndarray | str | os.PathLike[str], fps: float) -> tuple[np.ndarray, float]:
    """Frames as uint8 T x H x W x 3, from an array or an MP4 (whose own rate wins)."""
    from generators.base import to_uint8_frames

    if isinstance(frames, (str, os.PathLike)):
        from .video import probe, read_frames

        return to_uint8_frames(read_frames(frames)), float(probe(frames)["fps"])
    return to_uint8_frames(frames), fps


def _manifest_field(record: ShotRecord, name: str, default: Any) -> Any:
    try:
        return json.loads(record.provenance or "{}").get(name, default)
    except ValueError:
        return default
