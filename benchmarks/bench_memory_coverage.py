"""Memory coverage: how often does the selected memory hold every entity a shot needs?

For each shot of a story, memory is chosen from the keyframes of the shots before it, under a
budget (frames); a shot is *covered* when every entity it needs that has appeared before (its
characters and its location) is truly shown by at least one selected keyframe. Props are not
needed: the story loop never tags a keyframe with a prop (``KeyframeWriter.attribute``).

What is simulated, and how it matches the product's path:

- the **prediction** for shot i is a real ``RetrievalResult`` (ST-Bench: the real ``Retriever`` on
  the shot prompt with story context; synthetic: hits made from a seeded noisy prediction);
- each shot writes **one keyframe** (a simplification: the runner writes 1-3, fewer after its
  duplicate check), which **shows** the shot's true entities (an ideal generator) and is
  **tagged** as the runner tags it: ``KeyframeWriter.attribute`` of the shot's RetrievalResult, which
  with no face embedder (the library here has none) is every predicted character and location. A
  missed entity is therefore absent from the keyframe's tags, and a false positive is tagged on a
  frame that does not show it;
- memory is chosen as ``StorySession._select_memory`` chooses it: ``select_memory(policy,
  group_frames(earlier keyframes), entity_ids=<hit ids>, location_id=<top location hit>, budget)``.

Policies: ``sink_recent`` (StoryMem's first-3 + recent window, arXiv 2512.19539; ignores tags),
``relevant`` (this project's entity-covering policy, on predictions and runner tags: the product's
figure) and ``relevant_oracle`` (the truth picks *and* tags the memory: an upper bound, not a
product figure).

Stories:
- ST-Bench (``../shared/data/st-bench``, read-only; skipped with a message when absent): the 20
  stories our annotations cover (``benchmarks/data/st_bench_annotations.json``: registered entities
  and the entities truly on screen per shot), reported per split (``tune``, ``held_out``) and overall;
- a synthetic long story (``synthetic_story``): 400 shots, 12 characters who leave for 40-150 shots
  and come back, 6 locations, with predictions noisy in both directions (each true entity missed
  with probability 0.2, each absent character falsely predicted with probability 0.05, the location
  confused with probability 0.1; seeded), and the same story with perfect predictions.

Writes benchmarks/results/memory_coverage.json. Run: ``python benchmarks/bench_memory_coverage.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_retrieval_quality import script_query  # noqa: E402
from continuity.keyframes import KeyframeWriter  # noqa: E402
from memstore.library import Library  # noqa: E402
from memstore.schema import Entity, Reference  # noqa: E402
from memstore.store import Store  # noqa: E402
from retrieval.memory import group_frames, select_memory  # noqa: E402
from retrieval.query import Hit, RetrievalResult, ShotQuery  # noqa: E402

BUDGETS = (2, 3, 4, 6, 8, 10)
POLICIES = ("sink_recent", "relevant", "relevant_oracle")
ANNOTATIONS = ROOT / "benchmarks" / "data" / "st_bench_annotations.json"
SHARED = ROOT.parent / "shared" / "data" / "st-bench"
RESULTS = ROOT / "benchmarks" / "results" / "memory_coverage.json"
NEEDED_KINDS = ("character", "location")  # what the runner tags keyframes with
BLANK = np.zeros((8, 8, 3), dtype=np.uint8)  # attribute() looks at the image only with a face embedder


@dataclass(frozen=True)
class ShotTruth:
    """One shot: the entity ids it truly shows (and needs) and what the retriever predicted."""

    shows: frozenset[str]
    predicted: RetrievalResult


# --- the product's rules, applied to one story --------------------------------------------------


def runner_tags(writer: KeyframeWriter, result: RetrievalResult) -> list[str]:
    """The entity ids the story loop tags a keyframe of this shot with."""
    return [entity.id for entity, _ in writer.attribute(BLANK, result)]


def session_selection(policy: str, refs: list[Reference], result: RetrievalResult, budget: int) -> list[Any]:
    """``StorySession._select_memory``'s call, on metadata (no images needed)."""
    location = result.location
    return select_memory(
        policy,
        group_frames(refs),
        entity_ids=[h.entity.id for h in result.hits],
        location_id=location.entity.id if location else None,
        names={h.entity.id: h.entity.name for h in result.hits},
        budget=budget,
    )


def _keyframe(entity_id: str, shot: int) -> Reference:
    return Reference(
        entity_id=entity_id,
        kind="character",
        source="harvested",
        width=1,
        height=1,
        sha256=f"{shot}",
        story="s",
        shot=shot,
        frame=0,
    )


