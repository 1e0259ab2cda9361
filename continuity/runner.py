"""StoryRunner: a story script run through a :class:`~continuity.session.StorySession`: per shot
plan (retrieve, consent, memory, input hash), then resume or make (prepare, generate, commit).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memstore.errors import ContinuityError, ScriptError
from memstore.library import Library
from memstore.schema import Entity, Reference, ShotRecord
from retrieval.memory import MemoryFrame
from retrieval.query import RetrievalResult

from .attempts import generate_checked
from .guard import ContinuityGuard, GuardConfig, GuardPolicy, GuardVerdict, default_policy
from .preflight import cast_image_problems, name_problems, named_consent_problems
from .resume import FastResume
from .session import SessionConfig, ShotPlan, StorySession
from .story import Scene, Shot, StoryScript


@dataclass
class RunConfig(SessionConfig):
    """How a story is run: a session's configuration plus what only a scripted run decides."""

    register_cast: bool = True  # register cast members the library lacks from the script's images
    guard: GuardPolicy | None = None  # None: retry with a face or CLIP embedder, warn otherwise
    max_attempts: int = 3
    guard_thresholds: dict[str, float] = field(default_factory=dict)  # entity name or id -> threshold


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
    attempts: int = 1
    verdict: GuardVerdict | None = None
    num_frames: int = 0  # of the shot made (its decoded frames are not kept: a long story would hold them all)


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
        policy = self.config.guard or default_policy(library)
        self.guard_config = GuardConfig(
            policy=policy, max_attempts=self.config.max_attempts, thresholds=dict(self.config.guard_thresholds)
        )
        self.guard = ContinuityGuard(library, self.guard_config) if policy != "off" else None
        self.image_free = ImageFree()

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
        problems = name_problems(story, self.library) + cast_image_problems(story, self.library)
        problems += named_consent_problems(story, self.library, self.config)
        if problems:  # before anything is registered or rendered
            raise ScriptError(f"{len(problems)} problem(s) in the script: " + " | ".join(problems))
        (self.out_dir / "shots").mkdir(parents=True, exist_ok=True)
        self.image_free = ImageFree()  # a rerun may find references changed since the last run
        self.ensure_cast(story)
        generator = self._generator()
        session = StorySession(
            self.library, story.id, self.config, retriever=self._retriever(), out_dir=self.out_dir, resume=False
        )
        done = self.library.shots.hashes(story.id)
        fast = FastResume(self.library, story.id, self.config)
        try:
            runs = self._shots(story, session, fast, done, generator, stop_after)
        finally:  # one commit for the records journalled since the last fold (memstore.journal)
            self.library.shots.flush()
        run = StoryRun(story, self.out_dir, runs)
        if runs:
            from .finish import finish_story, keep_finished

            unchanged = stop_after is None and all(s.skipped for s in runs)
            if not (unchanged and keep_finished(run)):
                finish_story(run, self.library, fps=self.config.fps, generator=self.config.generator)
        return run

    def _shots(
        self,
        story: StoryScript,
        session: StorySession,
        fast: FastResume,
        done: dict[int, str],
        generator: Any,
        stop_after: int | None,
    ) -> list[ShotRun]:
        """Each shot in order: resumed from its record, resumed after planning, or made."""
        runs: list[ShotRun] = []
        for index, scene, shot in story.iter_shots():
            if stop_after is not None and index >= stop_after:
                break
            started = time.perf_counter()
            location = shot.location or scene.location
            key = fast.next_key(index, scene, shot, location)
            record = fast.record_for(index, key, *session.paths(index))
            if record is not None:  # resumed without planning (continuity.resume)
                runs.append(self.resume_recorded(session, fast, record, scene, shot))
            else:
                plan = session.plan_shot(shot, index=index, scene_index=scene.index, location=location)
                plan.plan_key = key
                if self._is_done(story, plan, session, done):
                    runs.append(self.resume(session, plan))
                else:
                    runs.append(self.make(session, plan, generator, started))
            if self.progress:
                self.progress(index + 1, story.num_shots, "resumed" if runs[-1].skipped else "generated")
        return runs

    def resume_recorded(
        self, session: StorySession, fast: FastResume, record: ShotRecord, scene: Scene, shot: Shot
    ) -> ShotRun:
        """A finished shot resumed from its record: nothing retrieved, generated or written."""
        result = fast.result_of(record, shot.cut)
        session.advance_recorded(result, record.input_hash, record.shot_index)
        video, provenance = session.paths(record.shot_index)
        keyframes = session.bank.at(record.shot_index)
        return ShotRun(
            record.shot_index,
            scene.index,
            shot.prompt,
            record.input_hash,
            video,
            result,
            [],
            keyframes,
            provenance,
            skipped=True,
        )

    def _is_done(self, story: StoryScript, plan: ShotPlan, session: StorySession, done: dict[int, str]) -> bool:
        """Made with these inputs, and the files in ``--out`` are that shot's: another story (or
        another run of this one) may have written a shot of the same number into the folder."""
        video, provenance = session.paths(plan.index)
        if done.get(plan.index) != plan.input_hash or not video.exists() or not provenance.exists():
            return False
        from .provenance import read_provenance

        try:
            manifest = read_provenance(provenance)
        except ContinuityError:
            return False
        output = next((o for o in manifest.outputs if o.kind == "video"), None)
        return (
            manifest.story_id == story.id
            and manifest.shot_index == plan.index
            and manifest.input_hash == plan.input_hash
            and output is not None
            # the size, not the hash: resuming a feature-length story must not re-read every MP4
            and output.bytes == video.stat().st_size
        )

    def resume(self, session: StorySession, plan: ShotPlan) -> ShotRun:
        """A shot already made with these inputs: report what it wrote, make nothing."""
        keyframes = self.library.keyframes(session.story_id, at=plan.index, with_vectors=False)
        session.advance(plan)
        video, provenance = session.paths(plan.index)
        return ShotRun(
            plan.index,
            plan.scene_index,
            plan.shot.prompt,
            plan.input_hash,
            video,
            self.image_free.result(plan.result),
            self.image_free.memory(plan.memory),
            keyframes,
            provenance,
            skipped=True,
        )

    def make(self, session: StorySession, plan: ShotPlan, generator: Any, started: float) -> ShotRun:
        """Generate the shot (again, while the continuity guard says so), then commit the best
        attempt to the session (MP4, keyframes, provenance, and last the shot record)."""
        timings = {"retrieve": time.perf_counter() - started}
        outcome = generate_checked(generator, plan, self.guard, self.guard_config)
        timings["prepare"] = outcome.prepare_s
        timings["generate"] = sum(a.seconds for a in outcome.attempts)
        best = outcome.best
        committed = session.commit(
            plan,
            best.frames,
            fps=best.fps,
            model_id=best.model_id,
            timings=timings,
            seed=best.seed,
            verdict=best.verdict,
            attempts=[a.to_json() for a in outcome.attempts],
        )
        assert committed.video is not None and committed.provenance is not None  # the session has an out_dir
        return ShotRun(
            plan.index,
            plan.scene_index,
            plan.shot.prompt,
            plan.input_hash,
            committed.video,
            self.image_free.result(plan.result),
            self.image_free.memory(plan.memory),
            [self.image_free.reference(k) for k in committed.keyframes],
            committed.provenance,
            seconds=time.perf_counter() - started,
            num_frames=len(best.frames),
            attempts=len(outcome.attempts),
            verdict=best.verdict,
        )


class ImageFree:
    """Image-less copies of references, one per reference for a run: each shot's record of what it
    retrieved and remembered (kept for the run's report and metrics) holds no image bytes, and
    shares its copies with every other shot (a copy per shot grew a run by ~50 KB a shot, 0.5 GB
    over 10,000 shots; the report reads the few images it shows again)."""

    def __init__(self) -> None:
        self._copies: dict[str, Reference] = {}

    def reference(self, ref: Reference) -> Reference:
        if ref.id not in self._copies:
            self._copies[ref.id] = ref if ref.image is None else ref.model_copy(update={"image": None})
        return self._copies[ref.id]

    def memory(self, memory: list[tuple[MemoryFrame, str]]) -> list[tuple[MemoryFrame, str]]:
        return [
            (dataclasses.replace(f, references=tuple(self.reference(r) for r in f.references)), why)
            for f, why in memory
        ]

    def result(self, result: RetrievalResult) -> RetrievalResult:
        hits = tuple(
            dataclasses.replace(h, references=tuple(self.reference(r) for r in h.references)) for h in result.hits
        )
        return dataclasses.replace(result, hits=hits, memory=tuple(self.reference(r) for r in result.memory))
