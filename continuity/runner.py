"""StoryRunner: retrieve -> select memory -> prepare -> generate -> keyframes -> write back, per shot.

Resumable: each finished shot is recorded in the store's ``shots`` table under a hash of
everything that determines it (its script entry, the generator, the seed, what was retrieved and
remembered, and the previous shot's hash), and that row is written last. A rerun skips shots
whose hash is recorded and whose MP4 exists; an interrupted run loses no finished shot, and the
keyframes a crashed shot may have written are removed before it is generated again.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memstore.errors import ContinuityError, ScriptError
from memstore.library import Library
from memstore.schema import Entity, Reference, ShotRecord
from retrieval.context import StoryContext
from retrieval.memory import MemoryFrame, group_frames, select_memory
from retrieval.query import RetrievalResult, ShotQuery

from .consent import ConsentOverride, check_rights
from .keyframes import KeyframeWriter
from .preflight import name_problems
from .story import Scene, Shot, StoryScript, shot_input_hash


@dataclass
class RunConfig:
    """How a story is run. Everything here enters each shot's input hash."""

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
    register_cast: bool = True
    # store each shot's keyframes as harvested references (the episodic memory of later shots)
    write_back: bool = True
    # cosine between a keyframe's face and a character's reference faces to attribute it; lenient on
    # purpose (dlib's usual same-person cut, 0.6 euclidean on unit vectors, is about 0.82 cosine)
    face_match_threshold: float = 0.55


@dataclass
class ShotRun:
    """What one shot produced (or what a resumed run found)."""

    index: int
    scene: int
    prompt: str
    input_hash: str
    video: Path
    result: RetrievalResult
    memory: list[tuple[MemoryFrame, str]]
    keyframes: list[Reference]
    provenance: Path
    skipped: bool = False
    seconds: float = 0.0
    frames: np.ndarray | None = None


@dataclass
class ShotPlan:
    """Everything a shot will be made from, decided before anything is generated: what was
    retrieved and remembered, the consent overrides, the seed, the input hash, where it goes."""

    index: int
    scene: Scene
    shot: Shot
    location: str | None
    result: RetrievalResult
    memory: list[tuple[MemoryFrame, str]]
    overrides: list[ConsentOverride]
    seed: int
    input_hash: str
    video: Path
    provenance: Path


@dataclass
class StoryRun:
    story: StoryScript
    out_dir: Path
    shots: list[ShotRun]
    video: Path | None = None
    report: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