def replay(
    shots: Sequence[ShotTruth], policy: str, budget: int, writer: KeyframeWriter, entities: dict[str, Entity]
) -> dict[str, Any]:
    """Run the story: select memory for each shot, then write its keyframe. ``relevant_oracle``
    predicts and tags with the truth; the other policies with the shot's RetrievalResult."""
    refs: list[Reference] = []
    shows_by_shot: dict[int, frozenset[str]] = {}
    seen: set[str] = set()
    covered = coverable = entity_hits = entity_total = useful = selected = 0
    for i, shot in enumerate(shots):
        oracle = policy == "relevant_oracle"
        result = _truth_result(shot, entities) if oracle else shot.predicted
        chosen = session_selection("relevant" if oracle else policy, refs, result, budget)
        truly_shown = [shows_by_shot[f.shot] for f, _ in chosen]
        in_memory = frozenset().union(*truly_shown) if truly_shown else frozenset()
        needed = shot.shows & seen
        if shot.shows <= seen:
            coverable += 1
            covered += shot.shows <= in_memory
        entity_total += len(needed)
        entity_hits += len(needed & in_memory)
        selected += len(truly_shown)
        useful += sum(1 for s in truly_shown if s & needed)
        tags = sorted(shot.shows) if oracle else runner_tags(writer, shot.predicted)
        refs.extend(_keyframe(e, i) for e in tags)
        shows_by_shot[i] = shot.shows
        seen |= shot.shows
    return {
        "shots": len(shots),
        "coverable_shots": coverable,
        "fully_covered_share": round(covered / coverable, 4) if coverable else None,
        "entity_recall": round(entity_hits / entity_total, 4) if entity_total else None,
        "useful_frame_share": round(useful / selected, 4) if selected else None,
    }


def _truth_result(shot: ShotTruth, entities: dict[str, Entity]) -> RetrievalResult:
    """The shot's result as a perfect retriever would return it (characters first, then the location)."""
    ordered = sorted(shot.shows, key=lambda e: (entities[e].kind != "character", entities[e].name))
    return RetrievalResult(query=shot.predicted.query, hits=tuple(Hit(entities[e], 1.0, ("truth",)) for e in ordered))


def run_story(shots: Sequence[ShotTruth], entities: Sequence[Entity], writer: KeyframeWriter) -> dict[str, Any]:
    by_id = {e.id: e for e in entities}
    return {p: {str(b): replay(shots, p, b, writer, by_id) for b in BUDGETS} for p in POLICIES}


# --- ST-Bench ------------------------------------------------------------------------------------


def load_annotations() -> dict[str, Any]:
    return json.loads(ANNOTATIONS.read_text()) if ANNOTATIONS.exists() else {"stories": {}, "splits": {}}


def st_bench_story(name: str, story: dict[str, Any], library: Library) -> tuple[list[ShotTruth], list[Entity]]:
    """The real Retriever's results for each shot (prompt + story context) and the annotated truth."""
    from continuity.story import load_story
    from retrieval import Retriever, StoryContext

    by_name: dict[str, Entity] = {}
    for e in story["entities"]:
        by_name[e["name"]] = library.register(
            e["name"], e["kind"], aliases=e.get("aliases", []), description=e.get("description", "")
        )
    script = load_story(SHARED / f"{name}.json")
    retriever, context, shots = Retriever(library), StoryContext(), []
    for (index, scene, shot), truth in zip(script.iter_shots(), story["shots"], strict=True):
        result = retriever.retrieve(script_query(script, index, scene, shot), context)
        context.update(result)
        shows = frozenset(by_name[n].id for n in truth if by_name[n].kind in NEEDED_KINDS)
        shots.append(ShotTruth(shows, result))
    return shots, list(by_name.values())


# --- the synthetic long story -----------------------------------------------------------------------


def synthetic_plan(
    shots: int = 400, characters: int = 12, locations: int = 6, seed: int = 0
) -> list[tuple[list[int], int]]:
    """Per shot (characters on screen, location). Each character is on screen for runs of 3-12
    shots, then away for 40-150 shots; at most 3 characters a shot (someone is always there); a
    location holds for a scene of 4-10 shots."""
    rng = np.random.default_rng(seed)
    present = np.zeros((shots, characters), dtype=bool)
    for c in range(characters):
        t = int(rng.integers(0, 60))
        while t < shots:
            on = int(rng.integers(3, 13))
            present[t : t + on, c] = True
            t += on + int(rng.integers(40, 151))
    plan, location, scene_left = [], 0, 0
    for i in range(shots):
        if scene_left == 0:
            location, scene_left = int(rng.integers(0, locations)), int(rng.integers(4, 11))
        scene_left -= 1
        cast = [int(c) for c in np.flatnonzero(present[i])][:3] or [int(rng.integers(0, characters))]
        plan.append((cast, location))
    return plan