class StoryRunner:
    """Runs a story script against a library with one generator adapter: per shot, a
    :class:`ShotPlan`, then either resume (the same shot is already made) or make."""

    def __init__(
        self,
        library: Library,
        out_dir: str | os.PathLike[str],
        config: RunConfig | None = None,
        *,
        generator: Any = None,
        retriever: Any = None,
        progress: Callable[[int, int, str], None] | None = None,
    ):
        self.library = library
        self.out_dir = Path(out_dir)
        self.config = config or RunConfig()
        self.generator = generator
        self.retriever = retriever
        self.progress = progress

    # --- set-up -------------------------------------------------------------------------------
    def _generator(self) -> Any:
        if self.generator is None:
            from .generator_setup import build_generator

            self.generator = build_generator(
                self.config.generator,
                self.library,
                model=self.config.model,
                adapter=self.config.adapter,
                options=self.config.generator_options,
            )
        return self.generator

    def _retriever(self) -> Any:
        if self.retriever is None:
            from retrieval import Retriever

            self.retriever = Retriever(self.library)
        return self.retriever

    def ensure_cast(self, story: StoryScript) -> list[Entity]:
        """Every cast member must be (or become) an entity of the library."""
        entities = []
        base = Path(story.base_dir) if story.base_dir else Path(".")
        for member in story.cast:
            existing = self.library.find(member.ref or member.name)
            if existing is not None:
                entities.append(existing)
                continue
            if member.ref:
                raise ScriptError(
                    f"cast member {member.name!r} refers to {member.ref!r}, which is not in library {self.library.name!r}"
                )
            if not self.config.register_cast:
                raise ScriptError(
                    f"cast member {member.name!r} is not in library {self.library.name!r}; register it first"
                )
            entities.append(
                self.library.register(
                    member.name,
                    member.kind,
                    images=[str(p) for p in member.image_paths(base)],
                    aliases=member.aliases,
                    description=member.description,
                )
            )
        return entities

    # --- the loop -----------------------------------------------------------------------------
    def run(self, story: StoryScript, *, stop_after: int | None = None) -> StoryRun:
        problems = name_problems(story, self.library)
        if problems:  # before anything is registered or rendered
            raise ScriptError(f"{len(problems)} problem(s) in the script: " + " | ".join(problems))
        (self.out_dir / "shots").mkdir(parents=True, exist_ok=True)
        self.ensure_cast(story)
        self._generator()
        self._retriever()
        writer = KeyframeWriter(self.library, face_match_threshold=self.config.face_match_threshold)
        context = StoryContext()
        done = self.library.shots.hashes(story.id)
        runs: list[ShotRun] = []
        previous_hash = ""
        for index, scene, shot in story.iter_shots():
            if stop_after is not None and index >= stop_after:
                break
            started = time.perf_counter()
            plan = self.plan(story, index, scene, shot, context, previous_hash)
            resumed = self._is_done(story, plan, done)
            runs.append(self.resume(story, plan) if resumed else self.make(story, plan, writer, started))
            context.update(plan.result)
            previous_hash = plan.input_hash
            if self.progress:
                self.progress(index + 1, story.num_shots, "resumed" if resumed else "generated")
        run = StoryRun(story, self.out_dir, runs)
        if runs:
            from .finish import finish_story

            finish_story(run, self.library, fps=self.config.fps, generator=self.config.generator)
        return run

    def plan(
        self, story: StoryScript, index: int, scene: Scene, shot: Shot, context: StoryContext, previous_hash: str
    ) -> ShotPlan:
        """Retrieve, check rights, choose memory and hash the shot's inputs; generates nothing."""
        location = shot.location or scene.location
        query = ShotQuery(
            prompt=shot.prompt,
            story_id=story.id,
            shot_index=index,
            cut=shot.cut,
            cast=tuple(shot.cast) if shot.cast else None,
            location=location,
            require_consent=self.config.require_consent,
        )
        result = self._retriever().retrieve(query, context)
        overrides = check_rights(
            [h.entity for h in result.hits],
            overrides=set(self.config.consent_overrides),
            require_consent=self.config.require_consent,
        )
        memory = self._select_memory(story.id, index, result)
        result = dataclasses.replace(
            result,
            memory=tuple(f.reference for f, _ in memory),
            memory_reasons=tuple(why for _, why in memory),
        )
        seed = shot.seed if shot.seed is not None else self.config.seed + index
        input_hash = shot_input_hash(
            shot, self._hash_inputs(story, index, location, seed, result, overrides, previous_hash)
        )
        shots_dir = self.out_dir / "shots"
        return ShotPlan(
            index,
            scene,
            shot,
            location,
            result,
            memory,
            overrides,
            seed,
            input_hash,
            shots_dir / f"shot_{index:03d}.mp4",
            shots_dir / f"shot_{index:03d}.provenance.json",
        )

    def _hash_inputs(
        self,
        story: StoryScript,
        index: int,
        location: str | None,
        seed: int,
        result: RetrievalResult,
        overrides: Sequence[ConsentOverride],
        previous_hash: str,
    ) -> dict[str, Any]:
        """What, besides the script entry, determines a shot (and so enters its input hash)."""
        return {
            "previous": previous_hash,
            "story": story.id,
            "index": index,
            "location": location,
            "generator": self.config.generator,
            "generator_options": self.config.generator_options,
            # other weights make other shots; absent without weights so earlier hashes still hold
            **(
                {"weights": [self.config.model, self.config.adapter]}
                if self.config.model or self.config.adapter
                else {}
            ),
            "size": [self.config.width, self.config.height, self.config.fps],
            "seed": seed,
            "retrieved": [(h.entity.id, [r.id for r in h.references]) for h in result.hits],
            "memory": [r.id for r in result.memory],
            "overrides": [o.entity_id for o in overrides],
        }

    def _is_done(self, story: StoryScript, plan: ShotPlan, done: dict[int, str]) -> bool:
        """Made with these inputs, and the files in ``--out`` are that shot's: another story (or
        another run of this one) may have written a shot of the same number into the folder."""
        if done.get(plan.index) != plan.input_hash or not plan.video.exists() or not plan.provenance.exists():
            return False
        from .provenance import read_provenance

        try:
            manifest = read_provenance(plan.provenance)
        except ContinuityError:
            return False
        video = next((o for o in manifest.outputs if o.kind == "video"), None)
        return (
            manifest.story_id == story.id
            and manifest.shot_index == plan.index
            and manifest.input_hash == plan.input_hash
            and video is not None
            # the size, not the hash: resuming a feature-length story must not re-read every MP4
            and video.bytes == plan.video.stat().st_size
        )

    def resume(self, story: StoryScript, plan: ShotPlan) -> ShotRun:
        """A shot already made with these inputs: report what it wrote, make nothing."""
        keyframes = self.library.keyframes(story.id, at=plan.index, with_vectors=False)
        return ShotRun(
            plan.index,
            plan.scene.index,
            plan.shot.prompt,
            plan.input_hash,
            plan.video,
            plan.result,
            plan.memory,
            keyframes,
            plan.provenance,
            skipped=True,
        )

    def make(self, story: StoryScript, plan: ShotPlan, writer: KeyframeWriter, started: float) -> ShotRun:
        """Generate the shot, write its MP4 and keyframes, then its provenance and, last, its record."""
        from .provenance import write_provenance
        from .video import write_mp4

        self._forget_shot(story.id, plan.index)
        generator = self._generator()
        timings = {"retrieve": time.perf_counter() - started}
        spec = self._shot_spec(story, plan)
        t = time.perf_counter()
        conditioning = generator.prepare(spec, plan.result)
        timings["prepare"] = time.perf_counter() - t
        t = time.perf_counter()
        output = generator.generate(spec, conditioning, plan.seed)
        timings["generate"] = time.perf_counter() - t
        frames = np.asarray(output.frames)
        t = time.perf_counter()
        write_mp4(plan.video, frames, output.fps)  # atomic: a temp file renamed into place
        keyframes = writer.write_back(story.id, plan.index, frames, plan.result) if self.config.write_back else []
        timings["keyframes"] = time.perf_counter() - t
        write_provenance(plan.provenance, self._provenance(story, plan, keyframes, output, conditioning, timings))
        self._record(story.id, plan)
        return ShotRun(
            plan.index,
            plan.scene.index,
            plan.shot.prompt,
            plan.input_hash,
            plan.video,
            plan.result,
            plan.memory,
            keyframes,
            plan.provenance,
            seconds=time.perf_counter() - started,
            frames=frames,
        )

    # --- pieces -------------------------------------------------------------------------------
    def _shot_spec(self, story: StoryScript, plan: ShotPlan) -> Any:
        from generators import ShotSpec

        num_frames = max(1, int(round(plan.shot.duration * self.config.fps)))
        return ShotSpec(
            prompt=plan.shot.prompt,
            num_frames=num_frames,
            width=self.config.width,
            height=self.config.height,
            fps=self.config.fps,
            seed=plan.seed,
            shot_index=plan.index,
            story_id=story.id,
        )

    def _select_memory(self, story_id: str, index: int, result: RetrievalResult) -> list[tuple[MemoryFrame, str]]:
        # Choose on metadata, then read images for the chosen frames only: a long story has
        # thousands of keyframes and each shot needs at most `memory_budget` of them.
        refs = self.library.keyframes(story_id, before=index, with_vectors=False)
        location = result.location
        chosen = select_memory(
            self.config.memory_policy,
            group_frames(refs),
            entity_ids=[h.entity.id for h in result.hits],
            location_id=location.entity.id if location else None,
            names={h.entity.id: h.entity.name for h in result.hits},
            budget=self.config.memory_budget,
        )
        loaded = {r.id: r for r in self.library.references(ids=[f.reference.id for f, _ in chosen], with_images=True)}
        return [
            (dataclasses.replace(f, references=(loaded[f.reference.id], *f.references[1:])), why)
            for f, why in chosen
            if f.reference.id in loaded
        ]

    def _forget_shot(self, story_id: str, index: int) -> None:
        """Remove what an earlier (crashed or changed) run left for this shot."""
        self.library.remove_references([r.id for r in self.library.keyframes(story_id, at=index, with_vectors=False)])
        self.library.shots.forget(story_id, index)

    def _provenance(
        self,
        story: StoryScript,
        plan: ShotPlan,
        keyframes: list[Reference],
        output: Any,
        conditioning: Any,
        timings: dict[str, float],
    ) -> Any:
        from .provenance import ConsentOverride as ManifestOverride
        from .provenance import ShotManifest, output_file, uses_from_retrieval

        notes = []
        if keyframes:
            notes.append(
                f"{len(keyframes)} keyframe reference(s) written back: "
                + ", ".join(sorted({k.entity_id[:8] for k in keyframes}))
            )
        return ShotManifest(
            story_id=story.id,
            shot_index=plan.index,
            scene_index=plan.scene.index,
            shot_in_scene=plan.shot.index,
            input_hash=plan.input_hash,
            prompt=plan.shot.prompt,
            enriched_prompt=getattr(conditioning, "prompt", None),
            generator=self.config.generator,
            model_id=(getattr(output, "metadata", None) or {}).get("model_id")
            or getattr(self._generator(), "model_id", None),
            seed=plan.seed,
            **uses_from_retrieval(plan.result),
            consent_overrides=[
                ManifestOverride(
                    entity_id=o.entity_id,
                    name=o.name,
                    reason=f"{o.reason}; overridden by the run at {o.overridden_at.isoformat()}",
                )
                for o in plan.overrides
            ],
            outputs=[output_file(plan.video, base_dir=plan.video.parent)],
            timings={k: round(v, 4) for k, v in timings.items()},
            notes=notes,
        )

    def _record(self, story_id: str, plan: ShotPlan) -> None:
        self.library.shots.add(
            ShotRecord(
                story_id=story_id,
                shot_index=plan.index,
                library=self.library.name,
                input_hash=plan.input_hash,
                prompt=plan.shot.prompt,
                generator=self.config.generator,
                seed=plan.seed,
                retrieved=[h.entity.id for h in plan.result.hits],
                memory=[r.id for r in plan.result.memory],
                output=str(plan.video),
                provenance=plan.provenance.read_text(),
            )
        )