def synthetic_story(
    miss: float, false_positive: float, wrong_location: float, seed: int = 1, **plan_args: int
) -> tuple[list[ShotTruth], list[Entity]]:
    """The synthetic plan with predictions that miss each true character with probability
    ``miss``, add each absent character with probability ``false_positive`` and name another
    location with probability ``wrong_location`` (seeded)."""
    plan = synthetic_plan(**plan_args)
    n_chars = 1 + max(c for cast, _ in plan for c in cast)
    n_locs = 1 + max(loc for _, loc in plan)
    chars = [Entity(kind="character", name=f"char{c}") for c in range(n_chars)]
    locs = [Entity(kind="location", name=f"loc{j}") for j in range(n_locs)]
    rng = np.random.default_rng(seed)
    shots = []
    for i, (cast, loc) in enumerate(plan):
        guessed = [c for c in cast if rng.random() >= miss]
        guessed += [c for c in range(n_chars) if c not in cast and rng.random() < false_positive]
        place = int(rng.integers(0, n_locs)) if rng.random() < wrong_location else loc
        hits = [Hit(chars[c], 1.0, ("synthetic",)) for c in guessed] + [Hit(locs[place], 0.5, ("synthetic",))]
        result = RetrievalResult(
            query=ShotQuery(prompt=f"shot {i}", story_id="synthetic", shot_index=i), hits=tuple(hits)
        )
        shots.append(ShotTruth(frozenset([chars[c].id for c in cast] + [locs[loc].id]), result))
    return shots, chars + locs


# --- report --------------------------------------------------------------------------------------


def mean_over(rows: list[dict[str, Any]], key: str = "fully_covered_share") -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for policy in POLICIES:
        out[policy] = {}
        for b in BUDGETS:
            values = [r[policy][str(b)][key] for r in rows if r[policy][str(b)][key] is not None]
            out[policy][str(b)] = round(float(np.mean(values)), 4) if values else None
    return out


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    paths = ["benchmarks/bench_memory_coverage.py", "retrieval", "continuity/keyframes.py", "continuity/session.py"]
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(git("status", "--porcelain", "--", *paths)),
    }


def main() -> dict[str, Any]:
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    results: dict[str, Any] = {
        "benchmark": "memory_coverage",
        "command": "python benchmarks/bench_memory_coverage.py",
        **git_state(),
        "budgets": list(BUDGETS),
        "keyframes_per_shot": 1,
        "stories": {},
        "mean": {},
    }
    try:
        store = Store.init(root / "db")
        synthetic_lib = store.library("synthetic")
        synthetic_lib.configure(embedders=[])
        writer = KeyframeWriter(synthetic_lib)  # no face embedder: tags are the predicted characters + locations
        annotations = load_annotations()
        if not SHARED.exists():
            print(f"ST-Bench skipped: {SHARED} is absent (its prompts are needed for the retriever's predictions)")
            results["st_bench_skipped"] = f"{SHARED} absent"
        else:
            for name, story in annotations["stories"].items():
                library = store.library(f"st-{name}")
                library.configure(embedders=[])  # names, aliases and descriptions only, as the quality benchmark
                shots, entities = st_bench_story(name, story, library)
                results["stories"][f"st-bench/{name}"] = run_story(shots, entities, KeyframeWriter(library))
        for label, noise in {"synthetic-400/noisy": (0.2, 0.05, 0.1), "synthetic-400/exact": (0.0, 0.0, 0.0)}.items():
            shots, entities = synthetic_story(*noise)
            results["stories"][label] = run_story(shots, entities, writer)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    stories = results["stories"]
    groups: dict[str, list[str]] = {
        f"st-bench/{split}": [f"st-bench/{n}" for n in names if f"st-bench/{n}" in stories]
        for split, names in annotations.get("splits", {}).items()
    }
    groups["st-bench/all"] = [n for n in stories if n.startswith("st-bench/")]
    groups.update({n: [n] for n in stories if n.startswith("synthetic")})
    for group, names in groups.items():
        if names:
            rows = [stories[n] for n in names]
            results["mean"][group] = {
                "fully_covered_share": mean_over(rows),
                "entity_recall": mean_over(rows, "entity_recall"),
            }
    results["notes"] = (
        "fully_covered_share: share of coverable shots (every needed entity appeared before) whose selected memory "
        "truly shows every needed entity (characters + location); entity_recall: needed entities truly shown; "
        "useful_frame_share: selected frames showing at least one needed entity. relevant: the product's policy on the "
        "real Retriever's predictions (ST-Bench) or seeded noisy predictions (synthetic), keyframes tagged by "
        "KeyframeWriter.attribute (no face embedder: every predicted character and location); relevant_oracle: the "
        "truth predicts and tags (an upper bound, not a product figure); sink_recent: StoryMem's window (ignores tags). "
        "One keyframe per shot, showing the shot's annotated entities. ST-Bench means are per story; 'tune' and "
        "'held_out' are the annotation splits. synthetic-400/noisy: miss 0.2 per true character, false positive 0.05 "
        "per absent character, wrong location 0.1 (seed 1; plan seed 0); synthetic-400/exact: perfect predictions."
    )
    results["seconds"] = round(time.perf_counter() - started, 2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"fully covered share; {'group':<22} {'policy':<16} " + " ".join(f"b={b:<4}" for b in BUDGETS))
    for group, by_metric in results["mean"].items():
        for policy, by_budget in by_metric["fully_covered_share"].items():
            cells = " ".join(f"{v:<6.3f}" if v is not None else "  -   " for v in by_budget.values())
            print(f"{'':<21}{group:<22} {policy:<16} {cells}")
    print(f"{results['seconds']} s; wrote {RESULTS.relative_to(ROOT)}")
    return results


if __name__ == "__main__":
    main()
